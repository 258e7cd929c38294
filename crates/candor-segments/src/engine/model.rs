//! Model-based test of the engine: random interleavings of events (random days,
//! properties and purposes), identify traits, field sets and removals, withdrawals,
//! erasures and day rollovers. After every step, membership from the engine must equal
//! a naive model that recomputes everything from the full surviving history (withdrawn
//! purposes removed from past events, as the store's purpose floors do); at the end, a
//! fresh engine fed that history must agree too (the server's rebuild).
//!
//! The model shares only the value comparisons (`field_test`, `trait_test`) with the
//! engine; windows, per-purpose facts, retention, "known" subjects and references are
//! recomputed from scratch.

use super::tests::Ev;
use super::*;
use crate::rule::{Cmp, Cond, EventMatch, Measure, Rule, Scalar, Test};
use proptest::prelude::*;

const SUBJECTS: u8 = 4;
const SEGS: usize = 4;

fn subject(n: u8) -> SubjectId {
    SubjectId::from_bytes([n; 16])
}

fn matches() -> Vec<EventMatch> {
    let m = |kind, name: Option<&str>, props: &[(&str, i64)]| EventMatch {
        kind,
        name: name.map(str::to_owned),
        props: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Scalar::Number(*v)))
            .collect(),
    };
    vec![
        m(EventKind::Track, Some("A"), &[]),
        m(EventKind::Track, Some("A"), &[("x", 1)]),
        m(EventKind::Track, None, &[]),
        m(EventKind::Page, None, &[("x", 1)]),
    ]
}

fn events() -> Vec<Ev> {
    let e = |kind, name: Option<&str>, x: Option<i64>| Ev {
        kind,
        name: name.map(str::to_owned),
        props: x
            .map(|x| vec![("x".to_owned(), Scalar::Number(x))])
            .unwrap_or_default(),
        traits: vec![],
    };
    vec![
        e(EventKind::Track, Some("A"), Some(1)),
        e(EventKind::Track, Some("A"), Some(2)),
        e(EventKind::Track, Some("B"), None),
        e(EventKind::Page, Some("P"), Some(1)),
        e(EventKind::Page, None, None),
    ]
}

fn field(n: &str) -> FieldName {
    FieldName::parse(n).expect("slug")
}

fn cond() -> impl Strategy<Value = Cond> {
    let m = prop::sample::select(matches());
    prop_oneof![
        (
            m.clone(),
            prop::sample::select(vec![Measure::Count, Measure::Days]),
            1u16..6,
            prop::sample::select(Cmp::ALL.to_vec()),
            0u32..4
        )
            .prop_map(|(events, measure, window_days, cmp, n)| Cond::Usage {
                events,
                measure,
                window_days,
                cmp,
                n
            }),
        (m, 1u16..6).prop_map(|(events, within_days)| Cond::Seen {
            events,
            within_days
        }),
        (prop::sample::select(Cmp::ALL.to_vec()), 0i64..4).prop_map(|(c, n)| Cond::Field {
            field: field("num"),
            test: Test::Cmp(c, Scalar::Number(n))
        }),
        prop::sample::select(vec!["a", "b"]).prop_map(|v| Cond::Field {
            field: field("tags"),
            test: Test::Has(v.into())
        }),
        Just(Cond::Field {
            field: field("num"),
            test: Test::In(vec![Scalar::Number(1), Scalar::Number(2)])
        }),
        prop::sample::select(vec!["gold", "silver"]).prop_map(|v| Cond::Trait {
            name: "plan".into(),
            test: Test::Cmp(Cmp::Eq, Scalar::Text(v.into()))
        }),
        Just(Cond::Trait {
            name: "plan".into(),
            test: Test::Exists
        }),
        (0..SEGS).prop_map(|i| Cond::Segment(format!("s{i}"))),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    cond()
        .prop_map(Rule::Cond)
        .prop_recursive(3, 10, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Rule::All),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Rule::Any),
                inner.prop_map(|r| Rule::Not(Box::new(r))),
            ]
        })
        .prop_filter("valid", |r| r.validate().is_ok())
}

#[derive(Clone, Debug)]
enum Op {
    Event {
        s: u8,
        purposes: u64,
        day: i64,
        ev: usize,
    },
    Identify {
        s: u8,
        purposes: u64,
        plan: Option<&'static str>,
    },
    Field {
        s: u8,
        num: Option<i64>,
    },
    Tags {
        s: u8,
        tags: Option<Vec<String>>,
    },
    Withdraw {
        s: u8,
        purposes: u64,
    },
    Forget {
        s: u8,
    },
    Advance {
        days: i64,
    },
    /// Replace segment `seg`'s definition (the server then rebuilds if told to).
    Redefine {
        seg: usize,
        bit: u8,
        rule: Rule,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SUBJECTS;
    let purposes = 0u64..4;
    prop_oneof![
        6 => (s.clone(), purposes.clone(), -7i64..2, 0..events().len())
            .prop_map(|(s, purposes, day, ev)| Op::Event { s, purposes, day, ev }),
        2 => (s.clone(), purposes.clone(), prop::option::of(prop::sample::select(vec!["gold", "silver"])))
            .prop_map(|(s, purposes, plan)| Op::Identify { s, purposes, plan }),
        2 => (s.clone(), prop::option::of(0i64..4)).prop_map(|(s, num)| Op::Field { s, num }),
        1 => (s.clone(), prop::option::of(prop::sample::subsequence(vec!["a".to_owned(), "b".to_owned()], 0..=2)))
            .prop_map(|(s, tags)| Op::Tags { s, tags }),
        1 => (s.clone(), 1u64..4).prop_map(|(s, purposes)| Op::Withdraw { s, purposes }),
        1 => s.prop_map(|s| Op::Forget { s }),
        1 => (1i64..3).prop_map(|days| Op::Advance { days }),
        1 => (0..SEGS, 0u8..2, rule()).prop_map(|(seg, bit, rule)| Op::Redefine { seg, bit, rule }),
    ]
}

/// One stored event in the model's history.
#[derive(Clone, Debug)]
struct Stored {
    s: u8,
    purposes: PurposeSet,
    day: i64,
    ev: Ev,
}

#[derive(Default)]
struct Model {
    today: i64,
    history: Vec<Stored>,
    num: [Option<i64>; SUBJECTS as usize],
    tags: [Option<Vec<String>>; SUBJECTS as usize],
    defs: Vec<SegmentDef>,
}

fn ev_matches(m: &EventMatch, ev: &Ev) -> bool {
    ev.kind == m.kind
        && (m.name.is_none() || m.name == ev.name)
        && m.props
            .iter()
            .all(|(k, v)| ev.property(k).as_ref() == Some(v))
}

fn walk_conds<'a>(r: &'a Rule, out: &mut Vec<&'a Cond>) {
    match r {
        Rule::All(v) | Rule::Any(v) => v.iter().for_each(|r| walk_conds(r, out)),
        Rule::Not(r) => walk_conds(r, out),
        Rule::Cond(c) => out.push(c),
    }
}

impl Model {
    fn conds(&self) -> Vec<(u8, &Cond)> {
        let mut out = Vec::new();
        for d in &self.defs {
            let mut cs = Vec::new();
            walk_conds(&d.rule, &mut cs);
            out.extend(cs.into_iter().map(|c| (d.purpose_bit, c)));
        }
        out
    }

    /// Longest window any rule uses a match with, and the purposes that use it.
    fn keep(&self, m: &EventMatch) -> (u16, PurposeSet) {
        let mut keep = 0;
        let mut ps = PurposeSet::EMPTY;
        for (bit, c) in self.conds() {
            match c {
                Cond::Usage {
                    events,
                    window_days: w,
                    ..
                }
                | Cond::Seen {
                    events,
                    within_days: w,
                } if events == m => {
                    keep = keep.max(*w);
                    ps.insert(bit);
                }
                _ => {}
            }
        }
        (keep, ps)
    }

    fn trait_purposes(&self) -> PurposeSet {
        let mut ps = PurposeSet::EMPTY;
        for (bit, c) in self.conds() {
            if matches!(c, Cond::Trait { .. }) {
                ps.insert(bit);
            }
        }
        ps
    }

    fn field_used(&self, name: &str) -> bool {
        self.conds()
            .iter()
            .any(|(_, c)| matches!(c, Cond::Field { field, .. } if field.as_str() == name))
    }

    fn field_value(&self, s: u8, name: &str) -> Option<FieldValue> {
        if !self.field_used(name) {
            return None;
        }
        match name {
            "num" => self.num[s as usize].map(FieldValue::Integer),
            _ => self.tags[s as usize].clone().map(FieldValue::Many),
        }
    }

    /// The latest kept `plan` trait for purpose `bit`.
    fn plan(&self, s: u8, bit: u8) -> Option<Scalar> {
        if !self.trait_purposes().contains(bit) {
            return None;
        }
        self.history
            .iter()
            .rev()
            .filter(|h| h.s == s && h.ev.kind == EventKind::Identify && h.purposes.contains(bit))
            .find_map(|h| h.ev.trait_value("plan"))
    }

    /// Days (with multiplicity) of kept events matching `m` for purpose `bit`.
    fn days(&self, s: u8, bit: u8, m: &EventMatch) -> Vec<i64> {
        let (keep, ps) = self.keep(m);
        if !ps.contains(bit) {
            return Vec::new();
        }
        self.history
            .iter()
            .filter(|h| h.s == s && h.purposes.contains(bit) && ev_matches(m, &h.ev))
            .map(|h| h.day)
            .filter(|d| *d > self.today - i64::from(keep))
            .collect()
    }

    fn known(&self, s: u8) -> bool {
        if self.field_value(s, "num").is_some() || self.field_value(s, "tags").is_some() {
            return true;
        }
        if (0..64).any(|b| self.plan(s, b).is_some()) {
            return true;
        }
        matches()
            .iter()
            .any(|m| (0..4).any(|b| !self.days(s, b, m).is_empty()))
    }

    fn holds(&self, r: &Rule, s: u8, bit: u8, depth: usize) -> bool {
        let window = |d: i64, w: u16| d <= self.today && d > self.today - i64::from(w);
        match r {
            Rule::All(v) => v.iter().all(|r| self.holds(r, s, bit, depth)),
            Rule::Any(v) => v.iter().any(|r| self.holds(r, s, bit, depth)),
            Rule::Not(r) => !self.holds(r, s, bit, depth),
            Rule::Cond(c) => match c {
                Cond::Field { field, test } => self
                    .field_value(s, field.as_str())
                    .is_some_and(|v| super::field_test(&v, test)),
                Cond::Trait { test, .. } => self
                    .plan(s, bit)
                    .is_some_and(|v| super::trait_test(&v, test)),
                Cond::Usage {
                    events,
                    measure,
                    window_days,
                    cmp,
                    n,
                } => {
                    let days: Vec<i64> = self
                        .days(s, bit, events)
                        .into_iter()
                        .filter(|d| window(*d, *window_days))
                        .collect();
                    let actual = match measure {
                        Measure::Count => days.len() as u64,
                        Measure::Days => days.iter().collect::<BTreeSet<_>>().len() as u64,
                    };
                    cmp.holds(actual, u64::from(*n))
                }
                Cond::Seen {
                    events,
                    within_days,
                } => self
                    .days(s, bit, events)
                    .into_iter()
                    .any(|d| window(d, *within_days)),
                Cond::Segment(name) => {
                    if depth >= MAX_REF_DEPTH {
                        return false;
                    }
                    self.defs
                        .iter()
                        .find(|d| &d.name == name)
                        .is_some_and(|d| self.holds(&d.rule, s, d.purpose_bit, depth + 1))
                }
            },
        }
    }

    fn member(&self, seg: &SegmentDef, s: u8) -> bool {
        self.known(s) && self.holds(&seg.rule, s, seg.purpose_bit, 0)
    }
}

fn assert_same(e: &Engine, m: &Model, when: &str) -> Result<(), TestCaseError> {
    let all = PurposeSet::from_bits(u64::MAX);
    for d in &m.defs {
        let mut expected = Vec::new();
        for s in 0..SUBJECTS {
            let want = m.member(d, s);
            let got = e.is_member(&d.name, &subject(s), all);
            prop_assert_eq!(
                got,
                Some(want),
                "{}: segment {} ({}) for subject {}",
                when,
                d.name,
                d.rule.to_string(),
                s
            );
            if want {
                expected.push(subject(s));
            }
        }
        prop_assert_eq!(e.members(&d.name, &|_| all, None, 100), Some(expected));
    }
    let known = (0..SUBJECTS).filter(|s| m.known(*s)).count();
    prop_assert_eq!(e.subjects(), known, "{}: known subjects", when);
    Ok(())
}

fn replay(m: &Model) -> Engine {
    let e = Engine::new(m.today);
    for d in &m.defs {
        let _ = e.define(d.clone());
    }
    for h in &m.history {
        if !h.purposes.is_empty() {
            e.apply_event(subject(h.s), h.purposes, h.day, &h.ev);
        }
    }
    for s in 0..SUBJECTS {
        if let Some(n) = m.num[s as usize] {
            e.set_field(subject(s), &field("num"), Some(FieldValue::Integer(n)));
        }
        if let Some(t) = &m.tags[s as usize] {
            e.set_field(
                subject(s),
                &field("tags"),
                Some(FieldValue::Many(t.clone())),
            );
        }
    }
    e
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn engine_matches_the_naive_model(
        rules in prop::collection::vec((rule(), 0u8..2), SEGS),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let mut m = Model { today: 1000, ..Model::default() };
        let mut e = Engine::new(m.today);
        for (i, (rule, bit)) in rules.into_iter().enumerate() {
            let d = SegmentDef { name: format!("s{i}"), purpose_bit: bit, rule };
            prop_assert!(e.define(d.clone()).is_ok());
            m.defs.push(d);
        }
        assert_same(&e, &m, "after define")?;
        let evs = events();
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Event { s, purposes, day, ev } => {
                    let ps = PurposeSet::from_bits(*purposes);
                    let day = m.today + day;
                    e.apply_event(subject(*s), ps, day, &evs[*ev]);
                    // What the engine ignored as too old at this time stays too old.
                    m.history.push(Stored { s: *s, purposes: ps, day, ev: evs[*ev].clone() });
                }
                Op::Identify { s, purposes, plan } => {
                    let ev = Ev {
                        kind: EventKind::Identify,
                        name: None,
                        props: vec![],
                        traits: plan
                            .map(|p| vec![("plan".to_owned(), Scalar::Text(p.into()))])
                            .unwrap_or_default(),
                    };
                    let ps = PurposeSet::from_bits(*purposes);
                    e.apply_event(subject(*s), ps, m.today, &ev);
                    m.history.push(Stored { s: *s, purposes: ps, day: m.today, ev });
                }
                Op::Field { s, num } => {
                    e.set_field(subject(*s), &field("num"), num.map(FieldValue::Integer));
                    m.num[*s as usize] = *num;
                }
                Op::Tags { s, tags } => {
                    e.set_field(subject(*s), &field("tags"), tags.clone().map(FieldValue::Many));
                    m.tags[*s as usize] = tags.clone();
                }
                Op::Withdraw { s, purposes } => {
                    let ps = PurposeSet::from_bits(*purposes);
                    e.withdraw(subject(*s), ps);
                    for h in m.history.iter_mut().filter(|h| h.s == *s) {
                        h.purposes = h.purposes.minus(ps);
                    }
                }
                Op::Forget { s } => {
                    e.forget(subject(*s));
                    m.history.retain(|h| h.s != *s);
                    m.num[*s as usize] = None;
                    m.tags[*s as usize] = None;
                }
                Op::Advance { days } => {
                    m.today += days;
                    e.advance(m.today);
                }
                Op::Redefine { seg, bit, rule } => {
                    let d = SegmentDef { name: format!("s{seg}"), purpose_bit: *bit, rule: rule.clone() };
                    let defined = e.define(d.clone());
                    prop_assert!(defined.is_ok());
                    m.defs[*seg] = d;
                    if defined.is_ok_and(|d| d.needs_replay) {
                        // What the server does: a fresh engine fed the stored history.
                        e = replay(&m);
                    }
                }
            }
            assert_same(&e, &m, &format!("step {step} {op:?}"))?;
        }
        let rebuilt = replay(&m);
        assert_same(&rebuilt, &m, "rebuilt from the surviving history")?;
    }
}
