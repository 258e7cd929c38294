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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check;
    use crate::check::tests::{catalog, fields};
    use crate::engine::tests::track;
    use crate::text::parse_text;
    use candor_core::field::{FieldName, FieldValue};
    use candor_core::ids::PurposeId;

    fn offer(id: &str, placement: &str, priority: i32, when: Option<&str>) -> Offer {
        Offer {
            id: id.into(),
            placement: placement.into(),
            title: format!("Title {id}"),
            priority,
            when: when.map(|w| parse_text(w).unwrap()),
        }
    }

    fn offers() -> OfferCatalog {
        OfferCatalog::new(vec![
            offer("home_default", "home", 0, None),
            offer("home_default2", "home", 5, None),
            offer(
                "runners",
                "home",
                10,
                Some(r#"field.interests has "running""#),
            ),
            offer(
                "active",
                "home",
                10,
                Some(r#"days(track "App Session") in last 30 days >= 2 or field.shoe_size >= 45"#),
            ),
            offer("never", "home", 99, Some("field.shoe_size < 30")),
            offer("cart_default", "cart", 0, None),
        ])
        .unwrap()
    }

    #[test]
    fn catalogs_need_unique_ids_and_a_default_per_placement() {
        let e = OfferCatalog::new(vec![offer("a", "p", 0, None), offer("a", "q", 0, None)])
            .unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            ("offer_duplicate_id", "offer a is defined twice")
        );
        let e = OfferCatalog::new(vec![offer("a", "p", 0, Some("field.x exists"))]).unwrap_err();
        assert_eq!(e.code(), "offer_no_default");
    }

    #[test]
    fn decisions_rank_targeted_offers_and_fill_with_defaults() {
        let cat = offers();
        let personalization = PurposeId::parse("personalization").unwrap();
        for r in cat.rules() {
            check(&r, &personalization, &catalog(), &fields(), &|_| None).unwrap();
        }
        let engine = Engine::new(100);
        let d = engine.define_offers(0, &cat.rules()).unwrap();
        assert!(d.needs_replay);
        let s = SubjectId::from_bytes([7; 16]);
        engine.set_field(
            s,
            &FieldName::parse("interests").unwrap(),
            Some(FieldValue::Many(vec!["running".into()])),
        );
        for day in [95, 99] {
            engine.apply_event(s, PurposeSet::single(0), day, &track("App Session", &[]));
        }
        let fc = fields();
        let granted = PurposeSet::single(0);
        let d = cat
            .decide(&engine, "home", Some(&s), 0, granted, &fc, 3)
            .unwrap();
        assert!(d.personalized);
        let ids: Vec<&str> = d.items.iter().map(|c| c.offer.id.as_str()).collect();
        assert_eq!(ids, ["active", "runners", "home_default2"]);
        let why: Vec<String> = d.items[0].reasons.iter().map(|r| r.sentence()).collect();
        assert_eq!(why, ["you used App Session on 2 days in the last 30 days"]);
        let why: Vec<String> = d.items[1].reasons.iter().map(|r| r.sentence()).collect();
        assert_eq!(why, ["you told us your interests include running"]);
        assert!(d.items[2].reasons.is_empty());

        // Without the purpose, or without a subject: defaults only, nothing read.
        for (subject, granted) in [(Some(&s), PurposeSet::single(1)), (None, granted)] {
            let d = cat
                .decide(&engine, "home", subject, 0, granted, &fc, 5)
                .unwrap();
            assert!(!d.personalized);
            let ids: Vec<&str> = d.items.iter().map(|c| c.offer.id.as_str()).collect();
            assert_eq!(ids, ["home_default2", "home_default"]);
        }
        let d = cat
            .decide(&engine, "home", Some(&s), 0, granted, &fc, 1)
            .unwrap();
        assert_eq!(d.items.len(), 1);
        assert!(cat
            .decide(&engine, "nowhere", None, 0, granted, &fc, 1)
            .is_none());
    }
}
