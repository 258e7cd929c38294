//! Reasons: what data a rule used for a person, in plain words. A person asking "why do
//! I see this offer?" is told which of their own facts made the rule hold, and only
//! those that were needed (every child of an `and`, the first child of an `or` that
//! held), so an explanation never discloses more than the decision used.

use crate::rule::{EventMatch, Measure, Scalar};
use candor_core::field::{FieldName, FieldValue};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A field's value (the canonical display: many-of values joined by ", ").
    Field {
        field: FieldName,
        label: String,
        value: String,
    },
    /// A many-of field holds this listed value.
    FieldHas {
        field: FieldName,
        label: String,
        item: String,
    },
    Trait {
        name: String,
        value: String,
    },
    Usage {
        /// Readable: `App Session (app_category fitness)`.
        events: String,
        /// What one does with them: `used` (tracked events), `visited` (pages), `opened`
        /// (screens) ([`verb`]).
        verb: &'static str,
        measure: Measure,
        n_actual: u32,
        window_days: u16,
    },
    Seen {
        events: String,
        verb: &'static str,
        days_ago: u32,
    },
    NotSeen {
        events: String,
        verb: &'static str,
        within_days: u16,
    },
    /// A negated condition (other than recency) that held: the rule text negated.
    Negated {
        rule: String,
    },
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn plural(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn last(days: u16) -> String {
    if days == 1 {
        "today".into()
    } else {
        format!("in the last {days} days")
    }
}

impl Reason {
    /// The reason in plain words, addressed to the person.
    pub fn sentence(&self) -> String {
        match self {
            Reason::Field { label, value, .. } => {
                format!("your {} is {value}", lower_first(label))
            }
            Reason::FieldHas { label, item, .. } => {
                format!("you told us your {} include {item}", lower_first(label))
            }
            Reason::Trait { name, value } => format!("your {} is {value}", name.replace('_', " ")),
            Reason::Usage {
                events,
                verb,
                measure,
                n_actual,
                window_days,
            } => match measure {
                Measure::Days => format!(
                    "you {verb} {events} on {} {}",
                    plural(*n_actual, "day", "days"),
                    last(*window_days)
                ),
                Measure::Count => format!(
                    "you {verb} {events} {} {}",
                    plural(*n_actual, "time", "times"),
                    last(*window_days)
                ),
            },
            Reason::Seen {
                events,
                verb,
                days_ago,
            } => match days_ago {
                0 => format!("you last {verb} {events} today"),
                1 => format!("you last {verb} {events} yesterday"),
                d => format!("you last {verb} {events} {d} days ago"),
            },
            Reason::NotSeen {
                events,
                verb,
                within_days,
            } => format!("you have not {verb} {events} {}", last(*within_days)),
            Reason::Negated { rule } => format!("this did not apply to you: {rule}"),
        }
    }
}

/// A field value as a person reads it.
pub(crate) fn display_value(v: &FieldValue) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    match v {
        FieldValue::Many(items) => items.join(", "),
        FieldValue::Month(m) => MONTHS
            .get(usize::from(*m).wrapping_sub(1))
            .map_or_else(|| m.to_string(), |s| (*s).to_owned()),
        other => other.canonical(),
    }
}

pub(crate) fn display_scalar(s: &Scalar) -> String {
    match s {
        Scalar::Text(t) => t.clone(),
        Scalar::Number(n) => n.to_string(),
        Scalar::Bool(b) => if *b { "yes" } else { "no" }.into(),
    }
}

/// What one does with events of this kind, for sentences: tracked events are used,
/// pages visited, screens opened.
pub fn verb(m: &EventMatch) -> &'static str {
    match m.kind.as_str() {
        "page" => "visited",
        "screen" => "opened",
        _ => "used",
    }
}

/// Events as a person reads them: `App Session (app_category fitness)`, `pages
/// (category travel)`, `the Home screen`.
pub fn readable_events(m: &EventMatch) -> String {
    let mut s = match (&m.name, m.kind.as_str()) {
        (Some(n), "page") => format!("the {n} page"),
        (Some(n), "screen") => format!("the {n} screen"),
        (Some(n), _) => n.clone(),
        (None, "page") => "pages".to_owned(),
        (None, "screen") => "screens".to_owned(),
        (None, _) => "any tracked event".to_owned(),
    };
    if !m.props.is_empty() {
        let props: Vec<String> = m
            .props
            .iter()
            .map(|(k, v)| format!("{k} {}", display_scalar(v)))
            .collect();
        s.push_str(&format!(" ({})", props.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::event::EventKind;

    #[test]
    fn sentences() {
        let f = FieldName::parse("interests").unwrap();
        assert_eq!(
            Reason::FieldHas {
                field: f.clone(),
                label: "Interests".into(),
                item: "running".into()
            }
            .sentence(),
            "you told us your interests include running"
        );
        assert_eq!(
            Reason::Field {
                field: f,
                label: "Age band".into(),
                value: "25-34".into()
            }
            .sentence(),
            "your age band is 25-34"
        );
        let events = readable_events(&EventMatch {
            kind: EventKind::Track,
            name: Some("App Session".into()),
            props: vec![("app_category".into(), Scalar::Text("fitness".into()))],
        });
        assert_eq!(events, "App Session (app_category fitness)");
        let u = Reason::Usage {
            events: events.clone(),
            verb: "used",
            measure: Measure::Days,
            n_actual: 5,
            window_days: 30,
        };
        assert_eq!(
            u.sentence(),
            "you used App Session (app_category fitness) on 5 days in the last 30 days"
        );
        let c = Reason::Usage {
            events: events.clone(),
            verb: "used",
            measure: Measure::Count,
            n_actual: 12,
            window_days: 7,
        };
        assert_eq!(
            c.sentence(),
            "you used App Session (app_category fitness) 12 times in the last 7 days"
        );
        let s = Reason::Seen {
            events,
            verb: "used",
            days_ago: 3,
        };
        assert_eq!(
            s.sentence(),
            "you last used App Session (app_category fitness) 3 days ago"
        );
        let pages = EventMatch {
            kind: EventKind::Page,
            name: None,
            props: vec![("category".into(), Scalar::Text("travel".into()))],
        };
        let p = Reason::Seen {
            events: readable_events(&pages),
            verb: verb(&pages),
            days_ago: 6,
        };
        assert_eq!(
            p.sentence(),
            "you last visited pages (category travel) 6 days ago"
        );
        assert_eq!(display_value(&FieldValue::Month(3)), "March");
    }
}
