//! The words a person reads about the program, in plain English: what each rule earns,
//! the value exchange (what you give, what you get), expiry and what happens on leaving.
//!
//! They are made from the checked configuration, so what the page says is what the rules
//! do: a cap or condition added to a rule shows up in its sentence without anyone editing
//! copy. Translation, if it comes, belongs at the edge with the other page strings.

use crate::decimal::Decimal;
use crate::program::{Award, Condition, EarnRule, Expiry, OnLeave, Op, Program, Value};
use candor_core::time::UnixMillis;
use std::fmt::Write;

fn points(n: i64) -> String {
    if n == 1 {
        "1 point".to_owned()
    } else {
        format!("{n} points")
    }
}

fn value(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(true) => "yes".to_owned(),
        Value::Bool(false) => "no".to_owned(),
        Value::List(items) => {
            let words: Vec<String> = items.iter().map(value).collect();
            match words.split_last() {
                Some((last, rest)) if !rest.is_empty() => {
                    format!("{} or {last}", rest.join(", "))
                }
                _ => words.concat(),
            }
        }
    }
}

fn condition(c: &Condition) -> String {
    let op = match c.op {
        Op::Eq => "=",
        Op::Ne => "≠",
        Op::Lt => "<",
        Op::Le => "≤",
        Op::Gt => ">",
        Op::Ge => "≥",
        Op::In => "is one of",
    };
    format!("{} {op} {}", c.property, value(&c.value))
}

impl EarnRule {
    /// E.g. "Earn 10 points for every Order Completed where store = online, up to 100
    /// points a day".
    pub fn describe(&self) -> String {
        self.describe_in(None)
    }

    /// As [`EarnRule::describe`], naming the currency of a per-amount award ("Earn 1.5
    /// points per EUR of total on every Order Completed").
    pub fn describe_in(&self, currency: Option<&str>) -> String {
        let mut s = match &self.award {
            Award::PerEvent(p) => format!("Earn {} for every {}", points(*p), self.event),
            Award::PerAmount {
                property,
                points_per_unit,
            } => {
                let rate = if *points_per_unit == Decimal::from_int(1) {
                    "1 point".to_owned()
                } else {
                    format!("{points_per_unit} points")
                };
                let unit = currency.unwrap_or("unit");
                format!(
                    "Earn {rate} per {unit} of {property} on every {}",
                    self.event
                )
            }
        };
        let conditions: Vec<String> = self.conditions.iter().map(condition).collect();
        if !conditions.is_empty() {
            let _ = write!(s, " where {}", conditions.join(" and "));
        }
        match (self.cap_per_day, self.cap_total) {
            (Some(d), Some(t)) => {
                let _ = write!(s, ", up to {} a day and {t} in all", points(d));
            }
            (Some(d), None) => {
                let _ = write!(s, ", up to {} a day", points(d));
            }
            (None, Some(t)) => {
                let _ = write!(s, ", up to {} in all", points(t));
            }
            (None, None) => {}
        }
        s
    }
}

impl OnLeave {
    /// What the notice says happens to the points of someone who leaves or is erased.
    pub fn describe(&self) -> &'static str {
        match self {
            OnLeave::Forfeit => "If you leave the program, your points are forfeited.",
            OnLeave::Keep => {
                "If you leave the program, your points stay yours: you can rejoin and use them. \
                 If you ask us to erase your data, your points are erased with it."
            }
        }
    }
}

impl Expiry {
    /// "Points expire 365 days after the day you earn them." or "Points do not expire."
    pub fn describe(&self) -> String {
        match self {
            Expiry::Never => "Points do not expire.".to_owned(),
            Expiry::AfterDays(1) => "Points expire the day after you earn them.".to_owned(),
            Expiry::AfterDays(n) => {
                format!("Points expire {n} days after the day you earn them.")
            }
        }
    }
}

impl Program {
    /// The value exchange, one line each: what earns points (each rule, then each field
    /// bonus: "Tell us your shoe size: 50 points"), what points buy ("A free coffee for
    /// 300 points"), when they expire, and what happens on leaving.
    pub fn value_exchange(&self) -> Vec<String> {
        let c = self.config();
        let mut lines: Vec<String> = c
            .earning
            .iter()
            .map(|r| r.describe_in(Some(&c.currency)))
            .collect();
        lines.extend(
            c.field_bonuses
                .iter()
                .map(|b| format!("{}: {}", b.title, points(b.points))),
        );
        lines.extend(
            c.rewards
                .iter()
                .map(|r| format!("{} for {}", r.title, points(r.cost))),
        );
        lines.push(c.expiry.describe());
        lines.push(c.on_leave.describe().to_owned());
        lines
    }
}

/// The UTC calendar date of an instant, as `YYYY-MM-DD` (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`, exact for every `i64` millisecond).
pub fn date(at: UnixMillis) -> String {
    let z = at.day() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The wallet's line for one entry of [`crate::expiring_soon`]: "120 points expire on
/// 2027-01-10" (lots expire at the start of that UTC day).
pub fn expiring_line(at: UnixMillis, amount: i64) -> String {
    let verb = if amount == 1 { "expires" } else { "expire" };
    format!("{} {verb} on {}", points(amount), date(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::tests::{config, rule};

    fn cond(property: &str, op: Op, value: Value) -> Condition {
        Condition {
            property: property.into(),
            op,
            value,
        }
    }

    #[test]
    fn describes_a_rule_with_conditions_and_caps() {
        let mut r = rule("order", "Order Completed", 10);
        r.conditions = vec![cond("store", Op::Eq, Value::Text("online".into()))];
        r.cap_per_day = Some(100);
        assert_eq!(
            r.describe(),
            "Earn 10 points for every Order Completed where store = online, up to 100 points a day"
        );
        r.cap_total = Some(1000);
        r.conditions.push(cond(
            "channel",
            Op::In,
            Value::List(vec![
                Value::Text("app".into()),
                Value::Text("web".into()),
                Value::Text("shop".into()),
            ]),
        ));
        r.conditions.push(cond(
            "total",
            Op::Ge,
            Value::Number(Decimal::parse("20.50").unwrap()),
        ));
        r.conditions
            .push(cond("first_order", Op::Ne, Value::Bool(true)));
        assert_eq!(
            r.describe(),
            "Earn 10 points for every Order Completed where store = online and channel is one of \
             app, web or shop and total ≥ 20.5 and first_order ≠ yes, up to 100 points a day \
             and 1000 in all"
        );
        let mut one = rule("signup", "Signed Up", 1);
        one.cap_total = Some(1);
        assert_eq!(
            one.describe(),
            "Earn 1 point for every Signed Up, up to 1 point in all"
        );
    }

    #[test]
    fn describes_a_per_amount_rule() {
        let mut r = rule("spend", "Order Completed", 1);
        r.award = Award::PerAmount {
            property: "total".into(),
            points_per_unit: Decimal::parse("1.50").unwrap(),
        };
        assert_eq!(
            r.describe(),
            "Earn 1.5 points per unit of total on every Order Completed"
        );
        assert_eq!(
            r.describe_in(Some("EUR")),
            "Earn 1.5 points per EUR of total on every Order Completed"
        );
    }

    #[test]
    fn the_value_exchange_lists_what_you_give_and_get() {
        let p = Program::new(config()).unwrap();
        assert_eq!(
            p.value_exchange(),
            [
                "Earn 10 points for every Order Completed",
                "Tell us your shoe size: 50 points",
                "A free coffee for 300 points",
                "Points expire 365 days after the day you earn them.",
                "If you leave the program, your points are forfeited.",
            ]
        );
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        let day = |d: i64| UnixMillis::day_start(d);
        assert_eq!(date(day(0)), "1970-01-01");
        assert_eq!(date(UnixMillis(-1)), "1969-12-31");
        assert_eq!(date(day(11_016)), "2000-02-29");
        assert_eq!(date(day(11_017)), "2000-03-01");
        assert_eq!(date(day(20_828)), "2027-01-10");
        assert_eq!(date(day(20_828).plus_ms(86_399_999)), "2027-01-10");
        // Never panics, whatever the instant.
        let _ = date(UnixMillis(i64::MIN));
        let _ = date(UnixMillis(i64::MAX));
        assert_eq!(
            expiring_line(day(20_828), 120),
            "120 points expire on 2027-01-10"
        );
        assert_eq!(
            expiring_line(day(20_828), 1),
            "1 point expires on 2027-01-10"
        );
    }

    #[test]
    fn on_leave_and_expiry_wording() {
        assert!(OnLeave::Keep
            .describe()
            .starts_with("If you leave the program, your points stay yours: you can rejoin"));
        assert_eq!(Expiry::Never.describe(), "Points do not expire.");
        assert_eq!(
            Expiry::AfterDays(1).describe(),
            "Points expire the day after you earn them."
        );
    }
}
