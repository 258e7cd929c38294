//! Volunteered (zero-party) data: the operator's catalog of fields a person may fill in
//! about themselves (sizes, interests, birthday month, age band...), what each may hold,
//! which purposes may use it, and where a value came from.
//!
//! Parse, don't validate: a [`FieldSpec`] is built once from the operator's config and
//! checked then ([`FieldSpec::new`]); a [`FieldValue`] can only come out of
//! [`FieldSpec::parse_value`] (what a person or a message sent) or
//! [`FieldSpec::parse_stored`] (what the store opened), so a value held anywhere past the
//! edge fits its field. Errors never repeat the value (it is personal data): they name
//! what was expected instead.

use crate::ids::{IdError, PurposeId};
use std::fmt;
use thiserror::Error;

/// Longest label, and longest listed value, in bytes.
pub const MAX_LABEL: usize = 200;
pub const MAX_VALUE: usize = 64;
/// Most values a one-of or many-of field may list.
pub const MAX_VALUES: usize = 255;
/// Longest free text a text field may allow, in characters.
pub const MAX_TEXT: usize = 1000;

/// A field's name: a slug (`shoe_size`), the same everywhere (config, API, store).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldName(String);

impl FieldName {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        // The same rule as every other slug id.
        PurposeId::parse(value)
            .map(|p| Self(p.as_str().to_owned()))
            .map_err(|_| IdError::BadSlug {
                kind: "field name",
                value: value.chars().take(80).collect(),
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldName({})", self.0)
    }
}

/// Where a value came from (issue 13, part 4): the person typed it, it was observed
/// (sent by the operator's systems, e.g. an `identify` trait), or it was inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provenance {
    Volunteered,
    Observed,
    Inferred,
}

impl Provenance {
    pub const ALL: [Provenance; 3] = [
        Provenance::Volunteered,
        Provenance::Observed,
        Provenance::Inferred,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Volunteered => "volunteered",
            Provenance::Observed => "observed",
            Provenance::Inferred => "inferred",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// What a field may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Free text of 1 to `max_len` characters, no control characters.
    Text { max_len: usize },
    /// Exactly one of the listed values.
    OneOf { values: Vec<String> },
    /// A set of the listed values (possibly empty), held in the listed order.
    ManyOf { values: Vec<String> },
    /// A whole number in `min..=max`.
    Integer { min: i64, max: i64 },
    /// A month of the year, 1 to 12.
    Month,
}

impl FieldKind {
    /// The kind's name as the config and the API spell it.
    pub fn name(&self) -> &'static str {
        match self {
            FieldKind::Text { .. } => "text",
            FieldKind::OneOf { .. } => "one_of",
            FieldKind::ManyOf { .. } => "many_of",
            FieldKind::Integer { .. } => "integer",
            FieldKind::Month => "month",
        }
    }

    /// The listed values of a one-of or many-of field (empty otherwise).
    pub fn values(&self) -> &[String] {
        match self {
            FieldKind::OneOf { values } | FieldKind::ManyOf { values } => values,
            _ => &[],
        }
    }
}

/// One field of the operator's catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: FieldName,
    /// What the person is shown.
    pub label: String,
    pub kind: FieldKind,
    /// The purposes that may use the value (each only while the person grants it).
    pub purposes: Vec<PurposeId>,
    /// May count in aggregate insights (only a one-of field: its listed values are the
    /// insight's public groups), while the person shares it and grants insights.
    pub aggregate: bool,
}

/// Why a field's definition is refused (config time).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FieldSpecError {
    #[error("label must be 1 to {MAX_LABEL} bytes")]
    Label,
    #[error("values must list 1 to {MAX_VALUES} distinct values of 1 to {MAX_VALUE} bytes, without ',' or control characters")]
    Values,
    #[error("max_length must be 1 to {MAX_TEXT}")]
    MaxLength,
    #[error("min must not exceed max")]
    Range,
    #[error("purposes must be distinct")]
    DuplicatePurpose,
    #[error(
        "aggregate = true is only for one_of fields (their listed values are the public groups)"
    )]
    Aggregate,
}

/// Why a value does not fit its field (request time). Never holds the value itself.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("expected {expected}")]
    WrongType { expected: &'static str },
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    Control,
    #[error("must be one of: {allowed}")]
    NotAllowed { allowed: String },
    #[error("lists a value twice")]
    Duplicate,
    #[error("must be a whole number from {min} to {max}")]
    OutOfRange { min: i64, max: i64 },
}

/// A value as it arrives, before its field has had its say: text, a whole number, or a
/// list of texts. (The edge turns JSON or a message's trait into one; core knows no JSON.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldInput<'a> {
    Text(&'a str),
    Number(i64),
    List(&'a [&'a str]),
}

/// A value that fits its field.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum FieldValue {
    Text(String),
    One(String),
    /// In the field's listed order, each once.
    Many(Vec<String>),
    Integer(i64),
    Month(u8),
}

impl fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FieldValue(**redacted**)")
    }
}

impl FieldValue {
    /// The stored form (what is sealed): the text, the number in decimal, or a many-of
    /// set joined by ',' (listed values cannot contain one). [`FieldSpec::parse_stored`]
    /// reads it back.
    pub fn canonical(&self) -> String {
        match self {
            FieldValue::Text(s) | FieldValue::One(s) => s.clone(),
            FieldValue::Many(v) => v.join(","),
            FieldValue::Integer(n) => n.to_string(),
            FieldValue::Month(m) => m.to_string(),
        }
    }

    /// The value an insight groups by: a one-of field's value.
    pub fn as_one(&self) -> Option<&str> {
        match self {
            FieldValue::One(s) => Some(s),
            _ => None,
        }
    }
}

fn listed_value_ok(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_VALUE && !v.contains(',') && !v.chars().any(char::is_control)
}

impl FieldSpec {
    /// Checks a definition: a non-empty label; listed values non-empty, distinct and
    /// short; a sane range or length; distinct purposes; `aggregate` only on one-of.
    /// (Whether the purposes exist is the catalog's to say: the config checks it.)
    pub fn new(
        name: FieldName,
        label: String,
        kind: FieldKind,
        purposes: Vec<PurposeId>,
        aggregate: bool,
    ) -> Result<Self, FieldSpecError> {
        if label.trim().is_empty() || label.len() > MAX_LABEL {
            return Err(FieldSpecError::Label);
        }
        match &kind {
            FieldKind::OneOf { values } | FieldKind::ManyOf { values } => {
                let distinct: std::collections::BTreeSet<&String> = values.iter().collect();
                if values.is_empty()
                    || values.len() > MAX_VALUES
                    || distinct.len() != values.len()
                    || !values.iter().all(|v| listed_value_ok(v))
                {
                    return Err(FieldSpecError::Values);
                }
            }
            FieldKind::Text { max_len } => {
                if !(1..=MAX_TEXT).contains(max_len) {
                    return Err(FieldSpecError::MaxLength);
                }
            }
            FieldKind::Integer { min, max } => {
                if min > max {
                    return Err(FieldSpecError::Range);
                }
            }
            FieldKind::Month => {}
        }
        let distinct: std::collections::BTreeSet<&PurposeId> = purposes.iter().collect();
        if distinct.len() != purposes.len() {
            return Err(FieldSpecError::DuplicatePurpose);
        }
        if aggregate && !matches!(kind, FieldKind::OneOf { .. }) {
            return Err(FieldSpecError::Aggregate);
        }
        Ok(Self {
            name,
            label,
            kind,
            purposes,
            aggregate,
        })
    }

    /// Parses what a person or a message sent. Text is taken as sent (no trimming: what
    /// the person typed is what they see); a number is accepted as text where text is
    /// expected (`42` for a one-of shoe size) and as text where a number is.
    pub fn parse_value(&self, input: FieldInput<'_>) -> Result<FieldValue, FieldError> {
        match (&self.kind, input) {
            (FieldKind::Text { max_len }, FieldInput::Text(s)) => text(s, *max_len),
            (FieldKind::Text { max_len }, FieldInput::Number(n)) => text(&n.to_string(), *max_len),
            (FieldKind::OneOf { values }, FieldInput::Text(s)) => one(values, s),
            (FieldKind::OneOf { values }, FieldInput::Number(n)) => one(values, &n.to_string()),
            (FieldKind::ManyOf { values }, FieldInput::List(items)) => many(values, items),
            (FieldKind::Integer { min, max }, FieldInput::Number(n)) => integer(*min, *max, n),
            (FieldKind::Integer { min, max }, FieldInput::Text(s)) => integer(
                *min,
                *max,
                whole(s).ok_or(FieldError::OutOfRange {
                    min: *min,
                    max: *max,
                })?,
            ),
            (FieldKind::Month, FieldInput::Number(n)) => month(n),
            (FieldKind::Month, FieldInput::Text(s)) => month(whole(s).unwrap_or(0)),
            (kind, _) => Err(FieldError::WrongType {
                expected: match kind {
                    FieldKind::Text { .. } => "text",
                    FieldKind::OneOf { .. } => "one of the listed values",
                    FieldKind::ManyOf { .. } => "a list of the listed values",
                    FieldKind::Integer { .. } => "a whole number",
                    FieldKind::Month => "a month, 1 to 12",
                },
            }),
        }
    }

    /// Reads back a value's stored form ([`FieldValue::canonical`]). Fails when the
    /// operator has since changed the field so that the stored value no longer fits
    /// (the caller decides what to show then).
    pub fn parse_stored(&self, stored: &str) -> Result<FieldValue, FieldError> {
        match &self.kind {
            FieldKind::ManyOf { values } => {
                let items: Vec<&str> = if stored.is_empty() {
                    Vec::new()
                } else {
                    stored.split(',').collect()
                };
                many(values, &items)
            }
            _ => self.parse_value(FieldInput::Text(stored)),
        }
    }

    /// Whether `purpose` may use this field.
    pub fn used_by(&self, purpose: &PurposeId) -> bool {
        self.purposes.contains(purpose)
    }
}

/// The operator's fields, in the order they are shown, each name once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldCatalog {
    fields: Vec<FieldSpec>,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("field {0} is defined twice")]
pub struct DuplicateField(pub String);

impl FieldCatalog {
    pub fn new(fields: Vec<FieldSpec>) -> Result<Self, DuplicateField> {
        let mut seen = std::collections::BTreeSet::new();
        for f in &fields {
            if !seen.insert(f.name.as_str()) {
                return Err(DuplicateField(f.name.to_string()));
            }
        }
        Ok(Self { fields })
    }

    pub fn get(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name.as_str() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter()
    }

    /// The fields that may count in aggregate insights, in order.
    pub fn aggregate(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().filter(|f| f.aggregate)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// A whole number written plainly (an optional '-' and digits, nothing else).
fn whole(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn text(s: &str, max_len: usize) -> Result<FieldValue, FieldError> {
    if s.trim().is_empty() {
        return Err(FieldError::Empty);
    }
    if s.chars().count() > max_len {
        return Err(FieldError::TooLong { max: max_len });
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::Control);
    }
    Ok(FieldValue::Text(s.to_owned()))
}

fn not_allowed(values: &[String]) -> FieldError {
    FieldError::NotAllowed {
        allowed: values.join(", "),
    }
}

fn one(values: &[String], s: &str) -> Result<FieldValue, FieldError> {
    values
        .iter()
        .find(|v| *v == s)
        .map(|v| FieldValue::One(v.clone()))
        .ok_or_else(|| not_allowed(values))
}

fn many(values: &[String], items: &[&str]) -> Result<FieldValue, FieldError> {
    let mut picked = vec![false; values.len()];
    for item in items {
        let i = values
            .iter()
            .position(|v| v == item)
            .ok_or_else(|| not_allowed(values))?;
        if std::mem::replace(&mut picked[i], true) {
            return Err(FieldError::Duplicate);
        }
    }
    Ok(FieldValue::Many(
        values
            .iter()
            .zip(picked)
            .filter(|(_, p)| *p)
            .map(|(v, _)| v.clone())
            .collect(),
    ))
}

fn integer(min: i64, max: i64, n: i64) -> Result<FieldValue, FieldError> {
    if (min..=max).contains(&n) {
        Ok(FieldValue::Integer(n))
    } else {
        Err(FieldError::OutOfRange { min, max })
    }
}

fn month(n: i64) -> Result<FieldValue, FieldError> {
    u8::try_from(n)
        .ok()
        .filter(|m| (1..=12).contains(m))
        .map(FieldValue::Month)
        .ok_or(FieldError::OutOfRange { min: 1, max: 12 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FieldKind) -> FieldSpec {
        FieldSpec::new(
            FieldName::parse("f").unwrap(),
            "F".into(),
            kind,
            vec![PurposeId::parse("personalization").unwrap()],
            false,
        )
        .unwrap()
    }

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn definitions_are_checked() {
        let name = || FieldName::parse("size").unwrap();
        let p = || vec![PurposeId::parse("analytics").unwrap()];
        let make = |kind, aggregate| FieldSpec::new(name(), "Size".into(), kind, p(), aggregate);
        let one_of = |v: &[&str]| FieldKind::OneOf { values: list(v) };
        assert!(make(one_of(&["s", "m"]), true).is_ok());
        assert_eq!(make(one_of(&[]), false), Err(FieldSpecError::Values));
        assert_eq!(
            make(one_of(&["s", "s"]), false),
            Err(FieldSpecError::Values)
        );
        assert_eq!(make(one_of(&["a,b"]), false), Err(FieldSpecError::Values));
        assert_eq!(make(one_of(&[""]), false), Err(FieldSpecError::Values));
        assert_eq!(
            make(
                FieldKind::ManyOf {
                    values: list(&["a"])
                },
                true
            ),
            Err(FieldSpecError::Aggregate)
        );
        assert_eq!(make(FieldKind::Month, true), Err(FieldSpecError::Aggregate));
        assert_eq!(
            make(FieldKind::Integer { min: 5, max: 4 }, false),
            Err(FieldSpecError::Range)
        );
        assert_eq!(
            make(FieldKind::Text { max_len: 0 }, false),
            Err(FieldSpecError::MaxLength)
        );
        assert_eq!(
            FieldSpec::new(name(), " ".into(), FieldKind::Month, p(), false),
            Err(FieldSpecError::Label)
        );
        let twice = vec![p()[0].clone(), p()[0].clone()];
        assert_eq!(
            FieldSpec::new(name(), "S".into(), FieldKind::Month, twice, false),
            Err(FieldSpecError::DuplicatePurpose)
        );
        assert!(FieldName::parse("Shoe Size").is_err());
    }

    #[test]
    fn one_of_takes_listed_values_and_numbers_as_text() {
        let s = spec(FieldKind::OneOf {
            values: list(&["41", "42", "43"]),
        });
        assert_eq!(
            s.parse_value(FieldInput::Text("42")),
            Ok(FieldValue::One("42".into()))
        );
        assert_eq!(
            s.parse_value(FieldInput::Number(43)),
            Ok(FieldValue::One("43".into()))
        );
        assert_eq!(
            s.parse_value(FieldInput::Text("44")),
            Err(FieldError::NotAllowed {
                allowed: "41, 42, 43".into()
            })
        );
        assert!(matches!(
            s.parse_value(FieldInput::List(&["42"])),
            Err(FieldError::WrongType { .. })
        ));
    }

    #[test]
    fn many_of_is_a_set_in_listed_order() {
        let s = spec(FieldKind::ManyOf {
            values: list(&["running", "cycling", "yoga"]),
        });
        let v = s
            .parse_value(FieldInput::List(&["yoga", "running"]))
            .unwrap();
        assert_eq!(v, FieldValue::Many(list(&["running", "yoga"])));
        assert_eq!(v.canonical(), "running,yoga");
        assert_eq!(s.parse_stored("running,yoga"), Ok(v));
        assert_eq!(s.parse_stored(""), Ok(FieldValue::Many(Vec::new())));
        assert_eq!(
            s.parse_value(FieldInput::List(&["yoga", "yoga"])),
            Err(FieldError::Duplicate)
        );
        assert!(matches!(
            s.parse_value(FieldInput::List(&["chess"])),
            Err(FieldError::NotAllowed { .. })
        ));
        assert!(matches!(
            s.parse_value(FieldInput::Text("yoga")),
            Err(FieldError::WrongType { .. })
        ));
    }

    #[test]
    fn integers_and_months_are_bounded() {
        let s = spec(FieldKind::Integer { min: 30, max: 50 });
        assert_eq!(
            s.parse_value(FieldInput::Number(42)),
            Ok(FieldValue::Integer(42))
        );
        assert_eq!(
            s.parse_value(FieldInput::Text("42")),
            Ok(FieldValue::Integer(42))
        );
        for bad in [
            FieldInput::Number(51),
            FieldInput::Text("4 2"),
            FieldInput::Text("+42"),
        ] {
            assert_eq!(
                s.parse_value(bad),
                Err(FieldError::OutOfRange { min: 30, max: 50 })
            );
        }
        let m = spec(FieldKind::Month);
        assert_eq!(
            m.parse_value(FieldInput::Number(12)),
            Ok(FieldValue::Month(12))
        );
        assert_eq!(m.parse_stored("3"), Ok(FieldValue::Month(3)));
        for bad in [0, 13, -1, 300] {
            assert!(m.parse_value(FieldInput::Number(bad)).is_err());
        }
        assert!(m.parse_value(FieldInput::Text("march")).is_err());
    }

    #[test]
    fn text_is_bounded_and_errors_never_repeat_the_value() {
        let s = spec(FieldKind::Text { max_len: 5 });
        assert_eq!(
            s.parse_value(FieldInput::Text("Zoë ")),
            Ok(FieldValue::Text("Zoë ".into()))
        );
        assert_eq!(
            s.parse_value(FieldInput::Text("  ")),
            Err(FieldError::Empty)
        );
        assert_eq!(
            s.parse_value(FieldInput::Text("secret-value")),
            Err(FieldError::TooLong { max: 5 })
        );
        assert_eq!(
            s.parse_value(FieldInput::Text("a\nb")),
            Err(FieldError::Control)
        );
        let e = s
            .parse_value(FieldInput::Text("secret-value"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
        let v = s.parse_value(FieldInput::Text("hello")).unwrap();
        assert!(!format!("{v:?}").contains("hello"));
    }

    #[test]
    fn a_catalog_names_each_field_once() {
        let f = spec(FieldKind::Month);
        assert_eq!(
            FieldCatalog::new(vec![f.clone(), f.clone()]),
            Err(DuplicateField("f".into()))
        );
        let c = FieldCatalog::new(vec![f]).unwrap();
        assert!(c.get("f").is_some() && c.get("g").is_none());
        assert_eq!(c.aggregate().count(), 0);
    }

    #[test]
    fn provenance_round_trips() {
        for p in Provenance::ALL {
            assert_eq!(Provenance::parse(p.as_str()), Some(p));
        }
        assert_eq!(Provenance::parse("guessed"), None);
    }
}
