//! `[personalization]`, `[[offers]]` and `[loyalty]`: what a person gets back for their
//! data (issue 14). Parsed strictly like the rest of the config; the built-in program
//! (`default-program.toml`) applies when the config defines none and the catalog has
//! the purposes it needs.
//!
//! Offer rules are parsed here (syntax and limits); whether the data they name may be
//! used for personalization needs the store's purpose bits, so the application checks
//! them when it starts (`candor_segments::check`).

use super::ConfigError;
use candor_core::field::FieldCatalog;
use candor_core::PurposeId;
use candor_loyalty::{
    Award, Condition, Decimal, EarnRule, Expiry, FieldBonus, OnLeave, Op, Program, ProgramConfig,
    Reward, RuleId, Tier, Value,
};
use candor_segments::Offer;
use serde::Deserialize;

pub const DEFAULT_PROGRAM: &str = include_str!("../default-program.toml");

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPersonalization {
    purpose: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOffer {
    id: String,
    placement: String,
    title: String,
    #[serde(default)]
    priority: i32,
    /// The rule in the segment language's text form; absent: a default offer.
    when: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoyalty {
    #[serde(default = "yes")]
    enabled: bool,
    purpose: Option<String>,
    notice: Option<String>,
    financial_incentive: Option<String>,
    currency: Option<String>,
    /// The value of one point in the currency, as decimal text ("0.01").
    point_value: Option<String>,
    tier_window_days: Option<u16>,
    /// Absent: points never expire.
    expire_after_days: Option<u16>,
    /// "forfeit" or "keep".
    on_leave: Option<String>,
    #[serde(default)]
    earning: Vec<RawEarn>,
    #[serde(default)]
    field_bonus: Vec<RawBonus>,
    #[serde(default)]
    tiers: Vec<RawTier>,
    #[serde(default)]
    rewards: Vec<RawReward>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEarn {
    id: String,
    title: String,
    event: String,
    points: Option<i64>,
    points_per_amount: Option<RawPerAmount>,
    #[serde(default)]
    conditions: Vec<RawCondition>,
    cap_per_day: Option<i64>,
    cap_total: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerAmount {
    property: String,
    points_per_unit: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    property: String,
    /// eq ne lt le gt ge in
    op: String,
    value: toml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBonus {
    field: String,
    points: i64,
    title: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    id: String,
    title: String,
    min_points: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReward {
    id: String,
    title: String,
    cost: i64,
    stock: Option<i64>,
}

/// The built-in program's sections.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    personalization: RawPersonalization,
    offers: Vec<RawOffer>,
    loyalty: RawLoyalty,
}

#[derive(Clone, Debug)]
pub struct PersonalizationSettings {
    pub purpose: PurposeId,
    pub offers: Vec<Offer>,
    /// The offers are the built-in ones: dropped quietly (rather than refused) when the
    /// operator's own catalog or fields do not allow them.
    pub offers_are_default: bool,
}

#[derive(Clone, Debug)]
pub struct LoyaltySettings {
    pub purpose: PurposeId,
    pub program: Program,
}

fn invalid(key: &str, m: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("{key}: {m}"))
}

fn defaults() -> Result<RawDefaults, ConfigError> {
    toml::from_str(DEFAULT_PROGRAM)
        .map_err(|e| ConfigError::Invalid(format!("<built-in program>: {e}")))
}

pub(super) fn personalization(
    raw: Option<RawPersonalization>,
    offers: Option<Vec<RawOffer>>,
    purposes: &[PurposeId],
) -> Result<PersonalizationSettings, ConfigError> {
    let d = defaults()?;
    let purpose = raw
        .and_then(|r| r.purpose)
        .or(d.personalization.purpose)
        .unwrap_or_else(|| "personalization".into());
    let purpose = PurposeId::parse(&purpose).map_err(|e| invalid("personalization.purpose", e))?;
    let (raw_offers, offers_are_default) = match offers {
        Some(o) => (o, false),
        None => (d.offers, true),
    };
    if !offers_are_default && !purposes.contains(&purpose) {
        return Err(invalid(
            "personalization.purpose",
            format!("{purpose} is not one of the catalog's purposes"),
        ));
    }
    let mut out = Vec::new();
    for o in raw_offers {
        let key = format!("offers.{}", o.id);
        let when = o
            .when
            .as_deref()
            .map(candor_segments::parse_text)
            .transpose()
            .map_err(|e| invalid(&format!("{key}.when"), e))?;
        out.push(Offer {
            id: o.id,
            placement: o.placement,
            title: o.title,
            priority: o.priority,
            when,
        });
    }
    // Ids, placements and defaults are the catalog's to check.
    candor_segments::OfferCatalog::new(out.clone()).map_err(|e| invalid("offers", e))?;
    Ok(PersonalizationSettings {
        purpose,
        offers: out,
        offers_are_default,
    })
}

pub(super) fn loyalty(
    raw: Option<RawLoyalty>,
    purposes: &[PurposeId],
    fields: &FieldCatalog,
) -> Result<Option<LoyaltySettings>, ConfigError> {
    let (raw, default) = match raw {
        Some(r) => (r, false),
        None => (defaults()?.loyalty, true),
    };
    if !raw.enabled {
        return Ok(None);
    }
    let purpose = raw.purpose.clone().unwrap_or_else(|| "loyalty".into());
    let purpose = PurposeId::parse(&purpose).map_err(|e| invalid("loyalty.purpose", e))?;
    if !purposes.contains(&purpose) {
        if default {
            // The operator's own catalog has no loyalty purpose: no program.
            return Ok(None);
        }
        return Err(invalid(
            "loyalty.purpose",
            format!("{purpose} is not one of the catalog's purposes"),
        ));
    }
    let bonus_fields_known = raw
        .field_bonus
        .iter()
        .all(|b| fields.get(&b.field).is_some());
    if !bonus_fields_known {
        if default {
            return Ok(None);
        }
        let b = raw
            .field_bonus
            .iter()
            .find(|b| fields.get(&b.field).is_none());
        return Err(invalid(
            "loyalty.field_bonus",
            format!("no field {:?}", b.map(|b| b.field.as_str()).unwrap_or("")),
        ));
    }
    let program = program(raw)?;
    Ok(Some(LoyaltySettings { purpose, program }))
}

fn decimal(key: &str, s: &str) -> Result<Decimal, ConfigError> {
    Decimal::parse(s).map_err(|e| invalid(key, e))
}

fn value(key: &str, v: &toml::Value) -> Result<Value, ConfigError> {
    Ok(match v {
        toml::Value::String(s) => Value::Text(s.clone()),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Integer(n) => Value::Number(Decimal::from_int(*n)),
        toml::Value::Float(_) => {
            return Err(invalid(
                key,
                "write fractional numbers as text (\"12.50\"), so they are exact",
            ))
        }
        toml::Value::Array(items) => Value::List(
            items
                .iter()
                .map(|i| value(key, i))
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(invalid(
                key,
                "a condition compares with text, a number or a list",
            ))
        }
    })
}

fn program(raw: RawLoyalty) -> Result<Program, ConfigError> {
    let mut earning = Vec::new();
    for e in raw.earning {
        let key = format!("loyalty.earning.{}", e.id);
        let award = match (e.points, e.points_per_amount) {
            (Some(p), None) => Award::PerEvent(p),
            (None, Some(a)) => Award::PerAmount {
                points_per_unit: decimal(&format!("{key}.points_per_amount"), &a.points_per_unit)?,
                property: a.property,
            },
            _ => return Err(invalid(&key, "give either points or points_per_amount")),
        };
        let mut conditions = Vec::new();
        for c in e.conditions {
            let op = match c.op.as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "lt" => Op::Lt,
                "le" => Op::Le,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "in" => Op::In,
                other => {
                    return Err(invalid(
                        &format!("{key}.conditions"),
                        format!("op must be eq, ne, lt, le, gt, ge or in, not {other:?}"),
                    ))
                }
            };
            conditions.push(Condition {
                value: value(&format!("{key}.conditions"), &c.value)?,
                property: c.property,
                op,
            });
        }
        earning.push(EarnRule {
            id: RuleId::parse(&e.id).map_err(|err| invalid(&key, err))?,
            title: e.title,
            event: e.event,
            conditions,
            award,
            cap_per_day: e.cap_per_day,
            cap_total: e.cap_total,
        });
    }
    let point_value = decimal(
        "loyalty.point_value",
        raw.point_value.as_deref().unwrap_or("0.01"),
    )?;
    let point_value_millis = point_value
        .mul_floor(Decimal::from_int(1000))
        .ok_or_else(|| invalid("loyalty.point_value", "out of range"))?;
    let on_leave = match raw.on_leave.as_deref().unwrap_or("forfeit") {
        "forfeit" => OnLeave::Forfeit,
        "keep" => OnLeave::Keep,
        other => {
            return Err(invalid(
                "loyalty.on_leave",
                format!("\"forfeit\" or \"keep\", not {other:?}"),
            ))
        }
    };
    let config = ProgramConfig {
        earning,
        field_bonuses: raw
            .field_bonus
            .into_iter()
            .map(|b| FieldBonus {
                field: b.field,
                points: b.points,
                title: b.title,
            })
            .collect(),
        tiers: raw
            .tiers
            .into_iter()
            .map(|t| Tier {
                id: t.id,
                title: t.title,
                min_points: t.min_points,
            })
            .collect(),
        tier_window_days: raw.tier_window_days.unwrap_or(365),
        rewards: raw
            .rewards
            .into_iter()
            .map(|r| Reward {
                id: r.id,
                title: r.title,
                cost: r.cost,
                initial_stock: r.stock,
            })
            .collect(),
        expiry: raw
            .expire_after_days
            .map_or(Expiry::Never, Expiry::AfterDays),
        on_leave,
        point_value_millis,
        currency: raw.currency.unwrap_or_else(|| "EUR".into()),
        notice: raw.notice.unwrap_or_default(),
        financial_incentive: raw.financial_incentive,
    };
    Program::new(config).map_err(|e| invalid("loyalty", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<PurposeId> {
        v.iter().map(|p| PurposeId::parse(p).unwrap()).collect()
    }

    #[test]
    fn the_built_in_program_parses() {
        let p = personalization(None, None, &ids(&["personalization"])).unwrap();
        assert!(p.offers_are_default);
        assert!(p.offers.iter().any(|o| o.when.is_none()));
        let l = loyalty(
            None,
            &ids(&["loyalty"]),
            &FieldCatalog::new(vec![]).unwrap(),
        )
        .unwrap();
        // The default bonuses name default fields: without them there is no program.
        assert!(l.is_none());
    }

    #[test]
    fn a_malformed_program_is_refused_naming_the_key() {
        let raw: RawLoyalty = toml::from_str(
            r#"
            [[earning]]
            id = "orders"
            title = "Orders"
            event = "Order Completed"
            "#,
        )
        .unwrap();
        let e = loyalty(
            Some(raw),
            &ids(&["loyalty"]),
            &FieldCatalog::new(vec![]).unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("loyalty.earning.orders"), "{e}");
        let bad_rule: Vec<RawOffer> = vec![RawOffer {
            id: "x".into(),
            placement: "home".into(),
            title: "X".into(),
            priority: 0,
            when: Some("field.age_band ==".into()),
        }];
        let e = personalization(None, Some(bad_rule), &ids(&["personalization"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("offers.x.when"), "{e}");
    }
}
