//! Evaluation checked against a brute-force computation over the same synthetic subjects.

use super::*;
use crate::features::{DailyFeature, DeclaredField, Schema};
use candor_privacy::query::prepare;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const D0: u32 = 20_400;
const CATS: [&str; 5] = ["games", "news", "social", "fitness", "travel"];
const BANDS: [&str; 3] = ["18-24", "25-34", "35-44"];

fn schema() -> Schema {
    Schema {
        declared: vec![DeclaredField {
            name: "age_band".into(),
            values: BANDS.iter().map(|s| s.to_string()).collect(),
        }],
        // "fitness" is not a built-in category, and the heavy subject's c0..c39 are
        // made up: the schema lists them all.
        categories: crate::features::sorted_categories(
            CATS.iter()
                .map(|c| c.to_string())
                .chain((0..40).map(|c| format!("c{c}")))
                .filter_map(|c| Category::parse(&c)),
        ),
    }
}

fn perm() -> Permissions {
    Permissions {
        features: vec!["app_usage".into(), "browsing".into()],
        dimensions: vec!["category".into(), "age_band".into()],
        min_group_size: 0,
    }
}

struct Person {
    id: SubjectId,
    band: Option<usize>,
    /// (day offset from D0, category index, count)
    used: Vec<(u32, usize, u32)>,
}

fn population(n: usize, seed: u64) -> (FeatureIndex, Vec<Person>) {
    let ix = FeatureIndex::new(schema()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut people = Vec::new();
    for i in 0..n {
        let id = SubjectId::random();
        let band = (rng.gen_range(0..10) > 0).then(|| rng.gen_range(0..BANDS.len()));
        if let Some(b) = band {
            ix.set_declared(id, i as u32, "age_band", Some(BANDS[b]));
        }
        let mut used = Vec::new();
        for (ci, _) in CATS.iter().enumerate() {
            if rng.gen_bool(0.4) {
                for d in 0..30 {
                    if rng.gen_bool(0.2) {
                        used.push((d, ci, rng.gen_range(1..6)));
                    }
                }
            }
        }
        for &(d, ci, count) in &used {
            ix.set_activity(
                id,
                i as u32,
                &DailyFeature {
                    day: Day::from_days(D0 + d).unwrap(),
                    kind: FeatureKind::AppUsed,
                    category: Category::parse(CATS[ci]).unwrap(),
                    count,
                },
            );
        }
        people.push(Person { id, band, used });
    }
    (ix, people)
}

fn base(metric: Metric) -> InsightQuery {
    InsightQuery {
        metric,
        feature: FeatureKind::AppUsed,
        measure: None,
        clamp: None,
        group_by: vec!["category".into(), "age_band".into()],
        keys: None,
        from: Day::from_days(D0 + 5).unwrap(),
        to: Day::from_days(D0 + 24).unwrap(),
        categories: None,
        declared: BTreeMap::new(),
        conditions: vec![],
        max_groups_per_subject: 10,
        epsilon: 1.0,
        delta: Some(1e-6),
    }
}

fn eval(
    ix: &FeatureIndex,
    q: &InsightQuery,
    eligible: &(dyn Fn(&SubjectId) -> bool + Sync),
) -> Evaluation {
    let c = q.compile(ix, &perm()).unwrap();
    let plan = prepare(&c.query).unwrap();
    evaluate(ix, &c, &plan, eligible, &SelectionKey::from_bytes([3; 32]))
}

fn key(parts: &[&str]) -> GroupKey {
    GroupKey::new(parts.iter().map(|s| s.to_string()).collect()).unwrap()
}

#[test]
fn grouped_counts_and_sums_match_brute_force() {
    let (ix, people) = population(2_000, 1);
    let mut q = base(Metric::Sum);
    q.measure = Some(Measure::Sessions);
    q.clamp = Some((0.0, 1e6)); // wide: no clamping
    let ev = eval(&ix, &q, &|_| true);
    let mut want: BTreeMap<GroupKey, (i64, f64)> = BTreeMap::new();
    let mut members = 0;
    for p in &people {
        let Some(b) = p.band else { continue };
        let mut per: BTreeMap<usize, u32> = BTreeMap::new();
        for &(d, ci, n) in &p.used {
            if (5..=24).contains(&d) {
                *per.entry(ci).or_default() += n;
            }
        }
        if !per.is_empty() {
            members += 1;
        }
        for (ci, n) in per {
            let e = want.entry(key(&[CATS[ci], BANDS[b]])).or_default();
            e.0 += 1;
            e.1 += f64::from(n);
        }
    }
    let c = q.compile(&ix, &perm()).unwrap();
    let plan = prepare(&c.query).unwrap();
    let qz = plan.quantizer().unwrap();
    assert_eq!(ev.exact.len(), want.len());
    for (k, (n, s)) in &want {
        let got = ev.exact[k];
        assert_eq!(got.0, *n, "{k:?}");
        assert!((qz.from_units(got.1) - s).abs() < 1e-6, "{k:?}");
    }
    assert_eq!(ev.members.len(), members);
}

#[test]
fn consent_filters_and_conditions_narrow_the_audience() {
    let (ix, people) = population(1_000, 2);
    let all = eval(&ix, &base(Metric::Count), &|_| true);
    // nobody eligible: empty aggregate, no members
    let none = eval(&ix, &base(Metric::Count), &|_| false);
    assert!(none.exact.is_empty() && none.members.is_empty());
    // one subject withdraws: counts drop by exactly its groups
    let gone = people
        .iter()
        .find(|p| p.band.is_some() && p.used.iter().any(|u| (5..=24).contains(&u.0)))
        .unwrap();
    let without = eval(&ix, &base(Metric::Count), &|s| *s != gone.id);
    let total = |e: &Evaluation| e.exact.values().map(|v| v.0).sum::<i64>();
    let its_groups = gone
        .used
        .iter()
        .filter(|u| (5..=24).contains(&u.0))
        .map(|u| u.1)
        .collect::<BTreeSet<_>>()
        .len() as i64;
    assert_eq!(total(&all) - total(&without), its_groups);
    assert_eq!(all.members.len() - without.members.len(), 1);
    // declared filter and a feature condition
    let mut q = base(Metric::Count);
    q.declared.insert("age_band".into(), vec!["25-34".into()]);
    q.conditions.push(Condition {
        kind: FeatureKind::AppUsed,
        category: Some("games".into()),
        min_days: 3,
    });
    let ev = eval(&ix, &q, &|_| true);
    let want = people
        .iter()
        .filter(|p| p.band == Some(1))
        .filter(|p| {
            p.used
                .iter()
                .filter(|u| u.1 == 0 && (5..=24).contains(&u.0))
                .count()
                >= 3
        })
        .count();
    assert_eq!(ev.members.len(), want);
    assert!(ev.exact.keys().all(|k| k.parts()[1] == "25-34"));
    // an unknown category in a condition matches nobody (not an error)
    q.conditions[0].category = Some("no-such-cat".into());
    assert!(eval(&ix, &q, &|_| true).members.is_empty());
}

#[test]
fn heavy_subject_is_bounded_to_k_groups_and_clamped() {
    let ix = FeatureIndex::new(schema()).unwrap();
    let heavy = SubjectId::random();
    ix.set_declared(heavy, 0, "age_band", Some("18-24"));
    for c in 0..40 {
        for d in 0..30 {
            ix.set_activity(
                heavy,
                0,
                &DailyFeature {
                    day: Day::from_days(D0 + d).unwrap(),
                    kind: FeatureKind::AppUsed,
                    category: Category::parse(&format!("c{c}")).unwrap(),
                    count: 1_000_000,
                },
            );
        }
    }
    let mut q = base(Metric::Sum);
    q.measure = Some(Measure::Sessions);
    q.clamp = Some((0.0, 50.0));
    q.max_groups_per_subject = 3;
    let ev = eval(&ix, &q, &|_| true);
    assert_eq!(ev.exact.len(), 3);
    let c = q.compile(&ix, &perm()).unwrap();
    let plan = prepare(&c.query).unwrap();
    for (n, s) in ev.exact.values() {
        assert_eq!(*n, 1);
        assert_eq!(plan.quantizer().unwrap().from_units(*s), 50.0);
    }
    // ungrouped: one contribution, days counted once across categories
    let mut q = base(Metric::Mean);
    q.group_by = vec![];
    q.measure = Some(Measure::DaysActive);
    q.clamp = Some((0.0, 100.0));
    q.delta = Some(0.0);
    let ev = eval(&ix, &q, &|_| true);
    let c = q.compile(&ix, &perm()).unwrap();
    let plan = prepare(&c.query).unwrap();
    let (n, s) = ev.exact[&GroupKey::total()];
    assert_eq!((n, plan.quantizer().unwrap().from_units(s)), (1, 20.0));
}

#[test]
fn public_keys_are_zero_filled_and_restrict_rows() {
    let (ix, _) = population(500, 3);
    let mut q = base(Metric::Histogram);
    q.categories = Some(vec!["games".into(), "nonexistent".into()]);
    q.delta = Some(0.0);
    let c = q.compile(&ix, &perm()).unwrap();
    assert!(!c.private_keys());
    let ev = eval(&ix, &q, &|_| true);
    assert_eq!(ev.exact.len(), 2 * BANDS.len());
    assert_eq!(ev.exact[&key(&["nonexistent", "18-24"])], (0, 0));
    assert!(ev.exact[&key(&["games", "25-34"])].0 > 0);
    // explicit keys
    let mut q = base(Metric::Count);
    q.keys = Some(vec![vec!["news".into(), "35-44".into()]]);
    q.delta = Some(0.0);
    let ev = eval(&ix, &q, &|_| true);
    assert_eq!(ev.exact.len(), 1);
}

#[test]
fn errors_come_from_the_query_alone() {
    let ix = FeatureIndex::new(schema()).unwrap();
    let bad = |f: &dyn Fn(&mut InsightQuery)| {
        let mut q = base(Metric::Count);
        f(&mut q);
        q.compile(&ix, &perm()).unwrap_err()
    };
    assert!(matches!(
        bad(&|q| q.feature = FeatureKind::AppInstalled),
        InsightError::FeatureNotAllowed(_)
    ));
    assert!(matches!(
        bad(&|q| q.group_by = vec!["shoe".into()]),
        InsightError::UnknownDimension(_)
    ));
    assert!(matches!(
        bad(&|q| {
            q.declared.insert("age_band".into(), vec!["99".into()]);
        }),
        InsightError::UnknownValue { .. }
    ));
    assert!(matches!(
        bad(&|q| q.measure = Some(Measure::Sessions)),
        InsightError::Invalid(_)
    ));
    assert!(matches!(
        bad(&|q| q.delta = Some(0.0)),
        InsightError::Query(_)
    )); // private keys need δ
    assert!(matches!(
        bad(&|q| q.to = Day::from_days(D0).unwrap()),
        InsightError::Invalid(_)
    ));
    let narrow = Permissions {
        dimensions: vec!["age_band".into()],
        ..perm()
    };
    assert!(matches!(
        base(Metric::Count).compile(&ix, &narrow).unwrap_err(),
        InsightError::DimensionNotAllowed(_)
    ));
}

#[test]
fn delta_defaults_by_key_kind() {
    let ix = FeatureIndex::new(schema()).unwrap();
    let mut q = base(Metric::Count);
    q.delta = None;
    // category keys from the data: partition selection pays the default δ
    let c = q.compile(&ix, &perm()).unwrap();
    assert!(c.private_keys());
    assert_eq!(c.query.budget.delta, DEFAULT_DELTA);
    // declared-field keys are public: no δ
    q.group_by = vec!["age_band".into()];
    assert_eq!(q.compile(&ix, &perm()).unwrap().query.budget.delta, 0.0);
}

/// A condition on a category nobody has, or the schema does not list, takes the scan's
/// path over every subject: each is asked for consent exactly as for a known category.
/// (The scan used to stop before the first subject, so its time told whether a name
/// occurred.)
#[test]
fn a_condition_on_an_unknown_category_scans_like_a_known_one() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (ix, _) = population(300, 7);
    let everyone = ix.stats().subjects;
    let asked = |category: &str| {
        let mut q = base(Metric::Count);
        q.conditions.push(Condition {
            kind: FeatureKind::AppUsed,
            category: Some(category.into()),
            min_days: 1,
        });
        let n = AtomicUsize::new(0);
        let ev = eval(&ix, &q, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
            true
        });
        (n.into_inner(), ev.members.len())
    };
    let (known, members) = asked("games");
    assert_eq!(known, everyone);
    assert!(members > 0);
    for unknown in ["travel_agencies", "c99", "other"] {
        assert_eq!(asked(unknown), (everyone, 0), "{unknown}");
    }
}
