//! Proptest generators shared by the round-trip and model tests: valid rules only
//! (every limit kept, canonical form), so a failure is a printer/parser disagreement.

use crate::rule::{Cmp, Cond, EventMatch, Measure, Rule, Scalar, Test};
use candor_core::event::EventKind;
use candor_core::field::FieldName;
use proptest::prelude::*;

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 _-]{0,12}",
        "[\"\\\\a ]{0,6}",
        any::<String>().prop_map(|s| s.chars().take(20).collect()),
    ]
}

pub fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        text().prop_map(Scalar::Text),
        any::<i64>().prop_map(Scalar::Number),
        any::<bool>().prop_map(Scalar::Bool),
    ]
}

pub fn cmp() -> impl Strategy<Value = Cmp> {
    prop::sample::select(Cmp::ALL.to_vec())
}

pub fn test() -> impl Strategy<Value = Test> {
    prop_oneof![
        (cmp(), scalar()).prop_map(|(c, s)| Test::Cmp(c, s)),
        prop::collection::vec(scalar(), 1..4).prop_map(Test::In),
        text().prop_map(Test::Has),
        Just(Test::Exists),
    ]
}

pub fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,10}"
}

pub fn event_match() -> impl Strategy<Value = EventMatch> {
    (
        prop::sample::select(vec![EventKind::Track, EventKind::Page, EventKind::Screen]),
        prop::option::of(text().prop_filter("non-empty", |s| !s.is_empty())),
        prop::collection::btree_map(name(), scalar(), 0..3),
    )
        .prop_map(|(kind, name, props)| EventMatch {
            kind,
            name,
            props: props.into_iter().collect(),
        })
}

pub fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        ("[a-z][a-z0-9_]{0,8}", test()).prop_map(|(f, test)| Cond::Field {
            field: FieldName::parse(&f).expect("a slug"),
            test
        }),
        (name(), test()).prop_map(|(name, test)| Cond::Trait { name, test }),
        (
            event_match(),
            prop::sample::select(vec![Measure::Count, Measure::Days]),
            1u16..=400,
            cmp(),
            any::<u32>()
        )
            .prop_map(|(events, measure, window_days, cmp, n)| Cond::Usage {
                events,
                measure,
                window_days,
                cmp,
                n
            }),
        (event_match(), 1u16..=400).prop_map(|(events, within_days)| Cond::Seen {
            events,
            within_days
        }),
        text()
            .prop_filter("non-empty", |s| !s.is_empty())
            .prop_map(Cond::Segment),
    ]
}

/// Valid rules: nesting and size kept inside the limits.
pub fn rule() -> impl Strategy<Value = Rule> {
    cond()
        .prop_map(Rule::Cond)
        .prop_recursive(5, 40, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Rule::All),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Rule::Any),
                inner.prop_map(|r| Rule::Not(Box::new(r))),
            ]
        })
        .prop_filter("within the limits", |r| r.validate().is_ok())
}
