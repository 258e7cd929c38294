//! The purpose check: a segment belongs to one purpose and may only name data that
//! purpose may use. It runs when a segment or offer is defined, against the operator's
//! catalogs, so evaluation never has to ask again (the engine trusts checked rules and
//! applies consent at read time).
//!
//! What a purpose may use: a field whose spec lists the purpose; identify traits when
//! the identify mapping's category is covered by the purpose's notice; events when their
//! kind/name maps to a category the purpose covers; another segment of the same purpose.
//! Errors name the field, events and purpose involved, never a person's value (a rule
//! holds no personal data anyway, only the operator's own values).

use crate::rule::{Cond, Rule, Scalar, Test};
use candor_core::event::EventKind;
use candor_core::field::{FieldCatalog, FieldInput, FieldKind, FieldSpec};
use candor_core::ids::PurposeId;
use candor_core::purpose::Catalog;
use thiserror::Error;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CheckError {
    #[error("unknown purpose {purpose}")]
    UnknownPurpose { purpose: String },
    #[error("unknown field {field}")]
    UnknownField { field: String },
    #[error("field {field} may not be used for purpose {purpose}")]
    FieldNotAllowed { field: String, purpose: String },
    #[error("field {field}: {why}")]
    BadTest { field: String, why: String },
    #[error("trait {name} may not be used for purpose {purpose}")]
    TraitNotAllowed { name: String, purpose: String },
    #[error("events {events} are not mapped to a data category")]
    UnmappedEvents { events: String },
    #[error("events {events} (data category {category}) may not be used for purpose {purpose}")]
    EventsNotAllowed {
        events: String,
        category: String,
        purpose: String,
    },
    #[error("unknown segment {segment}")]
    UnknownSegment { segment: String },
    #[error("segment {segment} belongs to another purpose than {purpose}")]
    SegmentNotAllowed { segment: String, purpose: String },
}

impl CheckError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            CheckError::UnknownPurpose { .. } => "unknown_purpose",
            CheckError::UnknownField { .. } => "unknown_field",
            CheckError::FieldNotAllowed { .. } => "field_not_allowed",
            CheckError::BadTest { .. } => "bad_test",
            CheckError::TraitNotAllowed { .. } => "trait_not_allowed",
            CheckError::UnmappedEvents { .. } => "unmapped_events",
            CheckError::EventsNotAllowed { .. } => "events_not_allowed",
            CheckError::UnknownSegment { .. } => "unknown_segment",
            CheckError::SegmentNotAllowed { .. } => "segment_not_allowed",
        }
    }
}

/// Checks that `rule`, for a segment or offer of `purpose`, names only data `purpose`
/// may use. `segments` gives the purpose of another segment by name (`None`: no such
/// segment). The first problem found (depth first, left to right) is returned.
pub fn check(
    rule: &Rule,
    purpose: &PurposeId,
    catalog: &Catalog,
    fields: &FieldCatalog,
    segments: &dyn Fn(&str) -> Option<PurposeId>,
) -> Result<(), CheckError> {
    let p = catalog
        .purpose(purpose)
        .ok_or_else(|| CheckError::UnknownPurpose {
            purpose: purpose.to_string(),
        })?;
    let cx = Cx {
        purpose,
        bit: p.bit,
        catalog,
        fields,
        segments,
    };
    cx.rule(rule)
}

struct Cx<'a> {
    purpose: &'a PurposeId,
    bit: u8,
    catalog: &'a Catalog,
    fields: &'a FieldCatalog,
    segments: &'a dyn Fn(&str) -> Option<PurposeId>,
}

impl Cx<'_> {
    fn rule(&self, rule: &Rule) -> Result<(), CheckError> {
        match rule {
            Rule::All(v) | Rule::Any(v) => v.iter().try_for_each(|r| self.rule(r)),
            Rule::Not(r) => self.rule(r),
            Rule::Cond(c) => self.cond(c),
        }
    }

    fn cond(&self, c: &Cond) -> Result<(), CheckError> {
        let purpose = || self.purpose.to_string();
        match c {
            Cond::Field { field, test } => {
                let spec =
                    self.fields
                        .get(field.as_str())
                        .ok_or_else(|| CheckError::UnknownField {
                            field: field.to_string(),
                        })?;
                if !spec.used_by(self.purpose) {
                    return Err(CheckError::FieldNotAllowed {
                        field: field.to_string(),
                        purpose: purpose(),
                    });
                }
                field_test(spec, test).map_err(|why| CheckError::BadTest {
                    field: field.to_string(),
                    why,
                })
            }
            Cond::Trait { name, test } => {
                let allowed = self
                    .catalog
                    .category_for(EventKind::Identify, None)
                    .is_some_and(|cat| self.catalog.covering(cat).contains(self.bit));
                if !allowed {
                    return Err(CheckError::TraitNotAllowed {
                        name: name.clone(),
                        purpose: purpose(),
                    });
                }
                if matches!(test, Test::Has(_)) {
                    return Err(CheckError::BadTest {
                        field: format!("trait.{name}"),
                        why: "has applies to many_of fields only".into(),
                    });
                }
                Ok(())
            }
            Cond::Usage { events, .. } | Cond::Seen { events, .. } => {
                let cat = self
                    .catalog
                    .category_for(events.kind, events.name.as_deref())
                    .ok_or_else(|| CheckError::UnmappedEvents {
                        events: events.to_string(),
                    })?;
                if !self.catalog.covering(cat).contains(self.bit) {
                    return Err(CheckError::EventsNotAllowed {
                        events: events.to_string(),
                        category: cat.to_string(),
                        purpose: purpose(),
                    });
                }
                Ok(())
            }
            Cond::Segment(name) => match (self.segments)(name) {
                None => Err(CheckError::UnknownSegment {
                    segment: name.clone(),
                }),
                Some(p) if p != *self.purpose => Err(CheckError::SegmentNotAllowed {
                    segment: name.clone(),
                    purpose: purpose(),
                }),
                Some(_) => Ok(()),
            },
        }
    }
}

/// Whether a test fits the field's kind; the reason names the rule, not a value.
fn field_test(spec: &FieldSpec, test: &Test) -> Result<(), String> {
    let kind = spec.kind.name();
    let value = |s: &Scalar| -> Result<(), String> {
        let input = match s {
            Scalar::Text(t) => FieldInput::Text(t),
            Scalar::Number(n) => FieldInput::Number(*n),
            Scalar::Bool(_) => return Err(format!("{kind} fields never hold true or false")),
        };
        spec.parse_value(input)
            .map(|_| ())
            .map_err(|e| format!("a value in the rule does not fit: {e}"))
    };
    match test {
        Test::Exists => Ok(()),
        Test::Has(item) => match &spec.kind {
            FieldKind::ManyOf { .. } => spec
                .parse_value(FieldInput::List(&[item.as_str()]))
                .map(|_| ())
                .map_err(|e| format!("a value in the rule does not fit: {e}")),
            _ => Err(format!("has applies to many_of fields, not {kind}")),
        },
        Test::Cmp(c, s) => {
            if c.is_order() && !matches!(spec.kind, FieldKind::Integer { .. } | FieldKind::Month) {
                return Err(format!(
                    "{} compares integer and month fields only, not {kind}",
                    c.symbol()
                ));
            }
            value(s)
        }
        Test::In(v) => v.iter().try_for_each(value),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::text::parse_text;
    use candor_core::field::{FieldName, FieldSpec};
    use candor_core::ids::CategoryId;
    use candor_core::purpose::{Category, EventRule, Notice, Purpose};
    use std::collections::BTreeMap;

    fn pid(s: &str) -> PurposeId {
        PurposeId::parse(s).unwrap()
    }

    fn purpose(id: &str, bit: u8, cats: &[&str]) -> Purpose {
        Purpose {
            id: pid(id),
            bit,
            title: id.into(),
            notice: Notice::new(1, format!("We use data for {id}.")),
            categories: cats.iter().map(|c| CategoryId::parse(c).unwrap()).collect(),
            retention_days: 30,
            recipients: vec![],
            sale_or_sharing: false,
            tcf_purposes: vec![],
            tcf_special_features: vec![],
            usnat_opt_outs: vec![],
            dpv: None,
            consent_mode: vec![],
            translations: BTreeMap::new(),
        }
    }

    /// personalization (bit 0) covers app usage and profile; ads_insights (bit 1) covers
    /// browsing only. Track events are app usage, except "Purchase" (unmapped); pages are
    /// browsing; identify is profile.
    pub fn catalog() -> Catalog {
        let cat = |s: &str| Category {
            id: CategoryId::parse(s).unwrap(),
            description: String::new(),
        };
        let rule = |kind, name: Option<&str>, c: &str| {
            (
                EventRule {
                    kind,
                    name: name.map(str::to_owned),
                },
                CategoryId::parse(c).unwrap(),
            )
        };
        Catalog::new(
            vec![
                purpose("personalization", 0, &["app_usage", "profile"]),
                purpose("ads_insights", 1, &["browsing"]),
            ],
            vec![cat("app_usage"), cat("browsing"), cat("profile")],
            vec![
                rule(EventKind::Track, None, "app_usage"),
                rule(EventKind::Page, None, "browsing"),
                rule(EventKind::Identify, None, "profile"),
            ],
        )
        .unwrap()
    }

    pub fn fields() -> FieldCatalog {
        let spec = |name: &str, label: &str, kind, purposes: &[&str]| {
            FieldSpec::new(
                FieldName::parse(name).unwrap(),
                label.into(),
                kind,
                purposes.iter().map(|p| pid(p)).collect(),
                false,
            )
            .unwrap()
        };
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        FieldCatalog::new(vec![
            spec(
                "age_band",
                "Age band",
                FieldKind::OneOf {
                    values: list(&["18-24", "25-34", "35-44"]),
                },
                &["personalization", "ads_insights"],
            ),
            spec(
                "interests",
                "Interests",
                FieldKind::ManyOf {
                    values: list(&["running", "cycling"]),
                },
                &["personalization"],
            ),
            spec(
                "shoe_size",
                "Shoe size",
                FieldKind::Integer { min: 30, max: 50 },
                &["personalization"],
            ),
            spec(
                "birth_month",
                "Birth month",
                FieldKind::Month,
                &["personalization"],
            ),
        ])
        .unwrap()
    }

    fn run(rule: &str, purpose: &str) -> Result<(), CheckError> {
        let segs = |name: &str| match name {
            "mine" => Some(pid("personalization")),
            "theirs" => Some(pid("ads_insights")),
            _ => None,
        };
        check(
            &parse_text(rule).unwrap(),
            &pid(purpose),
            &catalog(),
            &fields(),
            &segs,
        )
    }

    #[test]
    fn allowed_rules_pass() {
        for r in [
            r#"field.age_band = "25-34" and field.interests has "running""#,
            "field.shoe_size >= 42 and field.birth_month in [1, 2]",
            r#"field.age_band in ["18-24", "25-34"] or field.shoe_size = "42""#,
            r#"trait.plan = "gold""#,
            r#"days(track "App Session" where c = "x") in last 30 days >= 3"#,
            r#"segment "mine""#,
        ] {
            assert_eq!(run(r, "personalization"), Ok(()), "{r}");
        }
        assert_eq!(run(r#"seen(page) within 3 days"#, "ads_insights"), Ok(()));
    }

    #[test]
    fn refusals_name_field_events_and_purpose() {
        let cases = [
            ("field.nope exists", "personalization", "unknown_field", "unknown field nope"),
            (
                "field.shoe_size exists",
                "ads_insights",
                "field_not_allowed",
                "field shoe_size may not be used for purpose ads_insights",
            ),
            (r#"field.age_band has "x""#, "personalization", "bad_test", "field age_band: has applies to many_of fields, not one_of"),
            (r#"field.age_band > "18-24""#, "personalization", "bad_test", "field age_band: > compares integer and month fields only, not one_of"),
            (r#"field.age_band = "99""#, "personalization", "bad_test", "field age_band: a value in the rule does not fit: must be one of: 18-24, 25-34, 35-44"),
            ("field.shoe_size = 99", "personalization", "bad_test", "field shoe_size: a value in the rule does not fit: must be a whole number from 30 to 50"),
            ("field.shoe_size = true", "personalization", "bad_test", "field shoe_size: integer fields never hold true or false"),
            (r#"field.interests = "running""#, "personalization", "bad_test", "field interests: a value in the rule does not fit: expected a list of the listed values"),
            (r#"trait.plan = "gold""#, "ads_insights", "trait_not_allowed", "trait plan may not be used for purpose ads_insights"),
            (
                "count(track) in last 3 days > 1",
                "ads_insights",
                "events_not_allowed",
                "events track (data category app_usage) may not be used for purpose ads_insights",
            ),
            ("seen(screen) within 3 days", "personalization", "unmapped_events", "events screen are not mapped to a data category"),
            (r#"segment "theirs""#, "personalization", "segment_not_allowed", "segment theirs belongs to another purpose than personalization"),
            (r#"segment "ghost""#, "personalization", "unknown_segment", "unknown segment ghost"),
            ("field.age_band exists", "marketing", "unknown_purpose", "unknown purpose marketing"),
        ];
        for (rule, purpose, code, message) in cases {
            let e = run(rule, purpose).unwrap_err();
            assert_eq!(
                (e.code(), e.to_string()),
                (code, message.to_owned()),
                "{rule}"
            );
        }
    }
}
