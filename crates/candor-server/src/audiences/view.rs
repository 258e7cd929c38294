//! A stored event as the segment engine reads it: its kind, name, top-level properties
//! and identify traits, parsed once from the payload the store opened.
//!
//! The payload is the message as it was accepted at the edge (`segment::Message`), so it
//! is valid JSON with the shape Segment's spec gives it; anything else reads as absent
//! rather than failing the whole log.

use candor_core::event::EventKind;
use candor_segments::{EventView, Scalar};
use serde_json::{Map, Value};

pub struct StoredView {
    kind: EventKind,
    name: Option<String>,
    properties: Map<String, Value>,
    traits: Map<String, Value>,
}

impl StoredView {
    pub fn parse(kind: EventKind, payload: &[u8]) -> Self {
        let mut v: Map<String, Value> = serde_json::from_slice(payload).unwrap_or_default();
        let name = match kind {
            EventKind::Track => v.get("event"),
            _ => v.get("name"),
        }
        .and_then(Value::as_str)
        .map(str::to_owned);
        let take = |v: &mut Map<String, Value>, key: &str| match v.remove(key) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let properties = take(&mut v, "properties");
        let mut traits = take(&mut v, "traits");
        if traits.is_empty() {
            if let Some(Value::Object(c)) = v.get_mut("context") {
                if let Some(Value::Object(t)) = c.remove("traits") {
                    traits = t;
                }
            }
        }
        Self {
            kind,
            name,
            properties,
            traits,
        }
    }
}

/// A JSON value as a rule compares it: strings, whole numbers and booleans; anything
/// else (fractions, objects, lists, null) matches nothing.
pub fn scalar(v: &Value) -> Option<Scalar> {
    match v {
        Value::String(s) => Some(Scalar::Text(s.clone())),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(n) => n.as_i64().map(Scalar::Number),
        _ => None,
    }
}

impl EventView for StoredView {
    fn kind(&self) -> EventKind {
        self.kind
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn property(&self, name: &str) -> Option<Scalar> {
        self.properties.get(name).and_then(scalar)
    }

    fn trait_value(&self, name: &str) -> Option<Scalar> {
        if self.kind != EventKind::Identify {
            return None;
        }
        self.traits.get(name).and_then(scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_properties_and_traits_as_sent() {
        let t = StoredView::parse(
            EventKind::Track,
            br#"{"event":"App Session","properties":{"app_category":"fitness","n":3,"f":1.5}}"#,
        );
        assert_eq!(t.name(), Some("App Session"));
        assert_eq!(
            t.property("app_category"),
            Some(Scalar::Text("fitness".into()))
        );
        assert_eq!(t.property("n"), Some(Scalar::Number(3)));
        assert_eq!(t.property("f"), None);
        assert_eq!(t.trait_value("plan"), None);
        let i = StoredView::parse(
            EventKind::Identify,
            br#"{"userId":"u","context":{"traits":{"plan":"gold","vip":true}}}"#,
        );
        assert_eq!(i.trait_value("plan"), Some(Scalar::Text("gold".into())));
        assert_eq!(i.trait_value("vip"), Some(Scalar::Bool(true)));
        let p = StoredView::parse(EventKind::Page, b"not json");
        assert_eq!((p.name(), p.property("x")), (None, None));
    }
}
