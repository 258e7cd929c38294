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
            Scalar::Bool(_) => return Err(format!("a {kind} field never holds true or false")),
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
