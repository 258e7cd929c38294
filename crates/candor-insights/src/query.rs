//! An advertiser's question, checked against the schema and the advertiser's permissions
//! ([`InsightQuery::compile`]), then evaluated over the feature index into the bounded,
//! pre-noise aggregate that `candor_privacy::query::release` noises ([`evaluate`]).
//!
//! **What a row is.** The query names one feature kind (`app_usage`, `app_installs`,
//! `browsing`) and a date range. For each eligible subject, its daily features of that
//! kind in the range are folded per category into `days` (days with any activity) and
//! `sessions` (sum of counts). Grouping by `category` gives one contribution per category;
//! grouping only by declared fields (or not at all) folds the categories into one
//! contribution per subject (sessions summed, days counted once).
//!
//! **Who is in the audience.** A subject is eligible when the consent index says it grants
//! the insights purpose *at the time of the scan* (the caller's `eligible` closure), its
//! declared fields match the filter, every feature condition holds (at least `min_days`
//! days of that kind, optionally of one category, in the range), and it has at least one
//! row. Subjects that lack a declared field the query groups by are left out (their group
//! is unknown), never put in an "unknown" group.
//!
//! **Errors depend on the query, never on the data.** An unknown *category* name in a
//! filter or key is not an error (it simply matches nothing): whether a category occurs
//! in the data is itself private. Declared fields and values are public schema, so naming
//! one that does not exist is an error. **Nor does the work:** a condition on a category
//! nobody has (or the schema does not list) scans every subject like any other, so the
//! time an answer takes does not tell whether the name occurs.
//!
//! **Public or private group keys.** Keys are public (no partition selection, no δ) when
//! the advertiser lists them, or when every group-by dimension has a data-independent
//! domain: declared fields always do; `category` does when the query filters to a list of
//! categories. Otherwise category keys come from the data and only groups that pass
//! noisy-threshold partition selection are released.
//!
//! **Bounding.** Each subject keeps at most `max_groups_per_subject` groups; when it has
//! more, the ones with the smallest HMAC tags under a per-query random key
//! (`candor_privacy::bounds::SelectionKey`), exactly as `candor_privacy::bounds` specifies.
//! Values are clamped and put on the grid by the plan's quantizer.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use candor_core::SubjectId;
use candor_privacy::bounds::SelectionKey;
use candor_privacy::mechanism::Quantizer;
use candor_privacy::query::{Aggregate, GroupKeys, Plan};
use candor_privacy::{Budget, GroupKey, Query};

use crate::features::{kc, Category, Day, Entry, FeatureIndex, FeatureKind, NEVER};

/// Longest date range a query may cover, in days.
pub const MAX_RANGE_DAYS: u32 = 400;
/// Most feature conditions in one audience filter.
pub const MAX_CONDITIONS: usize = 8;
/// Most listed categories or public keys.
pub const MAX_KEYS: usize = 10_000;
/// Name of the category dimension.
pub const CATEGORY: &str = "category";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Count,
    Sum,
    Mean,
    Histogram,
    TopK(usize),
}

/// What is summed or averaged per subject and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Sum of daily counts (sessions, visits, installs).
    Sessions,
    /// Days with any activity.
    DaysActive,
}

impl Measure {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sessions" => Some(Self::Sessions),
            "days_active" => Some(Self::DaysActive),
            _ => None,
        }
    }
}

/// The subject must have at least `min_days` days of `kind` (of `category` if given) in
/// the query's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: FeatureKind,
    pub category: Option<String>,
    pub min_days: u32,
}

/// An advertiser's question, as parsed from the API (names still unchecked).
#[derive(Debug, Clone, PartialEq)]
pub struct InsightQuery {
    pub metric: Metric,
    pub feature: FeatureKind,
    pub measure: Option<Measure>,
    pub clamp: Option<(f64, f64)>,
    pub group_by: Vec<String>,
    /// Public group keys chosen by the advertiser (one value per group-by dimension).
    pub keys: Option<Vec<Vec<String>>>,
    pub from: Day,
    /// Inclusive.
    pub to: Day,
    pub categories: Option<Vec<String>>,
    /// Declared field → allowed values.
    pub declared: BTreeMap<String, Vec<String>>,
    pub conditions: Vec<Condition>,
    pub max_groups_per_subject: u32,
    pub epsilon: f64,
    /// `None`: [`DEFAULT_DELTA`] when the group keys turn out private, else 0.
    pub delta: Option<f64>,
}

/// δ of a query with private group keys that names none (the cost of partition selection).
pub const DEFAULT_DELTA: f64 = 1e-6;

/// What an advertiser may use, and the operator's minimum group size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub features: Vec<String>,
    /// Dimensions usable in `group_by` and in filters (`category` and declared fields).
    pub dimensions: Vec<String>,
    pub min_group_size: i64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InsightError {
    #[error("feature {0:?} is not allowed for this advertiser")]
    FeatureNotAllowed(String),
    #[error("dimension {0:?} is not allowed for this advertiser")]
    DimensionNotAllowed(String),
    #[error("unknown dimension {0:?}")]
    UnknownDimension(String),
    #[error("declared field {field:?} has no value {value:?}")]
    UnknownValue { field: String, value: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Query(#[from] candor_privacy::QueryError),
}

fn invalid(s: impl Into<String>) -> InsightError {
    InsightError::Invalid(s.into())
}

/// One group-by dimension, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    Category,
    Declared(usize),
}

/// A checked query: the privacy engine's [`Query`] plus what the scan needs.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub query: Query,
    metric: Metric,
    feature: FeatureKind,
    measure: Measure,
    dims: Vec<Dim>,
    from: u16,
    to: u16,
    /// Allowed category names (None: all).
    categories: Option<BTreeSet<String>>,
    /// Per declared field index: allowed value slots (1-based), for filtered fields.
    declared: Vec<(usize, BTreeSet<u8>)>,
    conditions: Vec<(FeatureKind, Option<String>, u32)>,
    /// Public keys as strings (None: private keys).
    public: Option<Vec<GroupKey>>,
}

impl InsightQuery {
    /// Checks the query against the schema and the advertiser's permissions and builds the
    /// privacy engine's query. Depends on the query, the schema and the permissions only.
    pub fn compile(
        &self,
        index: &FeatureIndex,
        perm: &Permissions,
    ) -> Result<Compiled, InsightError> {
        let schema = index.schema();
        let allowed_dim = |d: &str| -> Result<(), InsightError> {
            if perm.dimensions.iter().any(|x| x == d) {
                Ok(())
            } else {
                Err(InsightError::DimensionNotAllowed(d.into()))
            }
        };
        let feature_ok = |k: FeatureKind| -> Result<(), InsightError> {
            if perm.features.iter().any(|x| x == k.as_str()) {
                Ok(())
            } else {
                Err(InsightError::FeatureNotAllowed(k.as_str().into()))
            }
        };
        feature_ok(self.feature)?;
        if self.from > self.to {
            return Err(invalid("date_from is after date_to"));
        }
        if self.to.days() - self.from.days() + 1 > MAX_RANGE_DAYS {
            return Err(invalid(format!(
                "the date range is longer than {MAX_RANGE_DAYS} days"
            )));
        }
        // group-by dimensions
        let mut dims = Vec::new();
        for g in &self.group_by {
            let d = if g == CATEGORY {
                Dim::Category
            } else {
                Dim::Declared(
                    schema
                        .field(g)
                        .ok_or_else(|| InsightError::UnknownDimension(g.clone()))?,
                )
            };
            allowed_dim(g)?;
            if dims.contains(&d) {
                return Err(invalid(format!("dimension {g:?} is listed twice")));
            }
            dims.push(d);
        }
        if dims.len() > candor_privacy::query::MAX_DIMENSIONS {
            return Err(invalid("at most 2 group-by dimensions"));
        }
        // measure and clamp
        let (aggregate, measure) = match (self.metric, self.measure, self.clamp) {
            (Metric::Sum | Metric::Mean, Some(m), Some((lo, hi))) => {
                let a = if self.metric == Metric::Sum {
                    Aggregate::Sum { lo, hi }
                } else {
                    Aggregate::Mean { lo, hi }
                };
                (a, m)
            }
            (Metric::Sum | Metric::Mean, _, _) => {
                return Err(invalid(
                    "sum and mean need a measure and clamp bounds [lo, hi]",
                ))
            }
            (_, None, None) => (
                match self.metric {
                    Metric::Histogram => Aggregate::Histogram,
                    Metric::TopK(n) => Aggregate::TopK(n),
                    _ => Aggregate::Count,
                },
                Measure::Sessions,
            ),
            _ => {
                return Err(invalid(
                    "count, histogram and top_k take no measure or clamp",
                ))
            }
        };
        // filters
        let categories = match &self.categories {
            None => None,
            Some(list) => {
                allowed_dim(CATEGORY)?;
                if list.is_empty() || list.len() > MAX_KEYS {
                    return Err(invalid(format!(
                        "categories must list 1 to {MAX_KEYS} names"
                    )));
                }
                let mut set = BTreeSet::new();
                for c in list {
                    let c = Category::parse(c)
                        .ok_or_else(|| invalid(format!("{c:?} is not a category name")))?;
                    set.insert(c.as_str().to_owned());
                }
                Some(set)
            }
        };
        let mut declared = Vec::new();
        for (field, values) in &self.declared {
            let fi = schema
                .field(field)
                .ok_or_else(|| InsightError::UnknownDimension(field.clone()))?;
            allowed_dim(field)?;
            let mut slots = BTreeSet::new();
            for v in values {
                let vi = schema
                    .value(fi, v)
                    .ok_or_else(|| InsightError::UnknownValue {
                        field: field.clone(),
                        value: v.clone(),
                    })?;
                slots.insert(u8::try_from(vi + 1).map_err(|_| invalid("too many values"))?);
            }
            if slots.is_empty() {
                return Err(invalid(format!("the filter on {field:?} lists no value")));
            }
            declared.push((fi, slots));
        }
        if self.conditions.len() > MAX_CONDITIONS {
            return Err(invalid(format!(
                "at most {MAX_CONDITIONS} feature conditions"
            )));
        }
        let mut conditions = Vec::new();
        for c in &self.conditions {
            feature_ok(c.kind)?;
            let cat = match &c.category {
                None => None,
                Some(name) => {
                    allowed_dim(CATEGORY)?;
                    Some(
                        Category::parse(name)
                            .ok_or_else(|| invalid(format!("{name:?} is not a category name")))?
                            .as_str()
                            .to_owned(),
                    )
                }
            };
            if c.min_days == 0 || c.min_days > MAX_RANGE_DAYS {
                return Err(invalid("min_days must be between 1 and 400"));
            }
            conditions.push((c.kind, cat, c.min_days));
        }
        // group keys: public when listed, or when every dimension has a public domain
        let domain = |d: Dim| -> Option<Vec<String>> {
            match d {
                Dim::Declared(fi) => Some(schema.declared[fi].values.clone()),
                Dim::Category => categories.as_ref().map(|c| c.iter().cloned().collect()),
            }
        };
        let public: Option<Vec<GroupKey>> = if let Some(keys) = &self.keys {
            if keys.is_empty() || keys.len() > MAX_KEYS {
                return Err(invalid(format!("keys must list 1 to {MAX_KEYS} groups")));
            }
            let mut out = BTreeSet::new();
            for k in keys {
                if k.len() != dims.len() {
                    return Err(invalid("each key needs one value per group-by dimension"));
                }
                let mut parts = Vec::new();
                for (d, v) in dims.iter().zip(k) {
                    match d {
                        Dim::Category => parts.push(
                            Category::parse(v)
                                .ok_or_else(|| invalid(format!("{v:?} is not a category name")))?
                                .as_str()
                                .to_owned(),
                        ),
                        Dim::Declared(fi) => {
                            schema
                                .value(*fi, v)
                                .ok_or_else(|| InsightError::UnknownValue {
                                    field: schema.declared[*fi].name.clone(),
                                    value: v.clone(),
                                })?;
                            parts.push(v.clone());
                        }
                    }
                }
                out.insert(GroupKey::new(parts)?);
            }
            Some(out.into_iter().collect())
        } else if dims.iter().all(|d| domain(*d).is_some()) {
            let mut keys: Vec<Vec<String>> = vec![Vec::new()];
            for d in &dims {
                let vals = domain(*d).unwrap_or_default();
                keys = keys
                    .into_iter()
                    .flat_map(|k| {
                        vals.iter().map(move |v| {
                            let mut k = k.clone();
                            k.push(v.clone());
                            k
                        })
                    })
                    .collect();
                if keys.len() > MAX_KEYS {
                    return Err(invalid(format!("more than {MAX_KEYS} groups")));
                }
            }
            if dims.is_empty() {
                None // the single total key: candor-privacy treats it as public itself
            } else {
                Some(
                    keys.into_iter()
                        .map(GroupKey::new)
                        .collect::<Result<_, _>>()?,
                )
            }
        } else {
            None
        };
        let query = Query {
            aggregate,
            dimensions: self.group_by.clone(),
            keys: match &public {
                Some(k) => GroupKeys::Public(k.clone()),
                None => GroupKeys::Private,
            },
            max_groups_per_subject: self.max_groups_per_subject,
            budget: Budget::new(
                self.epsilon,
                self.delta
                    .unwrap_or(if public.is_none() && !dims.is_empty() {
                        DEFAULT_DELTA
                    } else {
                        0.0
                    }),
            )
            .map_err(candor_privacy::QueryError::from)?,
            min_noisy_count: perm.min_group_size,
        };
        // let the engine check the rest (k, δ vs key kind, top-k n) before anything runs
        candor_privacy::query::prepare(&query)?;
        Ok(Compiled {
            query,
            metric: self.metric,
            feature: self.feature,
            measure,
            dims,
            from: self.from.offset(),
            to: self.to.offset(),
            categories,
            declared,
            conditions,
            public,
        })
    }
}

impl Compiled {
    /// Whether group keys come from the data (partition selection, δ > 0).
    pub fn private_keys(&self) -> bool {
        self.public.is_none() && !self.dims.is_empty()
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }
}

/// The bounded, pre-noise aggregate of a query, and who contributed to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Per group: (distinct subjects, clamped sum in the plan's grid units). For public
    /// keys every key is present (zero when no subject falls in it).
    pub exact: BTreeMap<GroupKey, (i64, i64)>,
    /// Dense numbers of the subjects who contributed at least one group.
    pub members: Vec<u32>,
}

/// Scan-time form of the filters (category names resolved to ids once).
struct Scan<'a> {
    c: &'a Compiled,
    /// From the plan (which itself holds OpenDP measurements and cannot cross threads).
    k: usize,
    quantizer: Option<Quantizer>,
    key: &'a SelectionKey,
    /// Allowed category ids (None: all).
    cats: Option<Vec<bool>>,
    conds: Vec<(u16, u16, Option<u16>, u32)>, // (kc lo, kc hi, exact kc, min days)
    public: Option<HashMap<u32, ()>>,
    kind_lo: u16,
    kind_hi: u16,
}

const NONE_PART: u16 = u16::MAX;

fn pack(parts: [u16; 2]) -> u32 {
    (u32::from(parts[0]) << 16) | u32::from(parts[1])
}

/// Evaluates `c` over the index. `eligible` says whether a subject grants the insights
/// purpose now; `plan` is `candor_privacy::query::prepare(&c.query)`; `key` picks the
/// groups of subjects over the bound. Runs on all available cores.
pub fn evaluate(
    index: &FeatureIndex,
    c: &Compiled,
    plan: &Plan,
    eligible: &(dyn Fn(&SubjectId) -> bool + Sync),
    key: &SelectionKey,
) -> Evaluation {
    let names = index.category_names();
    let id_of: HashMap<&str, u16> = names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| Some((n.as_str(), u16::try_from(i).ok()?)))
        .collect();
    let cats = c.categories.as_ref().map(|set| {
        let mut v = vec![false; names.len()];
        for n in set {
            if let Some(id) = id_of.get(n.as_str()) {
                v[usize::from(*id)] = true;
            }
        }
        v
    });
    let conds = c
        .conditions
        .iter()
        .map(|(kind, cat, min)| match cat {
            None => (kc(*kind, 0), kc(*kind, NEVER - 1), None, *min),
            // A category the schema does not list is looked for like any other (as the
            // id no feature has): the scan's work never depends on which names exist.
            Some(name) => {
                let id = id_of.get(name.as_str()).copied().unwrap_or(NEVER);
                (kc(*kind, id), kc(*kind, id), Some(kc(*kind, id)), *min)
            }
        })
        .collect();
    let public = c.public.as_ref().map(|keys| {
        let mut m = HashMap::new();
        'keys: for k in keys {
            let mut parts = [NONE_PART; 2];
            for (i, (d, v)) in c.dims.iter().zip(k.parts()).enumerate() {
                parts[i] = match d {
                    Dim::Category => match id_of.get(v.as_str()) {
                        Some(id) => *id,
                        None => continue 'keys, // cannot match any row
                    },
                    Dim::Declared(fi) => match index.schema().value(*fi, v) {
                        Some(vi) => u16::try_from(vi + 1).unwrap_or(NONE_PART),
                        None => continue 'keys,
                    },
                };
            }
            m.insert(pack(parts), ());
        }
        m
    });
    let scan = Scan {
        c,
        k: plan.max_groups() as usize,
        quantizer: plan.quantizer().copied(),
        key,
        cats,
        conds,
        public,
        kind_lo: kc(c.feature, 0),
        kind_hi: kc(c.feature, NEVER - 1),
    };

    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, index.shards.len());
    let per = index.shards.len().div_ceil(threads);
    let partials: Vec<(Acc, Vec<u32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = index
            .shards
            .chunks(per)
            .map(|chunk| {
                let scan = &scan;
                s.spawn(move || {
                    let mut acc = HashMap::new();
                    let mut members = Vec::new();
                    let mut buf = Buf::default();
                    for shard in chunk {
                        let shard = shard.read();
                        for (subject, e) in shard.iter() {
                            if !eligible(subject) {
                                continue;
                            }
                            if scan.subject(subject, e, &mut buf, &mut acc) {
                                members.push(e.dense);
                            }
                        }
                    }
                    (acc, members)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });

    let mut acc: HashMap<u32, (i64, i64)> = HashMap::new();
    let mut members = Vec::new();
    for (a, m) in partials {
        for (k, (n, s)) in a {
            let e = acc.entry(k).or_insert((0, 0));
            e.0 += n;
            e.1 = e.1.saturating_add(s);
        }
        members.extend(m);
    }
    let mut exact: BTreeMap<GroupKey, (i64, i64)> = BTreeMap::new();
    if let Some(keys) = &c.public {
        for k in keys {
            exact.insert(k.clone(), (0, 0));
        }
    }
    for (packed, v) in acc {
        let parts = [(packed >> 16) as u16, (packed & 0xFFFF) as u16];
        let strs: Vec<String> = c
            .dims
            .iter()
            .zip(parts)
            .map(|(d, p)| match d {
                Dim::Category => names.get(usize::from(p)).cloned().unwrap_or_default(),
                Dim::Declared(fi) => index.schema().declared[*fi]
                    .values
                    .get(usize::from(p).wrapping_sub(1))
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        if let Ok(k) = GroupKey::new(strs) {
            exact.insert(k, v);
        }
    }
    if c.dims.is_empty() {
        exact.entry(GroupKey::total()).or_insert((0, 0));
    }
    Evaluation { exact, members }
}

/// Per packed group key: (distinct subjects, clamped sum in grid units).
type Acc = HashMap<u32, (i64, i64)>;

/// Per-thread scratch space, reused across subjects.
#[derive(Default)]
struct Buf {
    /// (category id, days, sessions) of the query's feature kind in range.
    rows: Vec<(u16, u32, u64)>,
    days: Vec<u16>,
    groups: Vec<(u32, f64)>,
    tagged: Vec<([u8; 32], u32, f64)>,
}

impl Scan<'_> {
    /// Folds one subject into `acc`; true when it contributed.
    fn subject(
        &self,
        subject: &SubjectId,
        e: &Entry,
        buf: &mut Buf,
        acc: &mut HashMap<u32, (i64, i64)>,
    ) -> bool {
        let c = self.c;
        for (fi, slots) in &c.declared {
            if !slots.contains(&e.declared[*fi]) {
                return false;
            }
        }
        let (from, to) = (c.from, c.to);
        for &(lo, hi, exact, min) in &self.conds {
            buf.days.clear();
            for f in &e.feats {
                let hit = match exact {
                    Some(k) => f.kc == k,
                    None => (lo..=hi).contains(&f.kc),
                };
                if hit && (from..=to).contains(&f.day) {
                    buf.days.push(f.day);
                }
            }
            if exact.is_none() {
                buf.days.sort_unstable();
                buf.days.dedup();
            }
            if (buf.days.len() as u64) < u64::from(min) {
                return false;
            }
        }
        // rows of the query's feature kind in range, per category (feats are sorted by kc)
        buf.rows.clear();
        buf.days.clear();
        for f in &e.feats {
            if f.kc < self.kind_lo || f.kc > self.kind_hi || f.day < from || f.day > to {
                continue;
            }
            let cat = f.kc & 0x3FFF;
            if let Some(allowed) = &self.cats {
                if !allowed.get(usize::from(cat)).copied().unwrap_or(false) {
                    continue;
                }
            }
            match buf.rows.last_mut() {
                Some(r) if r.0 == cat => {
                    r.1 += 1;
                    r.2 += u64::from(f.count);
                }
                _ => buf.rows.push((cat, 1, u64::from(f.count))),
            }
            buf.days.push(f.day);
        }
        if buf.rows.is_empty() {
            return false;
        }
        // declared parts of the key
        let mut base = [NONE_PART; 2];
        let mut cat_slot = None;
        for (i, d) in c.dims.iter().enumerate() {
            match d {
                Dim::Category => cat_slot = Some(i),
                Dim::Declared(fi) => {
                    let v = e.declared[*fi];
                    if v == 0 {
                        return false; // group unknown: left out, never guessed
                    }
                    base[i] = u16::from(v);
                }
            }
        }
        let value = |days: u32, sessions: u64| -> f64 {
            match c.measure {
                Measure::Sessions => sessions as f64,
                Measure::DaysActive => f64::from(days),
            }
        };
        buf.groups.clear();
        match cat_slot {
            Some(i) => {
                for &(cat, days, sessions) in &buf.rows {
                    let mut parts = base;
                    parts[i] = cat;
                    buf.groups.push((pack(parts), value(days, sessions)));
                }
            }
            None => {
                let sessions = buf.rows.iter().map(|r| r.2).sum();
                buf.days.sort_unstable();
                buf.days.dedup();
                let days = u32::try_from(buf.days.len()).unwrap_or(u32::MAX);
                buf.groups.push((pack(base), value(days, sessions)));
            }
        }
        if let Some(public) = &self.public {
            buf.groups.retain(|(k, _)| public.contains_key(k));
            if buf.groups.is_empty() {
                return false;
            }
        }
        let k = self.k;
        if buf.groups.len() > k {
            buf.tagged.clear();
            for &(g, v) in &buf.groups {
                let tag = self.key.tag_raw(subject.as_bytes(), &g.to_be_bytes());
                buf.tagged.push((tag, g, v));
            }
            buf.tagged
                .sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            buf.tagged.truncate(k);
            buf.groups.clear();
            buf.groups.extend(buf.tagged.iter().map(|t| (t.1, t.2)));
        }
        let qz = self.quantizer.as_ref();
        for &(g, v) in &buf.groups {
            let slot = acc.entry(g).or_insert((0, 0));
            slot.0 += 1;
            if let Some(qz) = qz {
                slot.1 = slot.1.saturating_add(qz.to_units(v));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
