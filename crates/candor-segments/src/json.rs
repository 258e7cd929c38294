//! The JSON form of a rule, as the API speaks it. One object per node:
//!
//! ```json
//! {"and": [...]}   {"or": [...]}   {"not": {...}}
//! {"field": "age_band", "op": "eq", "value": "25-34"}        ops: eq ne lt le gt ge has exists
//! {"field": "age_band", "op": "in", "values": ["18-24", "25-34"]}
//! {"trait": "plan", "op": "eq", "value": "gold"}
//! {"usage": {"type": "track", "event": "App Session", "where": {"app_category": "fitness"}},
//!  "measure": "days", "window_days": 30, "op": "ge", "value": 3}
//! {"seen": {"type": "page", "where": {"category": "travel"}}, "within_days": 14}
//! {"segment": "frequent_travellers"}
//! ```
//!
//! Unknown keys are refused (a typo must not silently widen a segment). Values are
//! strings, whole numbers (64-bit) or booleans. Errors point at a path such as
//! `$.and[1].usage`. The same limits as the text form apply ([`Rule::validate`] runs on
//! every parsed rule); nesting is checked on the way down so a deep document costs
//! nothing.

use crate::rule::{
    At, Cmp, Cond, EventMatch, Limit, Measure, Rule, RuleError, Scalar, Test, MAX_DEPTH, MAX_IN,
    MAX_NODES, MAX_PROPS,
};
use candor_core::event::EventKind;
use candor_core::field::FieldName;
use serde_json::{Map, Value};

/// The JSON form of a rule.
pub fn to_json(rule: &Rule) -> Value {
    match rule {
        Rule::All(v) => obj([("and", Value::Array(v.iter().map(to_json).collect()))]),
        Rule::Any(v) => obj([("or", Value::Array(v.iter().map(to_json).collect()))]),
        Rule::Not(r) => obj([("not", to_json(r))]),
        Rule::Cond(c) => cond_json(c),
    }
}

fn obj<const N: usize>(items: [(&str, Value); N]) -> Value {
    Value::Object(items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn scalar_json(s: &Scalar) -> Value {
    match s {
        Scalar::Text(t) => Value::String(t.clone()),
        Scalar::Number(n) => Value::from(*n),
        Scalar::Bool(b) => Value::Bool(*b),
    }
}

fn test_json(m: &mut Map<String, Value>, t: &Test) {
    let (op, value) = match t {
        Test::Cmp(c, s) => (c.name(), Some(("value", scalar_json(s)))),
        Test::In(v) => (
            "in",
            Some(("values", Value::Array(v.iter().map(scalar_json).collect()))),
        ),
        Test::Has(s) => ("has", Some(("value", Value::String(s.clone())))),
        Test::Exists => ("exists", None),
    };
    m.insert("op".into(), Value::String(op.into()));
    if let Some((k, v)) = value {
        m.insert(k.into(), v);
    }
}

fn match_json(e: &EventMatch) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::String(e.kind.as_str().into()));
    if let Some(n) = &e.name {
        m.insert("event".into(), Value::String(n.clone()));
    }
    if !e.props.is_empty() {
        let w: Map<String, Value> = e
            .props
            .iter()
            .map(|(k, v)| (k.clone(), scalar_json(v)))
            .collect();
        m.insert("where".into(), Value::Object(w));
    }
    Value::Object(m)
}

fn cond_json(c: &Cond) -> Value {
    let mut m = Map::new();
    match c {
        Cond::Field { field, test } => {
            m.insert("field".into(), Value::String(field.to_string()));
            test_json(&mut m, test);
        }
        Cond::Trait { name, test } => {
            m.insert("trait".into(), Value::String(name.clone()));
            test_json(&mut m, test);
        }
        Cond::Usage {
            events,
            measure,
            window_days,
            cmp,
            n,
        } => {
            m.insert("usage".into(), match_json(events));
            m.insert("measure".into(), Value::String(measure.name().into()));
            m.insert("window_days".into(), Value::from(*window_days));
            m.insert("op".into(), Value::String(cmp.name().into()));
            m.insert("value".into(), Value::from(*n));
        }
        Cond::Seen {
            events,
            within_days,
        } => {
            m.insert("seen".into(), match_json(events));
            m.insert("within_days".into(), Value::from(*within_days));
        }
        Cond::Segment(s) => {
            m.insert("segment".into(), Value::String(s.clone()));
        }
    }
    Value::Object(m)
}

/// Parses the JSON form. Never panics; refuses unknown keys and anything past the limits.
pub fn from_json(v: &Value) -> Result<Rule, RuleError> {
    let mut p = Json { nodes: 0 };
    let rule = p.rule(v, &mut String::from("$"), 1)?;
    rule.validate()?;
    Ok(rule)
}

fn syntax(path: &str, expected: &'static str) -> RuleError {
    RuleError::Syntax {
        at: At::Path(path.to_owned()),
        expected,
    }
}

struct Json {
    nodes: usize,
}

/// The object's keys must be exactly `required` plus any of `optional`.
fn keys(
    m: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
    expected: &'static str,
) -> Result<(), RuleError> {
    if m.keys().all(|k| allowed.contains(&k.as_str())) {
        Ok(())
    } else {
        Err(syntax(path, expected))
    }
}

fn get<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
    expected: &'static str,
) -> Result<&'a Value, RuleError> {
    m.get(key).ok_or_else(|| syntax(path, expected))
}

fn string<'a>(v: &'a Value, path: &str, expected: &'static str) -> Result<&'a str, RuleError> {
    v.as_str().ok_or_else(|| syntax(path, expected))
}

fn scalar(v: &Value, path: &str) -> Result<Scalar, RuleError> {
    match v {
        Value::String(s) => Ok(Scalar::Text(s.clone())),
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(Scalar::Number)
            .ok_or_else(|| syntax(path, "a whole number that fits 64 bits")),
        _ => Err(syntax(path, "a string, a whole number or a boolean")),
    }
}

fn window(v: Option<&Value>, path: &str) -> Result<u16, RuleError> {
    v.and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|w| crate::rule::window_ok(*w))
        .ok_or(RuleError::BadWindow {
            at: At::Path(path.to_owned()),
        })
}

impl Json {
    fn rule(&mut self, v: &Value, path: &mut String, depth: usize) -> Result<Rule, RuleError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(RuleError::TooLarge {
                at: At::Path(path.clone()),
                limit: Limit::Nodes,
            });
        }
        if depth > MAX_DEPTH {
            return Err(RuleError::TooLarge {
                at: At::Path(path.clone()),
                limit: Limit::Depth,
            });
        }
        let m = v
            .as_object()
            .ok_or_else(|| syntax(path, "an object for each rule"))?;
        for (key, make) in [
            ("and", Rule::All as fn(Vec<Rule>) -> Rule),
            ("or", Rule::Any),
        ] {
            if let Some(items) = m.get(key) {
                keys(m, path, &[key], "only one key beside and/or")?;
                let items = items
                    .as_array()
                    .ok_or_else(|| syntax(path, "an array of rules"))?;
                if items.len() > MAX_NODES {
                    return Err(RuleError::TooLarge {
                        at: At::Path(path.clone()),
                        limit: Limit::Nodes,
                    });
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!(".{key}[{i}]"));
                    let r = self.rule(item, path, depth + 1);
                    path.truncate(len);
                    out.push(r?);
                }
                return Ok(make(out));
            }
        }
        if let Some(inner) = m.get("not") {
            keys(m, path, &["not"], "only one key beside not")?;
            let len = path.len();
            path.push_str(".not");
            let r = self.rule(inner, path, depth + 1);
            path.truncate(len);
            return Ok(Rule::Not(Box::new(r?)));
        }
        Ok(Rule::Cond(self.cond(m, path)?))
    }

    fn test(&self, m: &Map<String, Value>, path: &str) -> Result<Test, RuleError> {
        let op = string(get(m, "op", path, "\"op\"")?, path, "an op name")?;
        match op {
            "in" => {
                keys(
                    m,
                    path,
                    &["field", "trait", "op", "values"],
                    "field/trait, op and values",
                )?;
                let vals = get(m, "values", path, "\"values\" for op in")?
                    .as_array()
                    .ok_or_else(|| syntax(path, "an array of values"))?;
                if vals.is_empty() || vals.len() > MAX_IN {
                    return Err(RuleError::TooLarge {
                        at: At::Path(path.to_owned()),
                        limit: Limit::InValues,
                    });
                }
                Ok(Test::In(
                    vals.iter()
                        .map(|v| scalar(v, path))
                        .collect::<Result<_, _>>()?,
                ))
            }
            "exists" => {
                keys(
                    m,
                    path,
                    &["field", "trait", "op"],
                    "field/trait and op only",
                )?;
                Ok(Test::Exists)
            }
            "has" => {
                keys(
                    m,
                    path,
                    &["field", "trait", "op", "value"],
                    "field/trait, op and value",
                )?;
                let v = get(m, "value", path, "\"value\"")?;
                Ok(Test::Has(string(v, path, "a string for has")?.to_owned()))
            }
            other => {
                let cmp = Cmp::from_name(other)
                    .ok_or_else(|| syntax(path, "op eq, ne, lt, le, gt, ge, in, has or exists"))?;
                keys(
                    m,
                    path,
                    &["field", "trait", "op", "value"],
                    "field/trait, op and value",
                )?;
                Ok(Test::Cmp(
                    cmp,
                    scalar(get(m, "value", path, "\"value\"")?, path)?,
                ))
            }
        }
    }

    fn event_match(&self, v: &Value, path: &str) -> Result<EventMatch, RuleError> {
        let m = v
            .as_object()
            .ok_or_else(|| syntax(path, "an object naming the events"))?;
        keys(
            m,
            path,
            &["type", "event", "where"],
            "type, event and where only",
        )?;
        let kind = string(
            get(m, "type", path, "\"type\"")?,
            path,
            "track, page or screen",
        )?;
        let kind = EventKind::parse(kind)
            .filter(|k| crate::rule::is_event_kind(*k))
            .ok_or(RuleError::BadEventKind {
                at: At::Path(path.to_owned()),
            })?;
        let name = match m.get("event") {
            None => None,
            Some(n) => Some(string(n, path, "a string event name")?.to_owned()),
        };
        let mut props = Vec::new();
        if let Some(w) = m.get("where") {
            let w = w
                .as_object()
                .ok_or_else(|| syntax(path, "an object of properties"))?;
            if w.len() > MAX_PROPS {
                return Err(RuleError::TooLarge {
                    at: At::Path(path.to_owned()),
                    limit: Limit::Props,
                });
            }
            for (k, v) in w {
                props.push((k.clone(), scalar(v, path)?));
            }
        }
        let mut e = EventMatch { kind, name, props };
        e.normalize();
        Ok(e)
    }

    fn cond(&self, m: &Map<String, Value>, path: &mut String) -> Result<Cond, RuleError> {
        if m.contains_key("field") && m.contains_key("trait") {
            return Err(syntax(path, "either field or trait, not both"));
        }
        if let Some(f) = m.get("field") {
            let name = string(f, path, "a field name")?;
            let field = FieldName::parse(name).map_err(|_| RuleError::BadName {
                at: At::Path(path.clone()),
                what: "a field name",
            })?;
            return Ok(Cond::Field {
                field,
                test: self.test(m, path)?,
            });
        }
        if let Some(t) = m.get("trait") {
            let name = string(t, path, "a trait name")?.to_owned();
            return Ok(Cond::Trait {
                name,
                test: self.test(m, path)?,
            });
        }
        if let Some(u) = m.get("usage") {
            keys(
                m,
                path,
                &["usage", "measure", "window_days", "op", "value"],
                "usage, measure, window_days, op and value",
            )?;
            let events = self.event_match(u, &format!("{path}.usage"))?;
            let measure = Measure::from_name(string(
                get(m, "measure", path, "\"measure\"")?,
                path,
                "count or days",
            )?)
            .ok_or_else(|| syntax(path, "measure count or days"))?;
            let window_days = window(m.get("window_days"), path)?;
            let cmp = Cmp::from_name(string(get(m, "op", path, "\"op\"")?, path, "an op")?)
                .ok_or_else(|| syntax(path, "op eq, ne, lt, le, gt or ge"))?;
            let n = get(m, "value", path, "\"value\"")?
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| syntax(path, "a whole number from 0 to 4294967295"))?;
            return Ok(Cond::Usage {
                events,
                measure,
                window_days,
                cmp,
                n,
            });
        }
        if let Some(s) = m.get("seen") {
            keys(
                m,
                path,
                &["seen", "within_days"],
                "seen and within_days only",
            )?;
            let events = self.event_match(s, &format!("{path}.seen"))?;
            let within_days = window(m.get("within_days"), path)?;
            return Ok(Cond::Seen {
                events,
                within_days,
            });
        }
        if let Some(s) = m.get("segment") {
            keys(m, path, &["segment"], "segment only")?;
            return Ok(Cond::Segment(string(s, path, "a segment name")?.to_owned()));
        }
        Err(syntax(
            path,
            "one of and, or, not, field, trait, usage, seen, segment",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::parse_text;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn documented_shapes_parse() {
        let cases = [
            (
                json!({"field": "age_band", "op": "eq", "value": "25-34"}),
                r#"field.age_band = "25-34""#,
            ),
            (
                json!({"field": "age_band", "op": "in", "values": ["18-24", "25-34"]}),
                r#"field.age_band in ["18-24", "25-34"]"#,
            ),
            (
                json!({"field": "birth_month", "op": "exists"}),
                "field.birth_month exists",
            ),
            (
                json!({"trait": "plan", "op": "eq", "value": "gold"}),
                r#"trait.plan = "gold""#,
            ),
            (
                json!({"usage": {"type": "track", "event": "App Session", "where": {"app_category": "fitness"}},
                       "measure": "days", "window_days": 30, "op": "ge", "value": 3}),
                r#"days(track "App Session" where app_category = "fitness") in last 30 days >= 3"#,
            ),
            (
                json!({"seen": {"type": "page", "where": {"category": "travel"}}, "within_days": 14}),
                r#"seen(page where category = "travel") within 14 days"#,
            ),
            (
                json!({"segment": "frequent_travellers"}),
                r#"segment "frequent_travellers""#,
            ),
            (
                json!({"and": [{"not": {"field": "a", "op": "exists"}}, {"or": [{"segment": "x"}, {"segment": "y"}]}]}),
                r#"not field.a exists and (segment "x" or segment "y")"#,
            ),
        ];
        for (j, text) in cases {
            let r = from_json(&j).unwrap_or_else(|e| panic!("{j}: {e}"));
            assert_eq!(r, parse_text(text).unwrap());
            assert_eq!(to_json(&r), j);
        }
    }

    #[test]
    fn refusals_name_the_path() {
        let cases = [
            (
                json!({"field": "a", "op": "exists", "extra": 1}),
                "segment_syntax",
                "$",
            ),
            (
                json!({"and": [{"field": "a", "op": "exists"}, {"field": "a", "op": "nope"}]}),
                "segment_syntax",
                "$.and[1]",
            ),
            (
                json!({"and": [{"field": "a", "op": "exists"}]}),
                "segment_syntax",
                "$",
            ),
            (
                json!({"seen": {"type": "page"}, "within_days": 0}),
                "segment_bad_window",
                "$",
            ),
            (
                json!({"seen": {"type": "identify"}, "within_days": 1}),
                "segment_bad_event_kind",
                "$.seen",
            ),
            (
                json!({"seen": {"type": "page", "color": 1}, "within_days": 1}),
                "segment_syntax",
                "$.seen",
            ),
            (
                json!({"field": "a", "op": "eq", "value": 1.5}),
                "segment_syntax",
                "$",
            ),
            (
                json!({"field": "a", "trait": "b", "op": "exists"}),
                "segment_syntax",
                "$",
            ),
            (
                json!({"trait": "a-b", "op": "exists"}),
                "segment_bad_name",
                "$",
            ),
            (json!({"segment": ""}), "segment_empty_name", "$"),
            (json!([1]), "segment_syntax", "$"),
        ];
        for (j, code, path) in cases {
            let e = from_json(&j).unwrap_err();
            assert_eq!(
                (e.code(), e.at().to_string()),
                (code, path.to_owned()),
                "{j}: {e}"
            );
        }
        let mut deep = json!({"field": "a", "op": "exists"});
        for _ in 0..100 {
            deep = json!({ "not": deep });
        }
        assert_eq!(from_json(&deep).unwrap_err().code(), "segment_too_large");
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            prop::sample::select(vec![
                "eq", "in", "has", "exists", "ge", "track", "page", "days", "count", "a", "x",
            ])
            .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 30, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "and",
                        "or",
                        "not",
                        "field",
                        "trait",
                        "op",
                        "value",
                        "values",
                        "usage",
                        "seen",
                        "segment",
                        "type",
                        "event",
                        "where",
                        "measure",
                        "window_days",
                        "within_days",
                    ]),
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics(v in value()) {
            if let Ok(r) = from_json(&v) {
                prop_assert_eq!(from_json(&to_json(&r)), Ok(r.clone()));
                prop_assert_eq!(parse_text(&r.to_string()), Ok(r));
            }
        }
    }
}
