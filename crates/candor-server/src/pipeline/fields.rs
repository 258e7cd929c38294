//! Volunteered (zero-party) fields as a stage: a value as it arrived (JSON from the
//! preference center, or an `identify` trait) checked against its field in the
//! operator's catalog, and an identify's traits turned into field writes.
//!
//! Why here and not in the gate: the gate decides which purposes may use a message;
//! whether its traits fit the operator's fields is a separate question asked of the same
//! message, and its answer is applied only if the gate (and then the store) kept the
//! message, so a person who consented to nothing has nothing stored.

use crate::segment::Message;
use crate::state::AppState;
use crate::telemetry::FieldValueRejected;
use candor_core::event::EventKind;
use candor_core::field::{FieldError, FieldInput, FieldName, FieldSpec, FieldValue, Provenance};
use candor_core::{Sensitive, SubjectId, UnixMillis};
use candor_store::FieldWrite;
use serde_json::Value;

/// Parses a JSON value for `spec`: a string as text, a whole number as a number, an
/// array of strings as a list; anything else is the wrong type.
pub fn parse(spec: &FieldSpec, v: &Value) -> Result<FieldValue, FieldError> {
    match v {
        Value::String(s) => spec.parse_value(FieldInput::Text(s)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => spec.parse_value(FieldInput::Number(i)),
            None => Err(FieldError::WrongType {
                expected: "a whole number",
            }),
        },
        Value::Array(a) => {
            let items: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
            match items {
                Some(items) => spec.parse_value(FieldInput::List(&items)),
                None => Err(FieldError::WrongType {
                    expected: "a list of texts",
                }),
            }
        }
        _ => Err(FieldError::WrongType {
            expected: "a text, a whole number or a list of texts",
        }),
    }
}

/// A value as JSON (the reverse of [`parse`]).
pub fn to_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Text(s) | FieldValue::One(s) => Value::String(s.clone()),
        FieldValue::Many(items) => Value::from(items.clone()),
        FieldValue::Integer(n) => Value::from(*n),
        FieldValue::Month(m) => Value::from(*m),
    }
}

/// Field values an identify's traits carry, before the gate has had its say.
pub struct Pending {
    values: Vec<(FieldName, Sensitive<String>)>,
    provenance: Provenance,
}

/// The configured fields an `identify`'s traits name, each checked against its field: a
/// value that does not fit is left out (and counted), so the field keeps what it held;
/// a `null` sets nothing. `None` when there is nothing to write.
pub fn from_message(st: &AppState, m: &Message<'_>) -> Option<Pending> {
    if m.kind != EventKind::Identify || st.settings.fields.is_empty() {
        return None;
    }
    let traits = m.traits.as_ref()?;
    let mut values = Vec::new();
    for spec in st.settings.fields.iter() {
        let Some(v) = traits.get(spec.name.as_str()) else {
            continue;
        };
        if v.is_null() {
            continue;
        }
        match parse(spec, v) {
            Ok(value) => values.push((spec.name.clone(), Sensitive::new(value.canonical()))),
            Err(_) => FieldValueRejected {
                field: spec.name.as_str(),
            }
            .emit(),
        }
    }
    (!values.is_empty()).then_some(Pending {
        values,
        provenance: m.provenance,
    })
}

impl Pending {
    /// The writes for the subject the gate found, once the store has kept the message.
    pub fn writes(self, subject: SubjectId, at: UnixMillis) -> impl Iterator<Item = FieldWrite> {
        let provenance = self.provenance;
        self.values
            .into_iter()
            .map(move |(field, value)| FieldWrite {
                subject,
                field,
                value,
                provenance,
                time_ms: at,
            })
    }
}
