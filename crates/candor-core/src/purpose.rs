//! Purposes, their notices, and the [`Catalog`] that turns "this is an `app_usage`
//! event" into "these purposes may use it".
//!
//! The catalog is built once from the operator's configuration plus the store's
//! stable bit assignments, and then only read: every decision on the ingestion hot
//! path is a hash lookup and a mask.

use crate::event::EventKind;
use crate::ids::{CategoryId, PurposeId};
use crate::lang::Language;
use crate::purpose_set::{PurposeSet, MAX_PURPOSES};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

/// The text a person is shown before choosing, versioned. Its SHA-256 is recorded with
/// every consent so that a regulator can be shown exactly what was agreed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub version: u32,
    pub text: String,
    pub hash: [u8; 32],
}

impl Notice {
    pub fn new(version: u32, text: impl Into<String>) -> Self {
        let text = text.into();
        let hash = Sha256::digest(text.as_bytes()).into();
        Self {
            version,
            text,
            hash,
        }
    }
}

/// A purpose's title and notice in one more language. The notice keeps the purpose's
/// version (a new version means every language is re-asked) but has its own text and
/// therefore its own hash: the ledger records the hash of the text the person read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translation {
    pub title: String,
    pub notice: Notice,
}

/// What a person reading in one language is shown for a purpose.
#[derive(Clone, Copy, Debug)]
pub struct Localized<'a> {
    pub language: &'a Language,
    pub title: &'a str,
    pub notice: &'a Notice,
}

#[derive(Clone, Debug)]
pub struct Purpose {
    pub id: PurposeId,
    /// Stable bit in a [`PurposeSet`], assigned by the store.
    pub bit: u8,
    pub title: String,
    pub notice: Notice,
    pub categories: Vec<CategoryId>,
    pub retention_days: u32,
    pub recipients: Vec<String>,
    /// Counts as "sale or sharing" under US state law, so a GPC signal refuses it.
    pub sale_or_sharing: bool,
    pub tcf_purposes: Vec<u8>,
    /// IAB TCF special features (1..=2) this purpose needs an opt-in for.
    pub tcf_special_features: Vec<u8>,
    /// GPP `usnat` opt-out fields (e.g. `SaleOptOut`) that refusing this purpose sets.
    pub usnat_opt_outs: Vec<String>,
    pub dpv: Option<String>,
    /// Google Consent Mode signals (`analytics_storage`, ...) this purpose's grant
    /// allows; a signal is granted only when every purpose naming it is.
    pub consent_mode: Vec<String>,
    /// The title and notice in other languages than the catalog's default.
    pub translations: BTreeMap<Language, Translation>,
}

impl Purpose {
    /// The title and notice for `language` (`None`: the default), falling back from
    /// the exact tag to its primary language and then to the catalog's default text.
    pub fn localized<'a>(
        &'a self,
        default_language: &'a Language,
        language: Option<&Language>,
    ) -> Localized<'a> {
        let found = language
            .and_then(|l| l.best_match(self.translations.keys()))
            .and_then(|l| self.translations.get_key_value(l));
        match found {
            Some((language, t)) => Localized {
                language,
                title: &t.title,
                notice: &t.notice,
            },
            None => Localized {
                language: default_language,
                title: &self.title,
                notice: &self.notice,
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct Category {
    pub id: CategoryId,
    pub description: String,
}

/// How an event becomes a data category: by message kind, optionally narrowed by
/// event name (the `event` of a track, the `name` of a page or screen).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventRule {
    pub kind: EventKind,
    pub name: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("purpose {0} is defined twice")]
    DuplicatePurpose(String),
    #[error("data category {0} is defined twice")]
    DuplicateCategory(String),
    #[error("purpose {purpose} names unknown data category {category}")]
    UnknownCategory { purpose: String, category: String },
    #[error("event mapping {rule} names unknown data category {category}")]
    UnknownMappedCategory { rule: String, category: String },
    #[error("more than {MAX_PURPOSES} purposes")]
    TooManyPurposes,
    #[error("purpose bit {0} is used twice")]
    DuplicateBit(u8),
    #[error("TCF purpose {0} is out of range 1..=11")]
    BadTcfPurpose(u8),
    #[error("TCF special feature {0} is out of range 1..=2")]
    BadSpecialFeature(u8),
}

/// The operator's purposes and data categories, indexed for fast decisions.
#[derive(Clone, Debug)]
pub struct Catalog {
    purposes: Vec<Purpose>,
    by_id: HashMap<PurposeId, usize>,
    by_bit: [Option<usize>; MAX_PURPOSES as usize],
    categories: BTreeMap<CategoryId, Category>,
    covering: HashMap<CategoryId, PurposeSet>,
    /// kind → (exact names → category, category for any other name).
    rules: HashMap<EventKind, (HashMap<String, CategoryId>, Option<CategoryId>)>,
    sale_or_sharing: PurposeSet,
    all: PurposeSet,
    /// The language of the purposes' own titles and notices.
    language: Language,
}

impl Catalog {
    pub fn new(
        purposes: Vec<Purpose>,
        categories: Vec<Category>,
        rules: Vec<(EventRule, CategoryId)>,
    ) -> Result<Self, CatalogError> {
        if purposes.len() > MAX_PURPOSES as usize {
            return Err(CatalogError::TooManyPurposes);
        }
        let mut cats = BTreeMap::new();
        for c in categories {
            if cats.insert(c.id.clone(), c.clone()).is_some() {
                return Err(CatalogError::DuplicateCategory(c.id.to_string()));
            }
        }
        let mut by_id = HashMap::new();
        let mut by_bit = [None; MAX_PURPOSES as usize];
        let mut covering: HashMap<CategoryId, PurposeSet> = HashMap::new();
        let mut sale = PurposeSet::EMPTY;
        let mut all = PurposeSet::EMPTY;
        for (i, p) in purposes.iter().enumerate() {
            if by_id.insert(p.id.clone(), i).is_some() {
                return Err(CatalogError::DuplicatePurpose(p.id.to_string()));
            }
            let slot = by_bit
                .get_mut(p.bit as usize)
                .ok_or(CatalogError::TooManyPurposes)?;
            if slot.is_some() {
                return Err(CatalogError::DuplicateBit(p.bit));
            }
            *slot = Some(i);
            for t in &p.tcf_purposes {
                if !(1..=11).contains(t) {
                    return Err(CatalogError::BadTcfPurpose(*t));
                }
            }
            for f in &p.tcf_special_features {
                if !(1..=2).contains(f) {
                    return Err(CatalogError::BadSpecialFeature(*f));
                }
            }
            for c in &p.categories {
                if !cats.contains_key(c) {
                    return Err(CatalogError::UnknownCategory {
                        purpose: p.id.to_string(),
                        category: c.to_string(),
                    });
                }
                covering.entry(c.clone()).or_default().insert(p.bit);
            }
            if p.sale_or_sharing {
                sale.insert(p.bit);
            }
            all.insert(p.bit);
        }
        let mut rule_map: HashMap<EventKind, (HashMap<String, CategoryId>, Option<CategoryId>)> =
            HashMap::new();
        for (rule, cat) in rules {
            if !cats.contains_key(&cat) {
                return Err(CatalogError::UnknownMappedCategory {
                    rule: format!(
                        "{}:{}",
                        rule.kind.as_str(),
                        rule.name.as_deref().unwrap_or("*")
                    ),
                    category: cat.to_string(),
                });
            }
            let entry = rule_map.entry(rule.kind).or_default();
            match rule.name {
                Some(n) => {
                    entry.0.insert(n, cat);
                }
                None => entry.1 = Some(cat),
            }
        }
        Ok(Self {
            purposes,
            by_id,
            by_bit,
            categories: cats,
            covering,
            rules: rule_map,
            sale_or_sharing: sale,
            all,
            language: Language::english(),
        })
    }

    /// Declares the language the purposes' own titles and notices are written in.
    pub fn with_language(mut self, language: Language) -> Self {
        self.language = language;
        self
    }

    pub fn language(&self) -> &Language {
        &self.language
    }

    /// Every language some notice is written in, the default among them, sorted.
    pub fn languages(&self) -> Vec<&Language> {
        let mut all: Vec<&Language> = std::iter::once(&self.language)
            .chain(self.purposes.iter().flat_map(|p| p.translations.keys()))
            .collect();
        all.sort();
        all.dedup();
        all
    }

    pub fn purposes(&self) -> &[Purpose] {
        &self.purposes
    }

    pub fn purpose(&self, id: &PurposeId) -> Option<&Purpose> {
        self.by_id.get(id).map(|i| &self.purposes[*i])
    }

    pub fn purpose_by_bit(&self, bit: u8) -> Option<&Purpose> {
        self.by_bit
            .get(bit as usize)
            .copied()
            .flatten()
            .map(|i| &self.purposes[i])
    }

    pub fn categories(&self) -> impl Iterator<Item = &Category> {
        self.categories.values()
    }

    pub fn has_category(&self, id: &CategoryId) -> bool {
        self.categories.contains_key(id)
    }

    /// The purposes whose notice covers this category.
    pub fn covering(&self, category: &CategoryId) -> PurposeSet {
        self.covering.get(category).copied().unwrap_or_default()
    }

    /// The data category of a message, by exact name first, then by kind alone.
    /// `None` means unmapped: such a message is dropped (fail closed).
    pub fn category_for(&self, kind: EventKind, name: Option<&str>) -> Option<&CategoryId> {
        let (exact, any) = self.rules.get(&kind)?;
        name.and_then(|n| exact.get(n)).or(any.as_ref())
    }

    pub fn sale_or_sharing(&self) -> PurposeSet {
        self.sale_or_sharing
    }

    pub fn all(&self) -> PurposeSet {
        self.all
    }

    /// Purpose ids of a set, in catalog order, for display.
    pub fn names(&self, set: PurposeSet) -> Vec<&PurposeId> {
        set.iter()
            .filter_map(|b| self.purpose_by_bit(b).map(|p| &p.id))
            .collect()
    }

    /// Parses purpose names into a set; unknown names are an error.
    pub fn set_of<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<PurposeSet, String> {
        let mut s = PurposeSet::EMPTY;
        for n in names {
            let p = PurposeId::parse(n)
                .ok()
                .and_then(|id| self.purpose(&id))
                .ok_or_else(|| n.to_owned())?;
            s.insert(p.bit);
        }
        Ok(s)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn cat(s: &str) -> CategoryId {
        CategoryId::parse(s).unwrap()
    }

    pub fn purpose(id: &str, bit: u8, cats: &[&str], sale: bool) -> Purpose {
        Purpose {
            id: PurposeId::parse(id).unwrap(),
            bit,
            title: id.into(),
            notice: Notice::new(1, format!("We use data for {id}.")),
            categories: cats.iter().map(|c| cat(c)).collect(),
            retention_days: 30,
            recipients: vec![],
            sale_or_sharing: sale,
            tcf_purposes: vec![],
            tcf_special_features: vec![],
            usnat_opt_outs: vec![],
            dpv: None,
            consent_mode: vec![],
            translations: BTreeMap::new(),
        }
    }

    pub fn sample() -> Catalog {
        Catalog::new(
            vec![
                purpose("analytics", 0, &["app_usage", "browsing"], false),
                purpose("ads_insights", 1, &["app_usage"], true),
            ],
            vec![
                Category {
                    id: cat("app_usage"),
                    description: String::new(),
                },
                Category {
                    id: cat("browsing"),
                    description: String::new(),
                },
            ],
            vec![
                (
                    EventRule {
                        kind: EventKind::Track,
                        name: None,
                    },
                    cat("app_usage"),
                ),
                (
                    EventRule {
                        kind: EventKind::Page,
                        name: None,
                    },
                    cat("browsing"),
                ),
            ],
        )
        .unwrap()
    }

    #[test]
    fn covering_and_mapping() {
        let c = sample();
        assert_eq!(c.covering(&cat("app_usage")).bits(), 0b11);
        assert_eq!(c.covering(&cat("browsing")).bits(), 0b01);
        assert_eq!(
            c.category_for(EventKind::Track, Some("x")),
            Some(&cat("app_usage"))
        );
        assert_eq!(c.category_for(EventKind::Identify, None), None);
        assert_eq!(c.sale_or_sharing().bits(), 0b10);
    }

    #[test]
    fn rejects_unknown_category_and_duplicate_bits() {
        let bad = Catalog::new(vec![purpose("a", 0, &["nope"], false)], vec![], vec![]);
        assert!(matches!(bad, Err(CatalogError::UnknownCategory { .. })));
        let dup = Catalog::new(
            vec![purpose("a", 0, &[], false), purpose("b", 0, &[], false)],
            vec![],
            vec![],
        );
        assert_eq!(dup.err(), Some(CatalogError::DuplicateBit(0)));
    }
}
