//! The segment rule AST and the limits every rule obeys.
//!
//! A rule is written by an operator (as text or JSON) and evaluated for every person on
//! every relevant event, so it is kept small and boring: boolean combinators over a
//! handful of conditions on volunteered fields, identify traits, and event counts in
//! UTC-day windows. The limits below are one constant each; both parsers enforce them
//! and [`Rule::validate`] checks a rule built in code, so the engine can rely on them
//! (bounded recursion, bounded work per evaluation).
//!
//! Canonical form (what the parsers produce and what round-trips): `All`/`Any` have at
//! least two children, an [`EventMatch`]'s properties are in key order, each key once
//! (the JSON form is an object, so order cannot carry meaning).

use candor_core::event::EventKind;
use candor_core::field::FieldName;
use std::fmt;
use thiserror::Error;

/// Longest window, in UTC days ("in the last N days", "within N days").
pub const MAX_WINDOW_DAYS: u16 = 400;
/// Deepest nesting: a lone condition has depth 1, `a and b` depth 2.
pub const MAX_DEPTH: usize = 8;
/// Most nodes (conditions and operators) in one rule.
pub const MAX_NODES: usize = 64;
/// Longest string (names and values), in bytes.
pub const MAX_STRING: usize = 200;
/// Most values in an `in` list.
pub const MAX_IN: usize = 50;
/// Most properties an event match may require.
pub const MAX_PROPS: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Cond(Cond),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    /// A volunteered or observed field (purpose-independent value).
    Field { field: FieldName, test: Test },
    /// The latest value of an identify trait (a top-level key).
    Trait { name: String, test: Test },
    /// How many matching events (or distinct UTC days with one) in the last
    /// `window_days` UTC days, today included, compared with `n`.
    Usage {
        events: EventMatch,
        measure: Measure,
        window_days: u16,
        cmp: Cmp,
        n: u32,
    },
    /// At least one matching event in the last `within_days` UTC days, today included.
    Seen {
        events: EventMatch,
        within_days: u16,
    },
    /// Membership of another segment, by name.
    Segment(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Test {
    Cmp(Cmp, Scalar),
    In(Vec<Scalar>),
    /// A many-of field holds this listed value.
    Has(String),
    Exists,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scalar {
    Text(String),
    Number(i64),
    Bool(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub const ALL: [Cmp; 6] = [Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge];

    /// The operator as the text form writes it.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "!=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }

    /// The operator as the JSON form writes it.
    pub fn name(self) -> &'static str {
        match self {
            Cmp::Eq => "eq",
            Cmp::Ne => "ne",
            Cmp::Lt => "lt",
            Cmp::Le => "le",
            Cmp::Gt => "gt",
            Cmp::Ge => "ge",
        }
    }

    pub fn from_name(s: &str) -> Option<Cmp> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Whether this operator orders (rather than only compares for equality).
    pub fn is_order(self) -> bool {
        !matches!(self, Cmp::Eq | Cmp::Ne)
    }

    pub fn holds<T: Ord>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Number of matching events.
    Count,
    /// Number of distinct UTC days with at least one matching event.
    Days,
}

impl Measure {
    pub fn name(self) -> &'static str {
        match self {
            Measure::Count => "count",
            Measure::Days => "days",
        }
    }

    pub fn from_name(s: &str) -> Option<Measure> {
        match s {
            "count" => Some(Measure::Count),
            "days" => Some(Measure::Days),
            _ => None,
        }
    }
}

/// Which events a usage or recency condition counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventMatch {
    /// Track, page or screen only.
    pub kind: EventKind,
    /// The track event's name or the page's/screen's name; `None`: any.
    pub name: Option<String>,
    /// Properties that must all equal (in key order, each key once).
    pub props: Vec<(String, Scalar)>,
}

/// Where in the input an error was found: a byte offset into the text form, or a
/// path into the JSON form (or into a rule built in code, spelt the same way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    Byte(usize),
    Path(String),
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Byte(b) => write!(f, "byte {b}"),
            At::Path(p) => f.write_str(p),
        }
    }
}

/// Which limit a rule broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Depth,
    Nodes,
    String,
    InValues,
    Props,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Depth => write!(f, "nested more than {MAX_DEPTH} levels deep"),
            Limit::Nodes => write!(f, "more than {MAX_NODES} conditions and operators"),
            Limit::String => write!(f, "a name or value longer than {MAX_STRING} bytes"),
            Limit::InValues => write!(f, "an `in` list must hold 1 to {MAX_IN} values"),
            Limit::Props => write!(f, "more than {MAX_PROPS} event properties"),
        }
    }
}

/// Why a rule is refused. Messages name the place and the limit, never the text found
/// there (a rule may be pasted from anywhere).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("syntax error at {at}: expected {expected}")]
    Syntax { at: At, expected: &'static str },
    #[error("rule too large at {at}: {limit}")]
    TooLarge { at: At, limit: Limit },
    #[error("at {at}: a window must be 1 to {MAX_WINDOW_DAYS} days")]
    BadWindow { at: At },
    #[error("at {at}: {what} must not be empty")]
    EmptyName { at: At, what: &'static str },
    #[error("at {at}: {what} must be a letter or '_' followed by letters, digits or '_'")]
    BadName { at: At, what: &'static str },
    #[error("at {at}: only track, page and screen events can be matched")]
    BadEventKind { at: At },
    #[error("at {at}: an event property is named twice or out of key order")]
    Props { at: At },
}

impl RuleError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::Syntax { .. } => "segment_syntax",
            RuleError::TooLarge { .. } => "segment_too_large",
            RuleError::BadWindow { .. } => "segment_bad_window",
            RuleError::EmptyName { .. } => "segment_empty_name",
            RuleError::BadName { .. } => "segment_bad_name",
            RuleError::BadEventKind { .. } => "segment_bad_event_kind",
            RuleError::Props { .. } => "segment_bad_properties",
        }
    }

    pub fn at(&self) -> &At {
        match self {
            RuleError::Syntax { at, .. }
            | RuleError::TooLarge { at, .. }
            | RuleError::BadWindow { at }
            | RuleError::EmptyName { at, .. }
            | RuleError::BadName { at, .. }
            | RuleError::BadEventKind { at }
            | RuleError::Props { at } => at,
        }
    }

    /// The byte offset, for errors in the text form.
    pub fn position(&self) -> Option<usize> {
        match self.at() {
            At::Byte(b) => Some(*b),
            At::Path(_) => None,
        }
    }
}

/// A trait or property name: ASCII, a letter or '_' then letters, digits or '_' (what a
/// JSON key in an SDK call usually looks like, and what the text form can write bare).
pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

pub(crate) fn is_event_kind(kind: EventKind) -> bool {
    matches!(kind, EventKind::Track | EventKind::Page | EventKind::Screen)
}

impl Rule {
    /// Checks every limit and the canonical form; errors point at a JSON-style path
    /// (`$.and[1].not`). Both parsers accept exactly the rules this accepts.
    pub fn validate(&self) -> Result<(), RuleError> {
        let mut nodes = 0;
        let depth = validate_at(self, &mut String::from("$"), &mut nodes)?;
        debug_assert!(depth <= MAX_DEPTH);
        Ok(())
    }

    /// Depth of the tree (a lone condition is 1).
    pub fn depth(&self) -> usize {
        match self {
            Rule::All(v) | Rule::Any(v) => 1 + v.iter().map(Rule::depth).max().unwrap_or(0),
            Rule::Not(r) => 1 + r.depth(),
            Rule::Cond(_) => 1,
        }
    }
}

fn at(path: &str) -> At {
    At::Path(path.to_owned())
}

fn with<T>(path: &mut String, seg: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = path.len();
    path.push_str(seg);
    let out = f(path);
    path.truncate(len);
    out
}

/// Returns the depth of `rule`, counting nodes into `nodes`.
fn validate_at(rule: &Rule, path: &mut String, nodes: &mut usize) -> Result<usize, RuleError> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(RuleError::TooLarge {
            at: at(path),
            limit: Limit::Nodes,
        });
    }
    let depth = match rule {
        Rule::All(v) | Rule::Any(v) => {
            let key = if matches!(rule, Rule::All(_)) {
                ".and"
            } else {
                ".or"
            };
            if v.len() < 2 {
                return Err(RuleError::Syntax {
                    at: at(path),
                    expected: "at least two rules in an and/or",
                });
            }
            let mut deepest = 0;
            for (i, child) in v.iter().enumerate() {
                let d = with(path, &format!("{key}[{i}]"), |p| {
                    validate_at(child, p, nodes)
                })?;
                deepest = deepest.max(d);
            }
            deepest + 1
        }
        Rule::Not(r) => with(path, ".not", |p| validate_at(r, p, nodes))? + 1,
        Rule::Cond(c) => {
            validate_cond(c, path)?;
            1
        }
    };
    if depth > MAX_DEPTH {
        return Err(RuleError::TooLarge {
            at: at(path),
            limit: Limit::Depth,
        });
    }
    Ok(depth)
}

pub(crate) fn check_string(s: &str) -> Result<(), Limit> {
    if s.len() > MAX_STRING {
        Err(Limit::String)
    } else {
        Ok(())
    }
}

pub(crate) fn window_ok(days: u16) -> bool {
    (1..=MAX_WINDOW_DAYS).contains(&days)
}

fn validate_cond(c: &Cond, path: &str) -> Result<(), RuleError> {
    let too_large = |path: &str, limit| RuleError::TooLarge {
        at: at(path),
        limit,
    };
    match c {
        Cond::Field { test, .. } => validate_test(test, path),
        Cond::Trait { name, test } => {
            check_string(name).map_err(|l| too_large(path, l))?;
            if !is_name(name) {
                return Err(RuleError::BadName {
                    at: at(path),
                    what: "a trait name",
                });
            }
            validate_test(test, path)
        }
        Cond::Usage {
            events,
            window_days,
            ..
        } => {
            if !window_ok(*window_days) {
                return Err(RuleError::BadWindow { at: at(path) });
            }
            validate_match(events, path)
        }
        Cond::Seen {
            events,
            within_days,
        } => {
            if !window_ok(*within_days) {
                return Err(RuleError::BadWindow { at: at(path) });
            }
            validate_match(events, path)
        }
        Cond::Segment(name) => {
            check_string(name).map_err(|l| too_large(path, l))?;
            if name.is_empty() {
                return Err(RuleError::EmptyName {
                    at: at(path),
                    what: "a segment name",
                });
            }
            Ok(())
        }
    }
}

fn validate_scalar(s: &Scalar, path: &str) -> Result<(), RuleError> {
    match s {
        Scalar::Text(t) => check_string(t).map_err(|limit| RuleError::TooLarge {
            at: at(path),
            limit,
        }),
        _ => Ok(()),
    }
}

fn validate_test(t: &Test, path: &str) -> Result<(), RuleError> {
    match t {
        Test::Cmp(_, s) => validate_scalar(s, path),
        Test::In(v) => {
            if v.is_empty() || v.len() > MAX_IN {
                return Err(RuleError::TooLarge {
                    at: at(path),
                    limit: Limit::InValues,
                });
            }
            v.iter().try_for_each(|s| validate_scalar(s, path))
        }
        Test::Has(s) => check_string(s).map_err(|limit| RuleError::TooLarge {
            at: at(path),
            limit,
        }),
        Test::Exists => Ok(()),
    }
}

fn validate_match(m: &EventMatch, path: &str) -> Result<(), RuleError> {
    if !is_event_kind(m.kind) {
        return Err(RuleError::BadEventKind { at: at(path) });
    }
    if let Some(n) = &m.name {
        check_string(n).map_err(|limit| RuleError::TooLarge {
            at: at(path),
            limit,
        })?;
        if n.is_empty() {
            return Err(RuleError::EmptyName {
                at: at(path),
                what: "an event name",
            });
        }
    }
    if m.props.len() > MAX_PROPS {
        return Err(RuleError::TooLarge {
            at: at(path),
            limit: Limit::Props,
        });
    }
    for (k, v) in &m.props {
        check_string(k).map_err(|limit| RuleError::TooLarge {
            at: at(path),
            limit,
        })?;
        if !is_name(k) {
            return Err(RuleError::BadName {
                at: at(path),
                what: "a property name",
            });
        }
        validate_scalar(v, path)?;
    }
    if m.props.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(RuleError::Props { at: at(path) });
    }
    Ok(())
}

impl EventMatch {
    /// Puts properties in key order, as the parsers do (then [`Rule::validate`] refuses
    /// a key named twice).
    pub fn normalize(&mut self) {
        self.props.sort_by(|a, b| a.0.cmp(&b.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> Rule {
        Rule::Cond(Cond::Field {
            field: FieldName::parse(name).unwrap(),
            test: Test::Exists,
        })
    }

    #[test]
    fn limits_are_checked() {
        assert!(field("a").validate().is_ok());
        let e = Rule::All(vec![field("a")]).validate().unwrap_err();
        assert_eq!(e.code(), "segment_syntax");
        let mut deep = field("a");
        for _ in 0..MAX_DEPTH {
            deep = Rule::Not(Box::new(deep));
        }
        let e = deep.validate().unwrap_err();
        assert!(matches!(
            e,
            RuleError::TooLarge {
                limit: Limit::Depth,
                ..
            }
        ));
        let wide = Rule::Any((0..MAX_NODES).map(|_| field("a")).collect());
        assert_eq!(wide.validate().unwrap_err().code(), "segment_too_large");
        let m = EventMatch {
            kind: EventKind::Identify,
            name: None,
            props: vec![],
        };
        let seen = Rule::Cond(Cond::Seen {
            events: m,
            within_days: 1,
        });
        assert_eq!(
            seen.validate().unwrap_err().code(),
            "segment_bad_event_kind"
        );
        let bad_window = Rule::Cond(Cond::Seen {
            events: EventMatch {
                kind: EventKind::Page,
                name: None,
                props: vec![
                    ("b".into(), Scalar::Bool(true)),
                    ("a".into(), Scalar::Number(1)),
                ],
            },
            within_days: 0,
        });
        assert_eq!(
            bad_window.validate().unwrap_err().code(),
            "segment_bad_window"
        );
    }
}
