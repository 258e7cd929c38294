//! From one consent-gated event to the feature changes it makes: the only path from raw
//! events to the privacy engine's input.
//!
//! The server calls [`Rules::extract`] only for events whose allowed purposes include the
//! insights purpose, so an event the subject did not allow for insights never becomes a
//! feature. Rules are table-driven (the operator's `[insights]` config can replace them):
//! an activity rule names a data category, the feature kind it yields and the property
//! holding the category name; declared fields come from `identify` traits in the declared
//! data category, and count only when the message marks them shareable in aggregate with
//! `context.candor.share_in_aggregate: ["age_band", ...]`. A declared trait sent without
//! that mark *clears* the field: sharing is opt-in per field and revocable per field.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::features::{Category, DailyFeature, Day, FeatureDelta, FeatureKind, Schema};

/// Events of `data_category` whose `properties[property]` names a category yield a
/// `kind` feature (count 1 per event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRule {
    pub data_category: String,
    pub kind: FeatureKind,
    pub property: String,
}

/// The parts of a message the rules read. The caller has already parsed the message's
/// top level at the edge; this takes what that parse kept, so ingestion never parses a
/// message twice (only the small `properties` object, and only when a rule applies).
#[derive(Debug, Clone, Copy, Default)]
pub struct Parts<'a> {
    /// `properties` as JSON text (an object), if present.
    pub properties: Option<&'a str>,
    /// `traits` (or `context.traits`) of an identify.
    pub traits: Option<&'a Map<String, Value>>,
    /// `context.candor.share_in_aggregate`: the declared fields marked shareable.
    pub share_in_aggregate: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub activity: Vec<ActivityRule>,
    /// The data category of `identify` messages that carry declared fields.
    pub declared_category: String,
}

impl Default for Rules {
    /// The rules for Candor's built-in catalog.
    fn default() -> Self {
        let rule = |c: &str, kind, p: &str| ActivityRule {
            data_category: c.into(),
            kind,
            property: p.into(),
        };
        Self {
            activity: vec![
                rule("app_installs", FeatureKind::AppInstalled, "app_category"),
                rule("app_usage", FeatureKind::AppUsed, "app_category"),
                rule("browsing_categories", FeatureKind::Browsed, "category"),
            ],
            declared_category: "declared_profile".into(),
        }
    }
}

impl Rules {
    /// Whether events of this data category can yield features at all (lets the caller
    /// skip parsing the message for the rest).
    pub fn wants(&self, data_category: &str) -> bool {
        data_category == self.declared_category
            || self
                .activity
                .iter()
                .any(|r| r.data_category == data_category)
    }

    /// The feature changes of one message.
    pub fn extract(
        &self,
        schema: &Schema,
        event_type: &str,
        data_category: &str,
        event_ms: i64,
        msg: &Parts<'_>,
    ) -> Vec<FeatureDelta> {
        let mut out = Vec::new();
        if matches!(event_type, "track" | "page" | "screen") {
            let Some(day) = Day::from_ms(event_ms) else {
                return out;
            };
            let mut rules = self
                .activity
                .iter()
                .filter(|r| r.data_category == data_category)
                .peekable();
            if rules.peek().is_none() {
                return out;
            }
            // Top-level keys only; values stay unparsed until a rule asks for one.
            let props: HashMap<Cow<'_, str>, &RawValue> = msg
                .properties
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_default();
            for r in rules {
                let cat = props
                    .get(r.property.as_str())
                    .and_then(|v| serde_json::from_str::<Cow<'_, str>>(v.get()).ok())
                    .and_then(|s| Category::parse(&s));
                if let Some(category) = cat {
                    out.push(FeatureDelta::Activity(DailyFeature {
                        day,
                        kind: r.kind,
                        category,
                        count: 1,
                    }));
                }
            }
        }
        if event_type == "identify" && data_category == self.declared_category {
            let shared = msg.share_in_aggregate;
            if let Some(traits) = msg.traits {
                for f in &schema.declared {
                    let Some(v) = traits.get(&f.name) else {
                        continue;
                    };
                    let value = match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    };
                    match value {
                        Some(value) if shared.contains(&f.name) && f.values.contains(&value) => {
                            out.push(FeatureDelta::Declare {
                                field: f.name.clone(),
                                value,
                            });
                        }
                        _ => out.push(FeatureDelta::Undeclare {
                            field: f.name.clone(),
                        }),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::tests::schema;
    use serde_json::json;

    const T: i64 = 1_764_374_400_000; // 2025-11-29

    /// Extracts from a whole message, taking its parts as the ingestion edge does.
    fn ex(r: &Rules, ty: &str, cat: &str, t: i64, m: &Value) -> Vec<FeatureDelta> {
        let props = m.get("properties").map(Value::to_string);
        let share: Vec<String> = m
            .pointer("/context/candor/share_in_aggregate")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let parts = Parts {
            properties: props.as_deref(),
            traits: m.get("traits").and_then(Value::as_object),
            share_in_aggregate: &share,
        };
        r.extract(&schema(), ty, cat, t, &parts)
    }

    #[test]
    fn activity_follows_the_rules() {
        let r = Rules::default();
        let m = json!({"type": "track", "event": "App Session", "properties": {"app_category": "Games"}});
        let got = ex(&r, "track", "app_usage", T + 5, &m);
        assert_eq!(
            got,
            vec![FeatureDelta::Activity(DailyFeature {
                day: Day::from_ms(T).unwrap(),
                kind: FeatureKind::AppUsed,
                category: Category::parse("games").unwrap(),
                count: 1
            })]
        );
        // wrong data category, missing or invalid property, identify: nothing
        assert!(ex(&r, "track", "contact", T, &m).is_empty());
        let bad = json!({"properties": {"app_category": "no spaces allowed"}});
        assert!(ex(&r, "track", "app_usage", T, &bad).is_empty());
        assert!(ex(&r, "identify", "app_usage", T, &m).is_empty());
        let page = json!({"properties": {"category": "sports"}});
        assert_eq!(ex(&r, "page", "browsing_categories", T, &page).len(), 1);
        assert!(r.wants("app_usage") && r.wants("declared_profile") && !r.wants("contact"));
    }

    #[test]
    fn declared_fields_need_the_share_mark_and_a_schema_value() {
        let r = Rules::default();
        let shared = json!({"traits": {"age_band": "25-34", "shoe": 42},
            "context": {"candor": {"share_in_aggregate": ["age_band"]}}});
        assert_eq!(
            ex(&r, "identify", "declared_profile", T, &shared),
            vec![FeatureDelta::Declare {
                field: "age_band".into(),
                value: "25-34".into()
            }]
        );
        let unshared = json!({"traits": {"age_band": "25-34"}});
        let off = json!({"traits": {"age_band": "7-8"},
            "context": {"candor": {"share_in_aggregate": ["age_band"]}}});
        for m in [unshared, off] {
            assert_eq!(
                ex(&r, "identify", "declared_profile", T, &m),
                vec![FeatureDelta::Undeclare {
                    field: "age_band".into()
                }]
            );
        }
        let absent = json!({"traits": {"name": "x"}});
        assert!(ex(&r, "identify", "declared_profile", T, &absent).is_empty());
    }
}
