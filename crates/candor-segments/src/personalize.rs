//! Personalization: offers per placement, each either targeted (shown when its rule
//! holds for the person) or a default (the non-personalized fallback). Without the
//! personalization purpose granted, or without a known person, only defaults are shown
//! and nothing about the person is read; with it, every targeted offer comes with the
//! reasons it was chosen, so "why am I seeing this?" has an honest answer.
//!
//! Offer rules are checked by the caller with [`crate::check`] against the
//! personalization purpose, and handed to [`Engine::define_offers`] (see
//! [`OfferCatalog::rules`]) so the engine keeps the facts they need.

use crate::engine::Engine;
use crate::explain::Reason;
use crate::rule::Rule;
use candor_core::field::FieldCatalog;
use candor_core::{PurposeSet, SubjectId};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub id: String,
    pub placement: String,
    pub title: String,
    /// Higher first.
    pub priority: i32,
    /// `None`: a non-personalized default for its placement.
    pub when: Option<Rule>,
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("offer {id} is defined twice")]
    DuplicateId { id: String },
    #[error("placement {placement} has no default offer (one without a rule)")]
    NoDefault { placement: String },
}

impl CatalogError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            CatalogError::DuplicateId { .. } => "offer_duplicate_id",
            CatalogError::NoDefault { .. } => "offer_no_default",
        }
    }
}

/// The operator's offers, grouped by placement, each group sorted by priority
/// (descending) then id.
#[derive(Clone, Debug)]
pub struct OfferCatalog {
    by_placement: BTreeMap<String, Vec<Offer>>,
}

#[derive(Clone, Debug)]
pub struct Chosen<'a> {
    pub offer: &'a Offer,
    /// Empty for a default.
    pub reasons: Vec<Reason>,
}

#[derive(Clone, Debug)]
pub struct Decision<'a> {
    /// At least one targeted offer was chosen.
    pub personalized: bool,
    pub items: Vec<Chosen<'a>>,
}

impl OfferCatalog {
    pub fn new(offers: Vec<Offer>) -> Result<Self, CatalogError> {
        let mut ids = BTreeSet::new();
        let mut by_placement: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
        for o in offers {
            if !ids.insert(o.id.clone()) {
                return Err(CatalogError::DuplicateId { id: o.id });
            }
            by_placement.entry(o.placement.clone()).or_default().push(o);
        }
        for (placement, list) in &mut by_placement {
            if list.iter().all(|o| o.when.is_some()) {
                return Err(CatalogError::NoDefault {
                    placement: placement.clone(),
                });
            }
            list.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        }
        Ok(Self { by_placement })
    }

    /// Every targeted offer's rule, for [`Engine::define_offers`].
    pub fn rules(&self) -> Vec<Rule> {
        self.by_placement
            .values()
            .flatten()
            .filter_map(|o| o.when.clone())
            .collect()
    }

    pub fn offers(&self) -> impl Iterator<Item = &Offer> {
        self.by_placement.values().flatten()
    }

    /// Chooses up to `limit` offers for a placement: targeted offers whose rule holds
    /// (only with a subject who grants `purpose_bit`), ranked, then defaults to fill up.
    /// `None`: unknown placement.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &self,
        engine: &Engine,
        placement: &str,
        subject: Option<&SubjectId>,
        purpose_bit: u8,
        granted: PurposeSet,
        fields: &FieldCatalog,
        limit: usize,
    ) -> Option<Decision<'_>> {
        let offers = self.by_placement.get(placement)?;
        let mut items = Vec::new();
        if let Some(subject) = subject.filter(|_| granted.contains(purpose_bit)) {
            for o in offers {
                if items.len() >= limit {
                    break;
                }
                let Some(rule) = &o.when else {
                    continue;
                };
                if let Some(reasons) = engine.explain(rule, purpose_bit, subject, fields) {
                    items.push(Chosen { offer: o, reasons });
                }
            }
        }
        let personalized = !items.is_empty();
        for o in offers.iter().filter(|o| o.when.is_none()) {
            if items.len() >= limit {
                break;
            }
            items.push(Chosen {
                offer: o,
                reasons: Vec::new(),
            });
        }
        Some(Decision {
            personalized,
            items,
        })
    }
}
