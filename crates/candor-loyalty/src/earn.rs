//! What one event earns, decided without I/O.
//!
//! The server shows an event to [`Program::earn`] through the small [`EventView`] trait
//! (it implements it over a parsed track message), so this crate knows nothing of the
//! wire format. `earn` returns every matching rule with its points *before* caps: the
//! store applies caps atomically with the ledger append (it alone knows how much a rule
//! has already given today), using the same arithmetic as [`clamp`].
//!
//! Matching is strict so that a malformed event never earns: a missing property fails its
//! condition (even `Ne`), a property of another type fails it, and a per-amount award
//! whose amount is missing, not a number, negative, or worth more than
//! [`MAX_POINTS_PER_EVENT`] earns nothing. An award of 0 points is not returned.

use crate::decimal::Decimal;
use crate::program::{
    Award, Condition, EarnRule, Op, Program, RuleId, Value, MAX_POINTS_PER_EVENT,
};

/// A property value of an event, as the server read it. Amounts the wire carries as JSON
/// numbers or numeric strings are parsed into a [`Decimal`] at the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    Text(String),
    Number(Decimal),
    Bool(bool),
}

/// An event as the rules see it.
pub trait EventView {
    /// The track event's name (`None` for messages that have none).
    fn name(&self) -> Option<&str>;
    /// A top-level property, `None` if absent or of a shape the rules cannot compare.
    fn property(&self, name: &str) -> Option<PropValue>;
}

/// One rule's points for one event, with the rule's caps for the store to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earning {
    pub rule: RuleId,
    pub points: i64,
    pub cap_per_day: Option<i64>,
    pub cap_total: Option<i64>,
}

impl Program {
    /// Every rule whose event name matches and whose conditions all hold, with its points
    /// before caps, in the configuration's order.
    pub fn earn(&self, ev: &dyn EventView) -> Vec<Earning> {
        let Some(name) = ev.name() else {
            return Vec::new();
        };
        self.config()
            .earning
            .iter()
            .filter(|rule| rule.event == name)
            .filter(|rule| rule.conditions.iter().all(|c| holds(c, ev)))
            .filter_map(|rule| {
                let points = award_points(rule, ev)?;
                Some(Earning {
                    rule: rule.id.clone(),
                    points,
                    cap_per_day: rule.cap_per_day,
                    cap_total: rule.cap_total,
                })
            })
            .collect()
    }
}

fn award_points(rule: &EarnRule, ev: &dyn EventView) -> Option<i64> {
    let points = match &rule.award {
        Award::PerEvent(p) => *p,
        Award::PerAmount {
            property,
            points_per_unit,
        } => points_for_amount(ev.property(property)?, *points_per_unit)?,
    };
    (1..=MAX_POINTS_PER_EVENT)
        .contains(&points)
        .then_some(points)
}

/// `floor(amount × points_per_unit)` for a numeric, non-negative amount; `None` otherwise
/// or when it exceeds [`MAX_POINTS_PER_EVENT`].
pub fn points_for_amount(amount: PropValue, points_per_unit: Decimal) -> Option<i64> {
    let PropValue::Number(amount) = amount else {
        return None;
    };
    if amount.is_negative() || points_per_unit.is_negative() {
        return None;
    }
    let points = amount.mul_floor(points_per_unit)?;
    (points <= MAX_POINTS_PER_EVENT).then_some(points)
}

fn holds(c: &Condition, ev: &dyn EventView) -> bool {
    let Some(actual) = ev.property(&c.property) else {
        return false;
    };
    match (c.op, &c.value) {
        (Op::In, Value::List(items)) => items.iter().any(|v| same(&actual, v) == Some(true)),
        (Op::In, _) | (_, Value::List(_)) => false,
        (Op::Eq, v) => same(&actual, v) == Some(true),
        (Op::Ne, v) => same(&actual, v) == Some(false),
        (op, Value::Number(want)) => {
            let PropValue::Number(got) = actual else {
                return false;
            };
            match op {
                Op::Lt => got < *want,
                Op::Le => got <= *want,
                Op::Gt => got > *want,
                Op::Ge => got >= *want,
                Op::Eq | Op::Ne | Op::In => false,
            }
        }
        _ => false,
    }
}

/// Whether two values are equal; `None` when their types differ (which fails both `Eq`
/// and `Ne`).
fn same(actual: &PropValue, want: &Value) -> Option<bool> {
    match (actual, want) {
        (PropValue::Text(a), Value::Text(b)) => Some(a == b),
        (PropValue::Number(a), Value::Number(b)) => Some(a == b),
        (PropValue::Bool(a), Value::Bool(b)) => Some(a == b),
        _ => None,
    }
}

/// The points a store may award now: `points` reduced so that the rule's daily and
/// lifetime caps are not passed, given what the rule has already given this subject today
/// and ever. Never negative (a negative input or an exhausted cap gives 0).
pub fn clamp(
    points: i64,
    used_today: i64,
    used_total: i64,
    cap_per_day: Option<i64>,
    cap_total: Option<i64>,
) -> i64 {
    let room = |cap: Option<i64>, used: i64| match cap {
        Some(cap) => cap.saturating_sub(used.max(0)).max(0),
        None => i64::MAX,
    };
    points
        .max(0)
        .min(room(cap_per_day, used_today))
        .min(room(cap_total, used_total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::tests::{config, rule};
    use proptest::prelude::*;
    use std::collections::HashMap;

    struct Ev {
        name: Option<&'static str>,
        props: HashMap<&'static str, PropValue>,
    }

    impl EventView for Ev {
        fn name(&self) -> Option<&str> {
            self.name
        }
        fn property(&self, name: &str) -> Option<PropValue> {
            self.props.get(name).cloned()
        }
    }

    fn ev(name: &'static str, props: &[(&'static str, PropValue)]) -> Ev {
        Ev {
            name: Some(name),
            props: props.iter().cloned().collect(),
        }
    }

    fn num(s: &str) -> PropValue {
        PropValue::Number(Decimal::parse(s).unwrap())
    }

    fn text(s: &str) -> PropValue {
        PropValue::Text(s.into())
    }

    fn program_with(rules: Vec<EarnRule>) -> Program {
        let mut c = config();
        c.earning = rules;
        Program::new(c).unwrap()
    }

    fn cond(property: &str, op: Op, value: Value) -> Condition {
        Condition {
            property: property.into(),
            op,
            value,
        }
    }

    fn points(p: &Program, e: &Ev) -> Vec<(String, i64)> {
        p.earn(e)
            .into_iter()
            .map(|e| (e.rule.to_string(), e.points))
            .collect()
    }

    #[test]
    fn event_name_must_match_exactly() {
        let p = program_with(vec![rule("order", "Order Completed", 10)]);
        assert_eq!(
            points(&p, &ev("Order Completed", &[])),
            [("order".into(), 10)]
        );
        assert!(p.earn(&ev("order completed", &[])).is_empty());
        let nameless = Ev {
            name: None,
            props: HashMap::new(),
        };
        assert!(p.earn(&nameless).is_empty());
    }

    #[test]
    fn every_matching_rule_earns_with_its_caps() {
        let mut a = rule("order", "Order Completed", 10);
        a.cap_per_day = Some(100);
        let b = rule("any_order", "Order Completed", 1);
        let p = program_with(vec![a, b, rule("signup", "Signed Up", 5)]);
        let got = p.earn(&ev("Order Completed", &[]));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].cap_per_day, Some(100));
        assert_eq!(got[0].cap_total, None);
        assert_eq!(got[1].rule.as_str(), "any_order");
    }

    #[test]
    fn conditions_all_hold_and_types_must_agree() {
        let mut r = rule("online", "Order Completed", 10);
        r.conditions = vec![
            cond("store", Op::Eq, Value::Text("online".into())),
            cond("total", Op::Ge, Value::Number(Decimal::from_int(50))),
        ];
        let p = program_with(vec![r]);
        let earns =
            |props: &[(&'static str, PropValue)]| !p.earn(&ev("Order Completed", props)).is_empty();
        assert!(earns(&[("store", text("online")), ("total", num("50"))]));
        assert!(earns(&[("store", text("online")), ("total", num("50.01"))]));
        assert!(!earns(&[
            ("store", text("online")),
            ("total", num("49.9999"))
        ]));
        assert!(!earns(&[("store", text("shop")), ("total", num("80"))]));
        assert!(!earns(&[("store", text("online"))]), "missing fails");
        assert!(!earns(&[("store", text("online")), ("total", text("80"))]));
        assert!(!earns(&[
            ("store", PropValue::Bool(true)),
            ("total", num("80"))
        ]));
    }

    #[test]
    fn ne_and_in_fail_on_missing_or_mistyped_properties() {
        let mut r = rule("r", "E", 1);
        r.conditions = vec![
            cond("coupon", Op::Ne, Value::Bool(true)),
            cond(
                "channel",
                Op::In,
                Value::List(vec![Value::Text("app".into()), Value::Text("web".into())]),
            ),
        ];
        let p = program_with(vec![r]);
        let earns = |props: &[(&'static str, PropValue)]| !p.earn(&ev("E", props)).is_empty();
        assert!(earns(&[
            ("coupon", PropValue::Bool(false)),
            ("channel", text("web"))
        ]));
        assert!(!earns(&[
            ("coupon", PropValue::Bool(true)),
            ("channel", text("web"))
        ]));
        assert!(!earns(&[("channel", text("web"))]), "missing fails Ne");
        assert!(!earns(&[("coupon", text("yes")), ("channel", text("web"))]));
        assert!(!earns(&[
            ("coupon", PropValue::Bool(false)),
            ("channel", text("shop"))
        ]));
        assert!(!earns(&[
            ("coupon", PropValue::Bool(false)),
            ("channel", num("1"))
        ]));
    }

    #[test]
    fn ordering_operators_at_their_boundaries() {
        let five = Value::Number(Decimal::from_int(5));
        for (op, at4, at5, at6) in [
            (Op::Lt, true, false, false),
            (Op::Le, true, true, false),
            (Op::Gt, false, false, true),
            (Op::Ge, false, true, true),
            (Op::Eq, false, true, false),
            (Op::Ne, true, false, true),
        ] {
            let mut r = rule("r", "E", 1);
            r.conditions = vec![cond("n", op, five.clone())];
            let p = program_with(vec![r]);
            let earns = |v: &str| !p.earn(&ev("E", &[("n", num(v))])).is_empty();
            assert_eq!(
                (earns("4"), earns("5"), earns("6")),
                (at4, at5, at6),
                "{op:?}"
            );
        }
    }

    #[test]
    fn per_amount_is_exact_and_strict() {
        let mut r = rule("spend", "Order Completed", 1);
        r.award = Award::PerAmount {
            property: "total".into(),
            points_per_unit: Decimal::parse("1.5").unwrap(),
        };
        let p = program_with(vec![r]);
        let pts = |v: Option<PropValue>| {
            let props: Vec<_> = v.into_iter().map(|v| ("total", v)).collect();
            p.earn(&ev("Order Completed", &props))
                .first()
                .map(|e| e.points)
        };
        assert_eq!(pts(Some(num("12.50"))), Some(18)); // 18.75
        assert_eq!(pts(Some(num("100"))), Some(150));
        assert_eq!(pts(Some(num("0.5"))), None, "0 points earns nothing");
        assert_eq!(pts(Some(num("-10"))), None);
        assert_eq!(pts(Some(text("12.50"))), None);
        assert_eq!(pts(None), None);
        assert_eq!(pts(Some(num("666666.6666"))), Some(999_999));
        assert_eq!(pts(Some(num("666667"))), Some(MAX_POINTS_PER_EVENT));
        assert_eq!(pts(Some(num("666668"))), None, "beyond the maximum");
        assert_eq!(pts(Some(num("999999999999999.9999"))), None);
    }

    #[test]
    fn points_for_amount_is_floor_of_the_product() {
        let d = |s| Decimal::parse(s).unwrap();
        assert_eq!(points_for_amount(num("0.1"), d("3")), Some(0));
        assert_eq!(points_for_amount(num("0.29"), d("100")), Some(29));
        assert_eq!(points_for_amount(PropValue::Bool(true), d("1")), None);
    }

    #[test]
    fn clamp_by_caps() {
        assert_eq!(clamp(10, 0, 0, None, None), 10);
        assert_eq!(clamp(10, 95, 0, Some(100), None), 5);
        assert_eq!(clamp(10, 100, 0, Some(100), None), 0);
        assert_eq!(clamp(10, 120, 0, Some(100), None), 0);
        assert_eq!(clamp(10, 0, 995, Some(100), Some(1000)), 5);
        assert_eq!(clamp(10, 98, 995, Some(100), Some(1000)), 2);
        assert_eq!(clamp(-3, 0, 0, None, None), 0);
        assert_eq!(clamp(10, -50, 0, Some(5), None), 5);
        assert_eq!(
            clamp(i64::MAX, i64::MIN, i64::MIN, Some(i64::MAX), None),
            i64::MAX
        );
    }

    proptest! {
        #[test]
        fn per_amount_points_are_the_exact_floor_within_bounds(
            amount in -10_000_000_000i128..10_000_000_000_000,
            rate in 1i128..1_000_000,
        ) {
            // Build decimals from ten-thousandths through their text form.
            let dec = |m: i128| {
                let sign = if m < 0 { "-" } else { "" };
                let a = m.unsigned_abs();
                Decimal::parse(&format!("{sign}{}.{:04}", a / 10_000, a % 10_000)).unwrap()
            };
            let (amount, rate_d) = (dec(amount), dec(rate));
            let got = points_for_amount(PropValue::Number(amount), rate_d);
            let exact = amount.mantissa() * rate_d.mantissa();
            match got {
                Some(p) => {
                    prop_assert!((0..=MAX_POINTS_PER_EVENT).contains(&p));
                    prop_assert!(i128::from(p) * 100_000_000 <= exact);
                    prop_assert!(exact < i128::from(p + 1) * 100_000_000);
                }
                None => prop_assert!(
                    amount.is_negative() || exact >= i128::from(MAX_POINTS_PER_EVENT + 1) * 100_000_000
                ),
            }
        }

        #[test]
        fn clamp_stays_within_points_and_caps(
            points in any::<i64>(), today in any::<i64>(), total in any::<i64>(),
            day_cap in proptest::option::of(1i64..), total_cap in proptest::option::of(1i64..),
        ) {
            let got = clamp(points, today, total, day_cap, total_cap);
            prop_assert!(got >= 0);
            prop_assert!(got <= points.max(0));
            if let Some(c) = day_cap {
                prop_assert!(got <= c.saturating_sub(today.max(0)).max(0));
            }
            if let Some(c) = total_cap {
                prop_assert!(got <= c.saturating_sub(total.max(0)).max(0));
            }
        }
    }
}
