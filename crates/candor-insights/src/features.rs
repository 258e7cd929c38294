//! Per-subject daily usage features and their in-memory index: the privacy engine's only
//! input (raw events never are).
//!
//! A feature is one subject's activity of one kind (app installed, app used, site category
//! browsed) in one category on one UTC day, with a count (sessions, visits). Declared
//! (zero-party) fields the subject marked shareable in aggregate ride along, limited to the
//! values the operator's schema lists, so that grouping by them never reveals a value that
//! only the data could tell.
//!
//! **Why in memory, and why this shape.** An advertiser's query scans every eligible
//! subject; at a million subjects over 30 days that is tens of millions of daily rows, and
//! the answer must come back interactively. So the index keeps, per subject, one sorted
//! vector of 8-byte entries (`category|kind`, day, count), sharded by subject like the
//! consent index so that ingestion locks one shard for a few nanoseconds and a scan holds
//! one shard's read lock at a time. Category names are interned to 14-bit ids.
//!
//! **Category names are the operator's, never the data's.** The schema lists every
//! category an activity may be counted under (a built-in list of app-store and site
//! categories unless the config names its own); a name outside it is counted as
//! [`OTHER`]. So one subject sending a million made-up names cannot fill the interner,
//! the tables or the index, and the names an advertiser can see are public in advance.
//! The ids are fixed when the index is built and never change while it lives.
//!
//! **Who writes it.** Only the store, after the transaction that wrote the same feature
//! durably has committed, and always with the *absolute* stored count (never a delta), so
//! replaying a write or reloading at start is idempotent.
//!
//! **Retention.** Features are history, so they expire: the store's retention pass deletes
//! the rows of days past the insights purpose's retention and then calls
//! [`FeatureIndex::prune_before`], so the index never answers from a day the tables no
//! longer hold. Declared fields are current state, not history, and do not expire.
//!
//! **Consent.** The index does not decide eligibility: every scan asks the consent index
//! whether the subject grants the insights purpose *now*, so a withdrawal removes the
//! subject from the next answer even before the store deletes their features.

use std::collections::HashMap;

use candor_core::idhash::IdMap;
use candor_core::SubjectId;
use parking_lot::RwLock;

/// Most declared fields a schema may have (each subject carries one small slot per field).
pub const MAX_DECLARED: usize = 8;
/// Most values one declared field may list.
pub const MAX_DECLARED_VALUES: usize = 255;
/// Most categories a schema may list (ids are 14 bits; the last id is [`NEVER`]).
pub const MAX_CATEGORIES: usize = (1 << 14) - 2;
/// The category every activity outside the schema's list is counted under.
pub const OTHER: &str = "other";
/// A category id no feature ever has: a query naming a category nobody can have scans
/// for it like for any other (see `query::evaluate`), instead of skipping the scan.
pub(crate) const NEVER: u16 = 0x3FFF;
/// The categories activities are counted under when the operator's config lists none:
/// app-store categories and site categories. Special categories of data (health
/// conditions, religion, politics, sexuality) are left out on purpose: an operator who
/// has a lawful basis for one must list it themselves.
pub const DEFAULT_CATEGORIES: &[&str] = &[
    "art_design",
    "auto_vehicles",
    "automotive",
    "beauty",
    "books_reference",
    "business",
    "careers",
    "comics",
    "communication",
    "education",
    "entertainment",
    "events",
    "family",
    "fashion",
    "finance",
    "food",
    "food_drink",
    "gaming",
    "games",
    "health",
    "health_fitness",
    "hobbies",
    "home_garden",
    "house_home",
    "kids",
    "lifestyle",
    "maps_navigation",
    "movies",
    "music",
    "news",
    "parenting",
    "personalization",
    "pets",
    "photography",
    "productivity",
    "real_estate",
    "science",
    "shopping",
    "social",
    "sports",
    "technology",
    "tools",
    "travel",
    "video",
    "weather",
];
/// Days are kept in memory as offsets from 2000-01-01 in 16 bits.
const DAY_BASE: u32 = 10_957;
const SHARDS: usize = 64;
use candor_core::time::DAY_MS;

/// What a feature records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeatureKind {
    /// An app of this category was installed (count: installs).
    AppInstalled,
    /// An app of this category was used (count: sessions).
    AppUsed,
    /// A page of this category was visited (count: visits).
    Browsed,
}

impl FeatureKind {
    pub const ALL: [FeatureKind; 3] = [Self::AppInstalled, Self::AppUsed, Self::Browsed];

    /// Stable code stored in the database.
    pub fn code(self) -> u8 {
        match self {
            Self::AppInstalled => 0,
            Self::AppUsed => 1,
            Self::Browsed => 2,
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == c)
    }

    /// The name used in configuration and in the query API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppInstalled => "app_installs",
            Self::AppUsed => "app_usage",
            Self::Browsed => "browsing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A category name: 1–64 characters of `a-z 0-9 _ - .` (ASCII letters are lowercased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Category(String);

impl Category {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        ok.then(|| Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A UTC day, as days since 1970-01-01, within the range the index can hold
/// (2000-01-01 to 2179).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Day(u32);

impl Day {
    /// The first day the index can hold (2000-01-01).
    pub const MIN: Day = Day(DAY_BASE);
    /// The last day the index can hold.
    pub const MAX: Day = Day(DAY_BASE + u16::MAX as u32 - 1);

    pub fn from_days(days: u32) -> Option<Self> {
        (DAY_BASE..DAY_BASE + u32::from(u16::MAX))
            .contains(&days)
            .then_some(Self(days))
    }

    pub fn from_ms(ms: i64) -> Option<Self> {
        u32::try_from(ms.div_euclid(DAY_MS))
            .ok()
            .and_then(Self::from_days)
    }

    pub fn days(self) -> u32 {
        self.0
    }

    pub fn start_ms(self) -> i64 {
        i64::from(self.0) * DAY_MS
    }

    pub(crate) fn offset(self) -> u16 {
        // in range by construction
        u16::try_from(self.0 - DAY_BASE).unwrap_or(u16::MAX)
    }
}

/// One stored daily feature (with the absolute count when read from or written to the index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyFeature {
    pub day: Day,
    pub kind: FeatureKind,
    pub category: Category,
    pub count: u32,
}

/// What one event contributes to its subject's features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureDelta {
    /// Add `count` to the subject's (day, kind, category) feature.
    Activity(DailyFeature),
    /// The subject declared `value` (one of the schema's values) for `field` and marked it
    /// shareable in aggregate.
    Declare { field: String, value: String },
    /// The subject no longer shares `field` in aggregate.
    Undeclare { field: String },
}

/// A declared field advertisers may filter and group by, with every value it may take.
/// The values are public (fixed by the operator, not read from the data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredField {
    pub name: String,
    pub values: Vec<String>,
}

/// The operator's insight schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub declared: Vec<DeclaredField>,
    /// Every category an activity may be counted under (see the module docs), sorted
    /// and distinct (so each event's name is found by binary search); anything else
    /// counts as [`OTHER`], which is always allowed.
    pub categories: Vec<Category>,
}

impl Default for Schema {
    /// No declared fields, the built-in categories.
    fn default() -> Self {
        Self {
            declared: Vec::new(),
            categories: default_categories(),
        }
    }
}

/// [`DEFAULT_CATEGORIES`], parsed and sorted.
pub fn default_categories() -> Vec<Category> {
    sorted_categories(DEFAULT_CATEGORIES.iter().filter_map(|c| Category::parse(c)))
}

/// Categories in the order a [`Schema`] holds them: sorted, each once.
pub fn sorted_categories(names: impl IntoIterator<Item = Category>) -> Vec<Category> {
    let mut v: Vec<Category> = names.into_iter().collect();
    v.sort();
    v.dedup();
    v
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("at most {MAX_DECLARED} declared fields")]
    TooManyFields,
    #[error("declared field {0:?} is listed twice, or clashes with a built-in dimension")]
    DuplicateField(String),
    #[error("declared field {0:?} needs 1 to {MAX_DECLARED_VALUES} distinct values")]
    Values(String),
    #[error("declared field name {0:?} is not a valid name (a-z, 0-9, _)")]
    FieldName(String),
    #[error("categories must list 1 to {MAX_CATEGORIES} distinct names, sorted")]
    Categories,
}

impl Schema {
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.declared.len() > MAX_DECLARED {
            return Err(SchemaError::TooManyFields);
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.declared {
            let ok_name = !f.name.is_empty()
                && f.name.len() <= 64
                && f.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok_name {
                return Err(SchemaError::FieldName(f.name.clone()));
            }
            if f.name == "category" || !seen.insert(f.name.as_str()) {
                return Err(SchemaError::DuplicateField(f.name.clone()));
            }
            let distinct: std::collections::BTreeSet<_> = f.values.iter().collect();
            if f.values.is_empty()
                || f.values.len() > MAX_DECLARED_VALUES
                || distinct.len() != f.values.len()
            {
                return Err(SchemaError::Values(f.name.clone()));
            }
        }
        if self.categories.is_empty()
            || self.categories.len() > MAX_CATEGORIES
            || !self.categories.windows(2).all(|w| w[0] < w[1])
        {
            return Err(SchemaError::Categories);
        }
        Ok(())
    }

    /// The category an activity named `name` is counted under: itself when the schema
    /// lists it, else [`OTHER`]; `None` when `name` is not a category name at all.
    pub fn category(&self, name: &str) -> Option<Category> {
        let c = Category::parse(name)?;
        if self.categories.binary_search(&c).is_ok() {
            Some(c)
        } else {
            Some(Category(OTHER.to_owned()))
        }
    }

    /// Index of a declared field.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.declared.iter().position(|f| f.name == name)
    }

    /// Index of a value of a declared field.
    pub fn value(&self, field: usize, value: &str) -> Option<usize> {
        self.declared
            .get(field)?
            .values
            .iter()
            .position(|v| v == value)
    }
}

/// One entry of a subject's feature vector: 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Feat {
    /// `kind << 14 | category id`: entries sort by kind, then category, then day.
    pub(crate) kc: u16,
    pub(crate) day: u16,
    pub(crate) count: u32,
}

/// How a write of a daily feature combines with the stored count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    Set,
    Add,
}

pub(crate) fn kc(kind: FeatureKind, category: u16) -> u16 {
    (u16::from(kind.code()) << 14) | (category & 0x3FFF)
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The store's small stable number for this subject (reports record membership by it).
    pub(crate) dense: u32,
    /// Per declared field: value index + 1, or 0 when not declared / not shared.
    pub(crate) declared: [u8; MAX_DECLARED],
    /// Sorted by (kc, day).
    pub(crate) feats: Vec<Feat>,
}

impl Entry {
    fn new(dense: u32) -> Self {
        Entry {
            dense,
            declared: [0; MAX_DECLARED],
            feats: Vec::new(),
        }
    }
}

/// Category names and their ids, fixed when the index is built: [`OTHER`] first, then
/// the schema's list.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u16>,
    names: Vec<String>,
}

impl Interner {
    fn of(schema: &Schema) -> Self {
        let mut me = Self::default();
        for name in std::iter::once(OTHER).chain(schema.categories.iter().map(|c| c.as_str())) {
            if !me.ids.contains_key(name) {
                let id = u16::try_from(me.names.len()).unwrap_or(NEVER);
                me.ids.insert(name.to_owned(), id);
                me.names.push(name.to_owned());
            }
        }
        me
    }
}

/// Counts for metrics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexStats {
    pub subjects: usize,
    pub daily_rows: usize,
    pub categories: usize,
}

/// The in-memory feature index (see the module docs).
pub struct FeatureIndex {
    schema: Schema,
    categories: Interner,
    pub(crate) shards: Vec<RwLock<IdMap<SubjectId, Entry>>>,
    /// First day still kept after the last retention pass ([`FeatureIndex::prune_before`]):
    /// a write of an older day that arrives late (committed before the pass deleted its
    /// row, published after) is ignored instead of bringing the day back.
    floor: std::sync::atomic::AtomicU16,
}

impl std::fmt::Debug for FeatureIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureIndex")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl FeatureIndex {
    pub fn new(schema: Schema) -> Result<Self, SchemaError> {
        schema.validate()?;
        Ok(Self {
            categories: Interner::of(&schema),
            schema,
            shards: (0..SHARDS).map(|_| RwLock::new(IdMap::default())).collect(),
            floor: std::sync::atomic::AtomicU16::new(0),
        })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    fn shard(&self, s: &SubjectId) -> &RwLock<IdMap<SubjectId, Entry>> {
        // Subject ids are random, so any byte is a uniform shard key.
        &self.shards[s.as_bytes()[1] as usize % SHARDS]
    }

    /// The id of a category; `None` for one the schema does not list (a row stored
    /// under an older schema: it is left out, since counts of several such names cannot
    /// be merged into [`OTHER`] without double counting on reload).
    fn intern(&self, c: &Category) -> Option<u16> {
        self.categories.ids.get(c.as_str()).copied()
    }

    /// The names of all categories, indexed by id.
    pub fn category_names(&self) -> &[String] {
        &self.categories.names
    }

    /// Sets the subject's stored feature to `f.count` (absolute); a count of 0 removes it.
    pub fn set_activity(&self, subject: SubjectId, dense: u32, f: &DailyFeature) {
        self.write_activity(subject, dense, f, Write::Set);
    }

    /// Adds `f.count` to the subject's feature (saturating). For a writer that knows the
    /// deltas it just committed and is the only one to publish them (SQLite's writer).
    pub fn add_activity(&self, subject: SubjectId, dense: u32, f: &DailyFeature) {
        self.write_activity(subject, dense, f, Write::Add);
    }

    fn write_activity(&self, subject: SubjectId, dense: u32, f: &DailyFeature, how: Write) {
        if f.day.offset() < self.floor.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let Some(cat) = self.intern(&f.category) else {
            return;
        };
        let feat = Feat {
            kc: kc(f.kind, cat),
            day: f.day.offset(),
            count: f.count,
        };
        let mut shard = self.shard(&subject).write();
        let e = shard.entry(subject).or_insert_with(|| Entry::new(dense));
        e.dense = dense;
        match e
            .feats
            .binary_search_by(|x| (x.kc, x.day).cmp(&(feat.kc, feat.day)))
        {
            Ok(i) if how == Write::Add => {
                e.feats[i].count = e.feats[i].count.saturating_add(feat.count)
            }
            Ok(i) if feat.count == 0 => {
                e.feats.remove(i);
            }
            Ok(i) => e.feats[i].count = feat.count,
            Err(_) if feat.count == 0 => {}
            Err(i) => e.feats.insert(i, feat),
        }
    }

    /// Sets (or, with `None`, clears) a declared field. Fields and values outside the
    /// schema are ignored: they can never be grouped or filtered on.
    pub fn set_declared(&self, subject: SubjectId, dense: u32, field: &str, value: Option<&str>) {
        let Some(fi) = self.schema.field(field) else {
            return;
        };
        let slot = match value {
            None => 0,
            Some(v) => match self.schema.value(fi, v) {
                Some(vi) => u8::try_from(vi + 1).unwrap_or(0),
                None => 0,
            },
        };
        let mut shard = self.shard(&subject).write();
        let e = shard.entry(subject).or_insert_with(|| Entry::new(dense));
        e.dense = dense;
        e.declared[fi] = slot;
    }

    /// Forgets everything about the subject (withdrawal of the insights purpose, erasure).
    pub fn remove_subject(&self, subject: &SubjectId) {
        self.shard(subject).write().remove(subject);
    }

    /// Removes every daily feature of a day before `day`, in every shard, and returns how
    /// many were removed (retention). Subjects left with no feature and no declared field
    /// are dropped, so that the index holds what a reload of the pruned tables would.
    pub fn prune_before(&self, day: Day) -> usize {
        let first_kept = day.offset();
        // Raise the floor first, so no write of an older day can land behind the pass.
        self.floor
            .fetch_max(first_kept, std::sync::atomic::Ordering::AcqRel);
        self.retain_feats(|f| f.day >= first_kept)
    }

    /// Removes every daily feature, as [`FeatureIndex::prune_before`] does for old ones
    /// (retention when the insights purpose has no retention period: nothing is kept).
    pub fn clear_activity(&self) -> usize {
        self.retain_feats(|_| false)
    }

    fn retain_feats(&self, keep: impl Fn(&Feat) -> bool) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            // One shard's write lock at a time, as ingestion takes it: a concurrent scan
            // waits for one shard, never for the whole pass.
            shard.write().retain(|_, e| {
                let before = e.feats.len();
                e.feats.retain(|f| keep(f));
                removed += before - e.feats.len();
                !e.feats.is_empty() || e.declared.iter().any(|v| *v != 0)
            });
        }
        removed
    }

    /// The declared fields the subject shares, as (field, value) in schema order (fields
    /// not shared are left out).
    pub fn declared_of(&self, subject: &SubjectId) -> Vec<(String, String)> {
        let shard = self.shard(subject).read();
        let Some(e) = shard.get(subject) else {
            return Vec::new();
        };
        self.schema
            .declared
            .iter()
            .zip(e.declared)
            .filter_map(|(f, slot)| {
                // Slots hold value index + 1; 0 is "not shared".
                let vi = usize::from(slot).checked_sub(1)?;
                Some((f.name.clone(), f.values.get(vi)?.clone()))
            })
            .collect()
    }

    /// The subject's stored features (for tests and the transparency API).
    pub fn features_of(&self, subject: &SubjectId) -> Vec<DailyFeature> {
        let names = self.category_names();
        let shard = self.shard(subject).read();
        let Some(e) = shard.get(subject) else {
            return Vec::new();
        };
        e.feats
            .iter()
            .filter_map(|f| {
                Some(DailyFeature {
                    day: Day::from_days(DAY_BASE + u32::from(f.day))?,
                    kind: FeatureKind::from_code((f.kc >> 14) as u8)?,
                    category: Category(names.get(usize::from(f.kc & 0x3FFF))?.clone()),
                    count: f.count,
                })
            })
            .collect()
    }

    pub fn stats(&self) -> IndexStats {
        let mut s = IndexStats {
            categories: self.categories.names.len(),
            ..IndexStats::default()
        };
        for shard in &self.shards {
            let shard = shard.read();
            s.subjects += shard.len();
            s.daily_rows += shard.values().map(|e| e.feats.len()).sum::<usize>();
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One declared field, `age_band`, with two values (shared by the crate's tests).
    pub(crate) fn schema() -> Schema {
        Schema {
            declared: vec![DeclaredField {
                name: "age_band".into(),
                values: vec!["18-24".into(), "25-34".into()],
            }],
            ..Schema::default()
        }
    }

    fn feat(day: u32, kind: FeatureKind, cat: &str, count: u32) -> DailyFeature {
        DailyFeature {
            day: Day::from_days(day).unwrap(),
            kind,
            category: Category::parse(cat).unwrap(),
            count,
        }
    }

    #[test]
    fn writes_are_absolute_and_idempotent() {
        let ix = FeatureIndex::new(schema()).unwrap();
        let s = SubjectId::random();
        ix.set_activity(s, 1, &feat(20_000, FeatureKind::AppUsed, "games", 3));
        ix.set_activity(s, 1, &feat(20_000, FeatureKind::AppUsed, "games", 3));
        ix.set_activity(s, 1, &feat(19_999, FeatureKind::AppUsed, "games", 1));
        ix.set_activity(s, 1, &feat(20_000, FeatureKind::Browsed, "news", 2));
        let got = ix.features_of(&s);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], feat(19_999, FeatureKind::AppUsed, "games", 1));
        assert_eq!(got[1], feat(20_000, FeatureKind::AppUsed, "games", 3));
        ix.set_activity(s, 1, &feat(19_999, FeatureKind::AppUsed, "games", 0));
        assert_eq!(ix.features_of(&s).len(), 2);
        assert_eq!(ix.stats().daily_rows, 2);
        ix.remove_subject(&s);
        assert_eq!(ix.stats().subjects, 0);
    }

    #[test]
    fn adding_sums_and_the_retention_floor_holds() {
        let ix = FeatureIndex::new(schema()).unwrap();
        let s = SubjectId::random();
        ix.add_activity(s, 1, &feat(20_000, FeatureKind::AppUsed, "games", 5));
        ix.add_activity(s, 1, &feat(20_000, FeatureKind::AppUsed, "games", 3));
        assert_eq!(ix.features_of(&s)[0].count, 8);
        ix.add_activity(s, 1, &feat(20_000, FeatureKind::AppUsed, "games", u32::MAX));
        assert_eq!(ix.features_of(&s)[0].count, u32::MAX, "saturates");
        assert_eq!(ix.prune_before(Day::from_days(20_001).unwrap()), 1);
        // a late write of a pruned day does not come back, by either path
        ix.add_activity(s, 1, &feat(20_000, FeatureKind::AppUsed, "games", 9));
        ix.set_activity(s, 1, &feat(20_000, FeatureKind::AppUsed, "games", 9));
        assert!(ix.features_of(&s).is_empty());
        ix.set_activity(s, 1, &feat(20_001, FeatureKind::AppUsed, "games", 1));
        assert_eq!(ix.features_of(&s).len(), 1);
    }

    #[test]
    fn declared_values_outside_the_schema_are_ignored() {
        let ix = FeatureIndex::new(schema()).unwrap();
        let s = SubjectId::random();
        ix.set_declared(s, 7, "age_band", Some("25-34"));
        assert_eq!(ix.shard(&s).read()[&s].declared[0], 2);
        ix.set_declared(s, 7, "age_band", Some("99-100"));
        assert_eq!(ix.shard(&s).read()[&s].declared[0], 0);
        ix.set_declared(s, 7, "shoe_size", Some("42"));
        assert_eq!(ix.shard(&s).read()[&s].dense, 7);
    }

    #[test]
    fn pruning_removes_old_days_in_every_shard() {
        let ix = FeatureIndex::new(schema()).unwrap();
        // Enough subjects that several shards hold some.
        let subjects: Vec<SubjectId> = (0..200).map(|_| SubjectId::random()).collect();
        for (i, s) in subjects.iter().enumerate() {
            let dense = u32::try_from(i).unwrap();
            for day in 19_998..=20_001 {
                ix.set_activity(*s, dense, &feat(day, FeatureKind::AppUsed, "games", 1));
            }
            ix.set_activity(*s, dense, &feat(19_990, FeatureKind::Browsed, "news", 4));
        }
        let used = ix.shards.iter().filter(|s| !s.read().is_empty()).count();
        assert!(used > 1, "spread over {used} shard(s)");
        // The first subject keeps nothing but a declared field; the second has nothing else.
        ix.set_declared(subjects[0], 0, "age_band", Some("18-24"));
        assert_eq!(ix.stats().daily_rows, 200 * 5);

        let removed = ix.prune_before(Day::from_days(20_000).unwrap());
        assert_eq!(removed, 200 * 3, "19990, 19998 and 19999 of every subject");
        for s in &subjects {
            assert_eq!(
                ix.features_of(s),
                vec![
                    feat(20_000, FeatureKind::AppUsed, "games", 1),
                    feat(20_001, FeatureKind::AppUsed, "games", 1),
                ]
            );
        }
        assert_eq!(ix.prune_before(Day::from_days(20_000).unwrap()), 0);

        // Past every feature: subjects with nothing left go, a declared field keeps one.
        assert_eq!(ix.prune_before(Day::from_days(20_002).unwrap()), 200 * 2);
        assert_eq!(
            ix.stats(),
            IndexStats {
                subjects: 1,
                daily_rows: 0,
                categories: DEFAULT_CATEGORIES.len() + 1
            }
        );
        assert_eq!(ix.shard(&subjects[0]).read()[&subjects[0]].dense, 0);
        assert!(ix.features_of(&subjects[1]).is_empty());

        ix.set_activity(
            subjects[1],
            1,
            &feat(20_100, FeatureKind::AppUsed, "games", 2),
        );
        assert_eq!(ix.prune_before(Day::MIN), 0);
        assert_eq!(ix.clear_activity(), 1);
        assert_eq!(ix.stats().subjects, 1);
    }

    #[test]
    fn declared_fields_read_back_in_schema_order() {
        let ix = FeatureIndex::new(Schema {
            declared: vec![
                DeclaredField {
                    name: "age_band".into(),
                    values: vec!["18-24".into(), "25-34".into()],
                },
                DeclaredField {
                    name: "country".into(),
                    values: vec!["de".into(), "fr".into()],
                },
                DeclaredField {
                    name: "plan".into(),
                    values: vec!["free".into(), "paid".into()],
                },
            ],
            ..Schema::default()
        })
        .unwrap();
        let s = SubjectId::random();
        assert!(ix.declared_of(&s).is_empty(), "unknown subject");
        // Set out of schema order; "country" stays unset.
        ix.set_declared(s, 1, "plan", Some("paid"));
        ix.set_declared(s, 1, "age_band", Some("25-34"));
        let pair = |f: &str, v: &str| (f.to_owned(), v.to_owned());
        assert_eq!(
            ix.declared_of(&s),
            vec![pair("age_band", "25-34"), pair("plan", "paid")]
        );
        ix.set_declared(s, 1, "age_band", None);
        ix.set_declared(s, 1, "country", Some("fr"));
        // A value outside the schema clears the field rather than storing it.
        ix.set_declared(s, 1, "plan", Some("gold"));
        assert_eq!(ix.declared_of(&s), vec![pair("country", "fr")]);
        assert!(ix.declared_of(&SubjectId::random()).is_empty());
    }

    #[test]
    fn names_and_days_are_checked() {
        assert!(Category::parse("Health_Fitness").is_some());
        assert_eq!(Category::parse("A").unwrap().as_str(), "a");
        assert!(Category::parse("").is_none());
        assert!(Category::parse("has space").is_none());
        assert!(Category::parse(&"x".repeat(65)).is_none());
        assert!(Day::from_ms(0).is_none());
        assert_eq!(Day::from_days(Day::MIN.days()), Some(Day::MIN));
        assert_eq!(Day::from_days(Day::MAX.days()), Some(Day::MAX));
        assert!(Day::from_days(Day::MIN.days() - 1).is_none());
        assert!(Day::from_days(Day::MAX.days() + 1).is_none());
        assert_eq!(Day::from_ms(1_764_374_400_000).unwrap().days(), 20_421);
        let bad = Schema {
            declared: vec![DeclaredField {
                name: "category".into(),
                values: vec!["a".into()],
            }],
            ..Schema::default()
        };
        assert!(bad.validate().is_err());
        // Categories are held sorted and distinct (the extraction searches them).
        let parse = |names: &[&str]| names.iter().filter_map(|c| Category::parse(c)).collect();
        for names in [&["b", "a"][..], &["a", "a"], &[]] {
            let s = Schema {
                categories: parse(names),
                ..Schema::default()
            };
            assert_eq!(s.validate(), Err(SchemaError::Categories), "{names:?}");
        }
        assert!(Schema::default().validate().is_ok());
        let own = Schema {
            categories: sorted_categories(parse(&["b", "a", "b"])),
            ..Schema::default()
        };
        assert!(own.validate().is_ok());
        assert_eq!(own.category("B").unwrap().as_str(), "b");
        assert_eq!(own.category("games").unwrap().as_str(), OTHER);
        assert_eq!(own.category("not one"), None);
    }
}
