//! The query model and the pipeline that answers one insight query.
//!
//! **Guarantee.** [`run`] charges the query's full cost to the [`Accountant`] *before*
//! touching the data, and refuses (charging nothing) if it does not fit. The answer is
//! `(ε, δ)`-DP with respect to adding or removing all rows of one subject, where `(ε, δ)` is
//! what was charged, by basic composition of:
//! - contribution bounding (`bounds`: ≤ k groups per subject, values clamped);
//! - for private group keys, noisy-threshold partition selection (`partition`), whose noisy
//!   counts are the released counts (for `Count`/`Histogram`/`TopK`) or the mean's
//!   denominator; for `Sum` they only select (private keys) or threshold (public keys);
//! - discrete Laplace noise (`mechanism`) on the remaining statistics;
//! - post-processing (ratios, clamping a mean to `[lo, hi]`, top-k ordering, suppression of
//!   groups whose *noisy* count is below `min_noisy_count`).
//!
//! Epsilon split: `Count`/`Histogram`/`TopK` spend all of ε on counts; `Sum` and `Mean`
//! spend ε/2 on counts and ε/2 on sums. A sum pays for a noisy count even with public keys
//! because every released group must pass a minimum-size threshold on a *noisy* count
//! (DESIGN.md invariant 5), never on the true one. δ is spent only on partition selection
//! (public keys cost δ = 0).
//!
//! **Two ways in.** [`run`] answers over [`Row`]s with an in-memory [`Accountant`]: the
//! reference path, used by the tests. Callers with their own aggregation and a persistent
//! budget (Candor's insights engine) use [`prepare`] (validate, cost, bounds), aggregate
//! themselves (one bounded contribution per subject and group, exactly as
//! [`crate::bounds`] specifies), charge, then call [`release`].
//!
//! **Assumptions.** The caller supplies rows for the advertiser's audience filter and the
//! query's dimensions only (one row per subject event, `key` already projected on the
//! dimensions), and public group keys really are public (fixed by the schema, not read from
//! the data). Errors are decided from the query alone, never from the rows: an error that
//! depended on the data would itself leak. What was *not* released for private keys is not
//! counted, because that number is private ([`Suppressed::Undisclosed`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::bounds::{bound_contributions, SelectionKey};
use crate::budget::{Accountant, Budget, InvalidBudget, Overspend, Receipt};
use crate::mechanism::{discrete_laplace_halfwidth, DiscreteLaplace, NoiseError, Quantizer};
use crate::partition::SelectionPlan;

/// A pseudonymous subject id (16 bytes; a `u64` fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(pub [u8; 16]);

impl From<u64> for Subject {
    fn from(v: u64) -> Self {
        let mut b = [0u8; 16];
        b[8..].copy_from_slice(&v.to_be_bytes());
        Self(b)
    }
}

/// Maximum number of group-by dimensions.
pub const MAX_DIMENSIONS: usize = 2;

/// The values of a row (or group) on the query's dimensions, in order; empty for an
/// ungrouped query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey(Vec<String>);

impl GroupKey {
    pub fn new(parts: Vec<String>) -> Result<Self, QueryError> {
        if parts.len() > MAX_DIMENSIONS {
            return Err(QueryError::TooManyDimensions(parts.len()));
        }
        Ok(Self(parts))
    }

    /// The key of an ungrouped query.
    pub fn total() -> Self {
        Self(Vec::new())
    }

    pub fn parts(&self) -> &[String] {
        &self.0
    }
}

/// One input row: a subject, the group it falls in, and a value (ignored by counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub subject: Subject,
    pub key: GroupKey,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregate {
    /// Distinct subjects per group (ungrouped: one total).
    Count,
    /// Sum of per-subject values clamped to `[lo, hi]`.
    Sum { lo: f64, hi: f64 },
    /// Mean of per-subject values clamped to `[lo, hi]`.
    Mean { lo: f64, hi: f64 },
    /// Counts per group (needs at least one dimension).
    Histogram,
    /// The `n` groups with the largest noisy counts (needs at least one dimension).
    TopK(usize),
}

/// Where group keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupKeys {
    /// A data-independent list (e.g. the age bands of the schema): every listed key gets an
    /// answer (unless its noisy count is below `min_noisy_count`), no δ is spent.
    Public(Vec<GroupKey>),
    /// Keys come from the data: only groups that pass noisy-threshold selection appear.
    Private,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub aggregate: Aggregate,
    /// Names of the group-by dimensions (≤ 2); each row's key has one value per name.
    pub dimensions: Vec<String>,
    pub keys: GroupKeys,
    /// The most groups one subject may contribute to (k ≥ 1).
    pub max_groups_per_subject: u32,
    /// What the query costs: all of it is charged.
    pub budget: Budget,
    /// Hide groups whose noisy count is below this (post-processing): public keys are
    /// named as suppressed; for private keys it raises the selection threshold.
    pub min_noisy_count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupAnswer {
    pub key: GroupKey,
    pub value: f64,
    /// Scale of the discrete Laplace noise on this group's main statistic (the count for
    /// counts, the sum for sums and means), in output units.
    pub noise_scale: f64,
    /// A 95% interval for the bounded, pre-noise value (for private keys, not corrected for
    /// the upward bias of selection).
    pub ci95: (f64, f64),
    /// Sums and means: the group's noisy distinct-subject count, which they pay for anyway
    /// (selection or the minimum-size threshold), so releasing it costs nothing more.
    pub count: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Suppressed {
    /// Public keys whose noisy count fell below `min_noisy_count`.
    Keys(Vec<GroupKey>),
    /// Private keys: groups below the selection threshold are not shown, and how many there
    /// were is not said (that number is computed from true counts and is not private).
    Undisclosed { threshold: i64 },
}

impl Suppressed {
    /// How many groups the answer names as suppressed (0 for undisclosed).
    pub fn count(&self) -> usize {
        match self {
            Suppressed::Keys(k) => k.len(),
            Suppressed::Undisclosed { .. } => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub groups: Vec<GroupAnswer>,
    pub suppressed: Suppressed,
    pub epsilon_spent: f64,
    pub delta_spent: f64,
    pub receipt: Receipt,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("at most {MAX_DIMENSIONS} group-by dimensions, got {0}")]
    TooManyDimensions(usize),
    #[error("{0:?} needs at least one group-by dimension")]
    NeedsDimension(Aggregate),
    #[error("a public group key has {got} values, the query has {want} dimensions")]
    KeyArity { got: usize, want: usize },
    #[error("max_groups_per_subject must be ≥ 1")]
    MaxGroups,
    #[error("top-k needs k ≥ 1")]
    TopK,
    #[error("private group keys need δ > 0 for partition selection")]
    NeedsDelta,
    #[error("public group keys spend no δ; set δ = 0")]
    UnusedDelta,
    #[error(transparent)]
    InvalidBudget(#[from] InvalidBudget),
    #[error(transparent)]
    Noise(#[from] NoiseError),
    #[error(transparent)]
    Budget(#[from] Overspend),
}

/// What the query will use, all derived from the query alone (before charging).
#[derive(Debug)]
pub struct Plan {
    k: u32,
    quantizer: Option<Quantizer>,
    counts: Option<CountPlan>,
    sums: Option<DiscreteLaplace>,
}

#[derive(Debug)]
enum CountPlan {
    Select(SelectionPlan),
    Public(DiscreteLaplace),
}

impl Plan {
    /// The most groups one subject may contribute to.
    pub fn max_groups(&self) -> u32 {
        self.k
    }

    /// How per-subject values are clamped and put on the integer grid (sums and means).
    pub fn quantizer(&self) -> Option<&Quantizer> {
        self.quantizer.as_ref()
    }
}

/// Validates `q` and derives everything its answer will use, from the query alone.
pub fn prepare(q: &Query) -> Result<Plan, QueryError> {
    validate(q)
}

fn validate(q: &Query) -> Result<Plan, QueryError> {
    let dims = q.dimensions.len();
    if dims > MAX_DIMENSIONS {
        return Err(QueryError::TooManyDimensions(dims));
    }
    if q.max_groups_per_subject == 0 {
        return Err(QueryError::MaxGroups);
    }
    let Budget { epsilon, delta } = Budget::new(q.budget.epsilon, q.budget.delta)?;
    match q.aggregate {
        Aggregate::Histogram | Aggregate::TopK(_) if dims == 0 => {
            return Err(QueryError::NeedsDimension(q.aggregate))
        }
        Aggregate::TopK(0) => return Err(QueryError::TopK),
        _ => {}
    }
    let private = match &q.keys {
        GroupKeys::Private if dims == 0 => false, // the single empty key is public
        GroupKeys::Private => true,
        GroupKeys::Public(keys) => {
            if let Some(bad) = keys.iter().find(|k| k.parts().len() != dims) {
                return Err(QueryError::KeyArity {
                    got: bad.parts().len(),
                    want: dims,
                });
            }
            false
        }
    };
    if private && delta == 0.0 {
        return Err(QueryError::NeedsDelta);
    }
    if !private && delta != 0.0 {
        return Err(QueryError::UnusedDelta);
    }
    let k = q.max_groups_per_subject;
    let count_plan = |eps: f64| -> Result<CountPlan, QueryError> {
        Ok(if private {
            CountPlan::Select(SelectionPlan::new(eps, delta, k)?)
        } else {
            CountPlan::Public(DiscreteLaplace::calibrate(u64::from(k), eps)?)
        })
    };
    let sum_plan =
        |lo: f64, hi: f64, eps: f64| -> Result<(Quantizer, DiscreteLaplace), QueryError> {
            let quantizer = Quantizer::new(lo, hi)?;
            let sens = quantizer
                .sensitivity_units()
                .checked_mul(u64::from(k))
                .ok_or_else(|| NoiseError::Calibration("sensitivity overflow".into()))?;
            Ok((quantizer, DiscreteLaplace::calibrate(sens, eps)?))
        };
    Ok(match q.aggregate {
        Aggregate::Count | Aggregate::Histogram | Aggregate::TopK(_) => Plan {
            k,
            quantizer: None,
            counts: Some(count_plan(epsilon)?),
            sums: None,
        },
        Aggregate::Sum { lo, hi } | Aggregate::Mean { lo, hi } => {
            let (qz, lap) = sum_plan(lo, hi, epsilon / 2.0)?;
            Plan {
                k,
                quantizer: Some(qz),
                counts: Some(count_plan(epsilon / 2.0)?),
                sums: Some(lap),
            }
        }
    })
}

/// Bounded, pre-noise per-group statistics: (distinct subjects, clamped sum in grid units).
fn aggregate(
    q: &Query,
    plan: &Plan,
    rows: &[Row],
    key: &SelectionKey,
) -> BTreeMap<GroupKey, (i64, i64)> {
    let dims = q.dimensions.len();
    let public: Option<BTreeSet<&GroupKey>> = match &q.keys {
        GroupKeys::Public(keys) => Some(keys.iter().collect()),
        GroupKeys::Private if dims == 0 => Some(BTreeSet::new()), // filled below
        GroupKeys::Private => None,
    };
    let total = GroupKey::total();
    // rows that do not fit the query's shape (or a public key) are dropped, never an error
    let usable: Vec<Row> = rows
        .iter()
        .filter(|r| r.key.parts().len() == dims)
        .filter(|r| match &public {
            Some(p) if dims > 0 => p.contains(&r.key),
            _ => true,
        })
        .cloned()
        .collect();
    let mut out: BTreeMap<GroupKey, (i64, i64)> = BTreeMap::new();
    if let Some(p) = &public {
        for key in p {
            out.insert((*key).clone(), (0, 0));
        }
        if dims == 0 {
            out.insert(total, (0, 0));
        }
    }
    for c in bound_contributions(&usable, plan.k as usize, key) {
        let e = out.entry(c.key).or_insert((0, 0));
        e.0 += 1;
        if let Some(qz) = &plan.quantizer {
            e.1 = e.1.saturating_add(qz.to_units(c.value));
        }
    }
    out
}

/// Answers `q` over `rows`, charging `accountant` first.
pub fn run(q: &Query, rows: &[Row], accountant: &Accountant) -> Result<Answer, QueryError> {
    let plan = validate(q)?;
    let key = SelectionKey::random()?;
    let receipt = accountant.try_charge(q.budget)?;
    // From here on the budget is spent even if noise generation fails (fail closed).
    let exact = aggregate(q, &plan, rows, &key);
    release(q, &plan, exact, receipt)
}

/// Releases the noisy answer from bounded, pre-noise per-group statistics `(distinct
/// subjects, clamped sum in grid units)`. The caller must have charged `q.budget` already
/// (`receipt` proves it) and must have bounded contributions as [`crate::bounds`] does;
/// for public keys, `exact` holds every public key (zero when absent from the data) and
/// nothing else.
pub fn release(
    q: &Query,
    plan: &Plan,
    exact: BTreeMap<GroupKey, (i64, i64)>,
    receipt: Receipt,
) -> Result<Answer, QueryError> {
    // index the groups so OpenDP's map can use plain u64 keys
    let keys: Vec<GroupKey> = exact.keys().cloned().collect();
    let stats: Vec<(i64, i64)> = exact.into_values().collect();

    // 1. counts: noisy (and, for private keys, selected)
    let mut suppressed = Suppressed::Keys(Vec::new());
    let mut noisy_counts: Vec<(usize, i64)> = Vec::new(); // (index, noisy count)
    let mut count_scale = 0.0;
    let mut count_half = 0i64;
    match &plan.counts {
        Some(CountPlan::Select(sel)) => {
            let input: HashMap<u64, i64> = stats
                .iter()
                .enumerate()
                .map(|(i, s)| (i as u64, s.0))
                .collect();
            // Post-processing: a group that passed selection is still hidden when its
            // noisy count is below the operator's minimum group size.
            let mut kept: Vec<(usize, i64)> = sel
                .select(&input)?
                .into_iter()
                .filter(|(_, v)| *v >= q.min_noisy_count)
                .map(|(i, v)| (i as usize, v))
                .collect();
            kept.sort_unstable();
            noisy_counts = kept;
            count_scale = sel.scale();
            count_half = sel.ci95_halfwidth();
            suppressed = Suppressed::Undisclosed {
                threshold: sel.threshold().max(q.min_noisy_count),
            };
        }
        Some(CountPlan::Public(lap)) => {
            count_scale = lap.scale();
            count_half = lap.ci95_halfwidth();
            let mut hidden = Vec::new();
            for (i, s) in stats.iter().enumerate() {
                let v = lap.release(s.0)?;
                if v < q.min_noisy_count {
                    hidden.push(keys[i].clone());
                } else {
                    noisy_counts.push((i, v));
                }
            }
            suppressed = Suppressed::Keys(hidden);
        }
        None => noisy_counts = (0..stats.len()).map(|i| (i, 0)).collect(),
    }

    // 2. values
    let mut groups = Vec::with_capacity(noisy_counts.len());
    for (i, c) in noisy_counts {
        let key = keys[i].clone();
        let answer = match (q.aggregate, &plan.sums, &plan.quantizer) {
            (Aggregate::Sum { .. }, Some(lap), Some(qz)) => {
                let s = lap.release(stats[i].1)?;
                let h = lap.ci95_halfwidth();
                GroupAnswer {
                    key,
                    value: qz.from_units(s),
                    noise_scale: lap.scale() * qz.unit(),
                    ci95: (
                        qz.from_units(s.saturating_sub(h)),
                        qz.from_units(s.saturating_add(h)),
                    ),
                    count: plan.counts.as_ref().map(|_| c as f64),
                }
            }
            (Aggregate::Mean { lo, hi }, Some(lap), Some(qz)) => {
                let s = lap.release(stats[i].1)?;
                // union bound: each of (sum, count) at 97.5% gives ≥ 95% for the ratio
                let hs = discrete_laplace_halfwidth(lap.scale(), 0.025);
                let hc = discrete_laplace_halfwidth(count_scale, 0.025);
                let mean = (qz.from_units(s) / c.max(1) as f64).clamp(lo, hi);
                let (s_lo, s_hi) = (
                    qz.from_units(s.saturating_sub(hs)),
                    qz.from_units(s.saturating_add(hs)),
                );
                let (c_lo, c_hi) = (c.saturating_sub(hc), c.saturating_add(hc));
                let ci95 = if c_lo >= 1 {
                    let corners = [
                        s_lo / c_lo as f64,
                        s_lo / c_hi as f64,
                        s_hi / c_lo as f64,
                        s_hi / c_hi as f64,
                    ];
                    let a = corners.iter().copied().fold(f64::INFINITY, f64::min);
                    let b = corners.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (a.clamp(lo, hi), b.clamp(lo, hi))
                } else {
                    (lo, hi)
                };
                GroupAnswer {
                    key,
                    value: mean,
                    noise_scale: lap.scale() * qz.unit(),
                    ci95,
                    count: Some(c as f64),
                }
            }
            _ => GroupAnswer {
                key,
                value: c as f64,
                noise_scale: count_scale,
                ci95: (
                    c.saturating_sub(count_half) as f64,
                    c.saturating_add(count_half) as f64,
                ),
                count: None,
            },
        };
        groups.push(answer);
    }
    if let Aggregate::TopK(n) = q.aggregate {
        groups.sort_by(|a, b| b.value.total_cmp(&a.value).then_with(|| a.key.cmp(&b.key)));
        groups.truncate(n);
    }
    Ok(Answer {
        groups,
        suppressed,
        epsilon_spent: receipt.charged.epsilon,
        delta_spent: receipt.charged.delta,
        receipt,
    })
}

/// Test hook: the bounded, pre-noise aggregate per group (count, clamped sum or mean) that
/// `run` would noise, with a chosen selection key. Never compiled into release code unless
/// the `test-hooks` feature is on.
#[cfg(any(test, feature = "test-hooks"))]
pub fn exact_aggregate(
    q: &Query,
    rows: &[Row],
    key: &SelectionKey,
) -> Result<BTreeMap<GroupKey, f64>, QueryError> {
    let plan = validate(q)?;
    Ok(aggregate(q, &plan, rows, key)
        .into_iter()
        .map(|(k, (c, s))| {
            let v = match (q.aggregate, &plan.quantizer) {
                (Aggregate::Sum { .. }, Some(qz)) => qz.from_units(s),
                (Aggregate::Mean { lo, hi }, Some(qz)) => {
                    if c == 0 {
                        f64::NAN
                    } else {
                        (qz.from_units(s) / c as f64).clamp(lo, hi)
                    }
                }
                _ => c as f64,
            };
            (k, v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key1(a: &str) -> GroupKey {
        GroupKey::new(vec![a.into()]).unwrap()
    }

    fn key2(a: &str, b: &str) -> GroupKey {
        GroupKey::new(vec![a.into(), b.into()]).unwrap()
    }

    fn query(aggregate: Aggregate, keys: GroupKeys, eps: f64, delta: f64) -> Query {
        Query {
            aggregate,
            dimensions: vec!["app_category".into(), "age_band".into()],
            keys,
            max_groups_per_subject: 3,
            budget: Budget::new(eps, delta).unwrap(),
            min_noisy_count: 0,
        }
    }

    /// 3,000 subjects in (fitness, 25-34), 1,500 in (games, 18-24), 2 in (rare, 65+), plus one
    /// extreme subject with 10,000 rows over 50 groups and values far outside the clamp.
    fn population() -> Vec<Row> {
        let mut rows = Vec::new();
        let mut add = |range: std::ops::Range<u64>, k: GroupKey, v: f64| {
            for s in range {
                rows.push(Row {
                    subject: Subject::from(s),
                    key: k.clone(),
                    value: v,
                });
            }
        };
        add(0..3_000, key2("fitness", "25-34"), 4.0);
        add(3_000..4_500, key2("games", "18-24"), 10.0);
        add(4_500..4_502, key2("rare", "65+"), 1.0);
        for i in 0..10_000u32 {
            rows.push(Row {
                subject: Subject::from(u64::MAX),
                key: key2(&format!("cat-{}", i % 50), "25-34"),
                value: 1e9,
            });
        }
        rows
    }

    #[test]
    fn extreme_subject_is_bounded_in_the_pre_noise_aggregate() {
        let q = query(
            Aggregate::Sum { lo: 0.0, hi: 20.0 },
            GroupKeys::Private,
            1.0,
            1e-6,
        );
        let rows = population();
        let exact = exact_aggregate(&q, &rows, &SelectionKey::from_bytes([5; 32])).unwrap();
        let heavy: Vec<_> = exact
            .iter()
            .filter(|(k, _)| k.parts()[0].starts_with("cat-"))
            .collect();
        // exactly k = 3 of the 50 groups keep the heavy subject, each with a clamped value
        assert_eq!(heavy.len(), 3, "{heavy:?}");
        assert!(heavy.iter().all(|(_, v)| **v == 20.0));
        assert_eq!(exact[&key2("fitness", "25-34")], 12_000.0);
        let counts = exact_aggregate(
            &Query {
                aggregate: Aggregate::Count,
                ..q
            },
            &rows,
            &SelectionKey::from_bytes([5; 32]),
        )
        .unwrap();
        assert_eq!(counts.values().filter(|v| **v == 1.0).count(), 3);
        assert_eq!(counts[&key2("rare", "65+")], 2.0);
    }

    #[test]
    fn private_histogram_selects_by_noisy_counts_and_charges_first() {
        let acc = Accountant::new(Budget::new(1.0, 1e-6).unwrap());
        let q = query(Aggregate::Histogram, GroupKeys::Private, 0.5, 5e-7);
        let a = run(&q, &population(), &acc).unwrap();
        assert_eq!((a.epsilon_spent, a.delta_spent), (0.5, 5e-7));
        assert_eq!(
            acc.spent(),
            Budget {
                epsilon: 0.5,
                delta: 5e-7
            }
        );
        let names: Vec<_> = a.groups.iter().map(|g| g.key.clone()).collect();
        assert_eq!(
            names,
            vec![key2("fitness", "25-34"), key2("games", "18-24")]
        );
        let Suppressed::Undisclosed { threshold } = a.suppressed else {
            panic!("{:?}", a.suppressed)
        };
        assert!(threshold > 2);
        for g in &a.groups {
            assert_eq!(g.noise_scale, 3.0 / 0.5);
            assert!(g.ci95.0 <= g.value && g.value <= g.ci95.1);
            assert!(g.value >= threshold as f64);
        }
        assert!((a.groups[0].value - 3_000.0).abs() < 150.0);
        // second identical query fits exactly; a third is refused and charges nothing
        run(&q, &population(), &acc).unwrap();
        let before = acc.spent();
        assert!(matches!(
            run(&q, &population(), &acc),
            Err(QueryError::Budget(_))
        ));
        assert_eq!(acc.spent(), before);
    }

    #[test]
    fn public_keys_answer_every_key_and_name_suppressed_ones() {
        let acc = Accountant::new(Budget::new(10.0, 0.0).unwrap());
        let keys = vec![
            key2("fitness", "25-34"),
            key2("games", "18-24"),
            key2("nobody", "65+"),
        ];
        let mut q = query(Aggregate::Count, GroupKeys::Public(keys), 1.0, 0.0);
        let a = run(&q, &population(), &acc).unwrap();
        assert_eq!(a.groups.len() + a.suppressed.count(), 3);
        q.min_noisy_count = 100;
        let a = run(&q, &population(), &acc).unwrap();
        assert_eq!(a.suppressed, Suppressed::Keys(vec![key2("nobody", "65+")]));
        assert_eq!(a.delta_spent, 0.0);
    }

    #[test]
    fn sum_mean_topk_and_total() {
        let acc = Accountant::new(Budget::new(100.0, 1e-3).unwrap());
        let rows = population();
        let sum = run(
            &query(
                Aggregate::Sum { lo: 0.0, hi: 20.0 },
                GroupKeys::Private,
                2.0,
                1e-6,
            ),
            &rows,
            &acc,
        )
        .unwrap();
        let fit = sum
            .groups
            .iter()
            .find(|g| g.key == key2("fitness", "25-34"))
            .unwrap();
        assert!((fit.value - 12_000.0).abs() < 20.0 * 3.0 * 20.0, "{fit:?}");
        assert!((fit.noise_scale - 20.0 * 3.0 / 1.0).abs() < 0.01, "{fit:?}");
        let mean = run(
            &query(
                Aggregate::Mean { lo: 0.0, hi: 20.0 },
                GroupKeys::Private,
                2.0,
                1e-6,
            ),
            &rows,
            &acc,
        )
        .unwrap();
        for g in &mean.groups {
            assert!(
                (0.0..=20.0).contains(&g.value) && g.ci95.0 <= g.value && g.value <= g.ci95.1,
                "{g:?}"
            );
        }
        let games = mean
            .groups
            .iter()
            .find(|g| g.key == key2("games", "18-24"))
            .unwrap();
        assert!((games.value - 10.0).abs() < 1.0, "{games:?}");
        let top = run(
            &query(Aggregate::TopK(1), GroupKeys::Private, 1.0, 1e-6),
            &rows,
            &acc,
        )
        .unwrap();
        assert_eq!(top.groups.len(), 1);
        assert_eq!(top.groups[0].key, key2("fitness", "25-34"));
        let total = Query {
            dimensions: vec![],
            ..query(Aggregate::Count, GroupKeys::Private, 1.0, 0.0)
        };
        let rows0: Vec<Row> = (0..100u64)
            .map(|s| Row {
                subject: Subject::from(s),
                key: GroupKey::total(),
                value: 0.0,
            })
            .collect();
        let t = run(&total, &rows0, &acc).unwrap();
        assert_eq!(t.groups.len(), 1);
        assert!((t.groups[0].value - 100.0).abs() < 60.0);
    }

    #[test]
    fn invalid_queries_are_refused_before_charging() {
        let acc = Accountant::new(Budget::new(1.0, 1e-6).unwrap());
        let rows = population();
        let mut bad = vec![
            query(Aggregate::Count, GroupKeys::Private, 0.5, 0.0),
            query(
                Aggregate::Count,
                GroupKeys::Public(vec![key2("a", "b")]),
                0.5,
                1e-7,
            ),
            query(
                Aggregate::Count,
                GroupKeys::Public(vec![key1("a")]),
                0.5,
                0.0,
            ),
            query(Aggregate::TopK(0), GroupKeys::Private, 0.5, 1e-7),
            query(
                Aggregate::Sum { lo: 1.0, hi: 0.0 },
                GroupKeys::Private,
                0.5,
                1e-7,
            ),
            query(Aggregate::Count, GroupKeys::Private, 0.0, 1e-7),
            Query {
                max_groups_per_subject: 0,
                ..query(Aggregate::Count, GroupKeys::Private, 0.5, 1e-7)
            },
            Query {
                dimensions: vec!["a".into(), "b".into(), "c".into()],
                ..query(Aggregate::Count, GroupKeys::Private, 0.5, 1e-7)
            },
            Query {
                dimensions: vec![],
                ..query(Aggregate::Histogram, GroupKeys::Private, 0.5, 0.0)
            },
        ];
        bad.push(query(Aggregate::Count, GroupKeys::Private, 2.0, 1e-7)); // overspend
        for q in bad {
            assert!(run(&q, &rows, &acc).is_err(), "{q:?}");
        }
        assert_eq!(acc.spent(), Budget::ZERO);
        assert!(GroupKey::new(vec!["a".into(), "b".into(), "c".into()]).is_err());
    }

    /// End-to-end 95% intervals over 1,000 answers (the sampler cannot be seeded): a count's
    /// interval covers the bounded truth about 95% of the time; a mean's (built by a union
    /// bound, so conservative) at least 95%.
    #[test]
    fn answers_intervals_cover_the_truth() {
        let acc = Accountant::new(Budget::new(1e6, 0.0).unwrap());
        let keys = vec![key1("fitness")];
        let rows: Vec<Row> = (0..300u64)
            .map(|s| Row {
                subject: Subject::from(s),
                key: key1("fitness"),
                value: (s % 7) as f64,
            })
            .collect();
        let truth_mean = rows.iter().map(|r| r.value).sum::<f64>() / 300.0;
        let mut q = Query {
            aggregate: Aggregate::Count,
            dimensions: vec!["app_category".into()],
            keys: GroupKeys::Public(keys),
            max_groups_per_subject: 1,
            budget: Budget::new(0.2, 0.0).unwrap(),
            min_noisy_count: i64::MIN,
        };
        let trials = 1_000;
        let covered = |q: &Query, truth: f64| {
            (0..trials)
                .filter(|_| {
                    let a = run(q, &rows, &acc).unwrap();
                    let g = &a.groups[0];
                    g.ci95.0 <= truth && truth <= g.ci95.1
                })
                .count() as f64
                / trials as f64
        };
        let c = covered(&q, 300.0);
        assert!((0.93..=0.975).contains(&c), "count coverage {c}");
        q.aggregate = Aggregate::Mean { lo: 0.0, hi: 10.0 };
        let m = covered(&q, truth_mean);
        assert!(m >= 0.94, "mean coverage {m}");
    }
}
