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

use candor_core::event::EventKind;
use candor_core::time::UnixMillis;

use crate::features::{DailyFeature, Day, FeatureDelta, FeatureKind, Schema};

/// Events of `data_category` whose `properties[property]` names a category yield a
/// `kind` feature (count 1 per event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRule {
    pub data_category: String,
    pub kind: FeatureKind,
    pub property: String,
}

/// What the rules read of one message, looked up by name. The ingestion edge implements
/// it over the message it has already parsed, so this crate knows nothing of the wire
/// format and nothing is parsed for rules that do not apply.
pub trait Message {
    /// The top-level property `name` when it is a string.
    fn property(&self, name: &str) -> Option<Cow<'_, str>>;
    /// The trait `name` of an identify: `None` when absent, `Some(None)` when present
    /// but neither a string nor a number, `Some(Some(text))` otherwise (a number as its
    /// decimal text).
    fn declared_trait(&self, name: &str) -> Option<Option<Cow<'_, str>>>;
    /// Whether the message marks the declared field `field` shareable in aggregate
    /// (`context.candor.share_in_aggregate`).
    fn shares(&self, field: &str) -> bool;
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

    /// The feature changes of one message of `kind` in `data_category`, dated `at`.
    pub fn extract(
        &self,
        schema: &Schema,
        kind: EventKind,
        data_category: &str,
        at: UnixMillis,
        msg: &impl Message,
    ) -> Vec<FeatureDelta> {
        let mut out = Vec::new();
        if matches!(kind, EventKind::Track | EventKind::Page | EventKind::Screen) {
            let Some(day) = Day::from_ms(at.0) else {
                return out;
            };
            for r in self
                .activity
                .iter()
                .filter(|r| r.data_category == data_category)
            {
                if let Some(category) = msg.property(&r.property).and_then(|s| schema.category(&s))
                {
                    out.push(FeatureDelta::Activity(DailyFeature {
                        day,
                        kind: r.kind,
                        category,
                        count: 1,
                    }));
                }
            }
        }
        if kind == EventKind::Identify && data_category == self.declared_category {
            for f in &schema.declared {
                let Some(value) = msg.declared_trait(&f.name) else {
                    continue;
                };
                match value {
                    Some(v) if msg.shares(&f.name) && f.values.iter().any(|x| *x == v) => {
                        out.push(FeatureDelta::Declare {
                            field: f.name.clone(),
                            value: v.into_owned(),
                        });
                    }
                    _ => out.push(FeatureDelta::Undeclare {
                        field: f.name.clone(),
                    }),
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
    use crate::features::Category;
    use serde_json::{json, Value};

    const T: i64 = 1_764_374_400_000; // 2025-11-29

    /// A message as JSON, read the way the ingestion edge reads one.
    struct Json(Value);

    impl Message for Json {
        fn property(&self, name: &str) -> Option<Cow<'_, str>> {
            self.0
                .get("properties")?
                .get(name)?
                .as_str()
                .map(Cow::Borrowed)
        }
        fn declared_trait(&self, name: &str) -> Option<Option<Cow<'_, str>>> {
            let v = self.0.get("traits")?.get(name)?;
            Some(match v {
                Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                Value::Number(n) => Some(Cow::Owned(n.to_string())),
                _ => None,
            })
        }
        fn shares(&self, field: &str) -> bool {
            self.0
                .pointer("/context/candor/share_in_aggregate")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(field)))
        }
    }

    fn ex(r: &Rules, kind: EventKind, cat: &str, t: i64, m: &Value) -> Vec<FeatureDelta> {
        r.extract(&schema(), kind, cat, UnixMillis(t), &Json(m.clone()))
    }

    #[test]
    fn activity_follows_the_rules() {
        let r = Rules::default();
        let m = json!({"type": "track", "event": "App Session", "properties": {"app_category": "Games"}});
        let got = ex(&r, EventKind::Track, "app_usage", T + 5, &m);
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
        assert!(ex(&r, EventKind::Track, "contact", T, &m).is_empty());
        let bad = json!({"properties": {"app_category": "no spaces allowed"}});
        assert!(ex(&r, EventKind::Track, "app_usage", T, &bad).is_empty());
        assert!(ex(&r, EventKind::Identify, "app_usage", T, &m).is_empty());
        let page = json!({"properties": {"category": "sports"}});
        assert_eq!(
            ex(&r, EventKind::Page, "browsing_categories", T, &page).len(),
            1
        );
        assert!(r.wants("app_usage") && r.wants("declared_profile") && !r.wants("contact"));
    }

    /// Names outside the schema's list count as "other": a sender making up names
    /// cannot grow the set of categories anywhere.
    #[test]
    fn categories_outside_the_schema_count_as_other() {
        let r = Rules::default();
        let index = crate::FeatureIndex::new(schema()).unwrap();
        let before = index.stats().categories;
        for i in 0..2_000 {
            let m = json!({"properties": {"app_category": format!("made-up-{i}")}});
            let got = ex(&r, EventKind::Track, "app_usage", T, &m);
            let [FeatureDelta::Activity(f)] = got.as_slice() else {
                panic!("one activity, got {got:?}");
            };
            assert_eq!(f.category.as_str(), crate::features::OTHER);
            index.add_activity(candor_core::SubjectId::random(), i, f);
        }
        assert_eq!(index.stats().categories, before);
        assert_eq!(index.stats().daily_rows, 2_000);
        // A schema that lists a name keeps it.
        let mut own = schema();
        own.categories = vec![Category::parse("made-up-7").unwrap()];
        let m = json!({"properties": {"app_category": "Made-Up-7"}});
        let got = r.extract(&own, EventKind::Track, "app_usage", UnixMillis(T), &Json(m));
        assert!(
            matches!(&got[..], [FeatureDelta::Activity(f)] if f.category.as_str() == "made-up-7")
        );
    }

    #[test]
    fn declared_fields_need_the_share_mark_and_a_schema_value() {
        let r = Rules::default();
        let shared = json!({"traits": {"age_band": "25-34", "shoe": 42},
            "context": {"candor": {"share_in_aggregate": ["age_band"]}}});
        assert_eq!(
            ex(&r, EventKind::Identify, "declared_profile", T, &shared),
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
                ex(&r, EventKind::Identify, "declared_profile", T, &m),
                vec![FeatureDelta::Undeclare {
                    field: "age_band".into()
                }]
            );
        }
        let absent = json!({"traits": {"name": "x"}});
        assert!(ex(&r, EventKind::Identify, "declared_profile", T, &absent).is_empty());
    }
}
