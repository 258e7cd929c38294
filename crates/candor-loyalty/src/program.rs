//! The loyalty program as the operator configures it, checked once.
//!
//! [`ProgramConfig`] is what the operator writes (the server builds it from the config
//! file); [`Program::new`] checks every rule of it and is the only way to get a
//! [`Program`], so the functions that decide earnings, tiers and wording never meet an
//! unchecked configuration (parse, don't validate). Errors name the rule, tier or reward
//! by its id and never carry a person's data: a configuration holds none.

use crate::decimal::Decimal;
use candor_core::field::FieldName;
use candor_core::ids::PurposeId;
use std::collections::HashSet;
use std::fmt;
use thiserror::Error;

/// The most points one event, one field bonus or one adjustment may be worth. An amount
/// that would earn more is treated as malformed and earns nothing.
pub const MAX_POINTS_PER_EVENT: i64 = 1_000_000;
/// Bounds of the rolling window tiers are computed over, in days.
pub const TIER_WINDOW_DAYS: std::ops::RangeInclusive<u16> = 1..=730;
/// Bounds of [`Expiry::AfterDays`].
pub const EXPIRY_DAYS: std::ops::RangeInclusive<u16> = 1..=3650;
/// Most values an `In` condition may list.
pub const MAX_LIST: usize = 100;

/// An earning rule's id: a slug (`order_completed`), stable across config edits because
/// the store counts caps per rule id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(String);

impl RuleId {
    /// The same slug rule as every other id: 1 to 64 of `a-z`, `0-9`, `_`, starting with a
    /// letter.
    pub fn parse(value: &str) -> Result<Self, ProgramError> {
        if is_slug(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(ProgramError::BadId {
                kind: "earning rule",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RuleId({})", self.0)
    }
}

fn is_slug(s: &str) -> bool {
    PurposeId::parse(s).is_ok()
}

/// What the operator configures. Build a [`Program`] from it with [`Program::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramConfig {
    pub earning: Vec<EarnRule>,
    pub field_bonuses: Vec<FieldBonus>,
    /// Ascending by `min_points`, the first at 0.
    pub tiers: Vec<Tier>,
    /// Tiers count the points earned in this many UTC days, today included.
    pub tier_window_days: u16,
    pub rewards: Vec<Reward>,
    pub expiry: Expiry,
    pub on_leave: OnLeave,
    /// The value of one point in thousandths of the currency unit, for the liability figure.
    pub point_value_millis: i64,
    /// The currency of amounts and of the point value, e.g. `EUR`.
    pub currency: String,
    /// The program's notice (its terms in plain words).
    pub notice: String,
    /// The text of the financial-incentive notice (California), shown when `Some`.
    pub financial_incentive: Option<String>,
}

/// One way to earn points: an event, conditions on its properties, and what it is worth.
#[derive(Debug, Clone, PartialEq)]
pub struct EarnRule {
    pub id: RuleId,
    pub title: String,
    /// The track event's name, e.g. `Order Completed` (compared exactly).
    pub event: String,
    /// All must hold.
    pub conditions: Vec<Condition>,
    pub award: Award,
    /// Most points the rule gives one subject in one UTC day.
    pub cap_per_day: Option<i64>,
    /// Most points the rule gives one subject, ever.
    pub cap_total: Option<i64>,
}

/// A test on one property of the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub property: String,
    pub op: Op,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// The property equals one of a [`Value::List`].
    In,
}

/// What a condition compares against.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(Decimal),
    Bool(bool),
    /// Only with [`Op::In`]; its items are not lists.
    List(Vec<Value>),
}

/// What a matching event earns.
#[derive(Debug, Clone, PartialEq)]
pub enum Award {
    /// A fixed number of points.
    PerEvent(i64),
    /// `floor(amount × points_per_unit)`, the amount read from `property`.
    PerAmount {
        property: String,
        points_per_unit: Decimal,
    },
}

/// Points for volunteering a field, once per subject per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldBonus {
    /// A field name of the operator's field catalog, e.g. `shoe_size`.
    pub field: String,
    pub points: i64,
    /// What the person is asked, e.g. "Tell us your shoe size".
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub id: String,
    pub title: String,
    pub min_points: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reward {
    pub id: String,
    pub title: String,
    pub cost: i64,
    /// `None` is unlimited.
    pub initial_stock: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    /// Each earned lot expires this many days after the UTC day it was earned
    /// (see [`crate::ledger`]).
    AfterDays(u16),
}

/// What happens to the balance when a person leaves the program or is erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLeave {
    Forfeit,
    Keep,
}

/// Why a configuration is refused. Each names the rule, tier, reward or setting.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProgramError {
    #[error(
        "every {kind} id must be 1 to 64 characters of a-z, 0-9 and '_', starting with a letter"
    )]
    BadId { kind: &'static str },
    #[error("{kind} {id:?} is defined twice")]
    DuplicateId { kind: &'static str, id: String },
    #[error("{kind} {id:?} needs a title")]
    EmptyTitle { kind: &'static str, id: String },
    #[error("earning rule {id:?} needs an event name")]
    EmptyEvent { id: String },
    #[error("{kind} {id:?} must be worth 1 to {MAX_POINTS_PER_EVENT} points")]
    BadPoints { kind: &'static str, id: String },
    #[error("earning rule {id:?}: caps must be positive")]
    BadCap { id: String },
    #[error("earning rule {id:?}: condition {index} is not valid ({why})")]
    BadCondition {
        id: String,
        index: usize,
        why: &'static str,
    },
    #[error("the program needs at least one tier")]
    NoTiers,
    #[error("the first tier must start at 0 points")]
    FirstTierNotZero,
    #[error("tier {id:?} must need more points than the tier before it")]
    TiersNotAscending { id: String },
    #[error("the tier window must be 1 to 730 days")]
    BadTierWindow,
    #[error("reward {id:?} must cost at least 1 point")]
    BadCost { id: String },
    #[error("reward {id:?}: stock cannot be negative")]
    NegativeStock { id: String },
    #[error("points must expire after 1 to 3650 days")]
    BadExpiry,
    #[error("the value of a point cannot be negative")]
    NegativePointValue,
    #[error("the program needs a {what}")]
    MissingText { what: &'static str },
}

impl ProgramError {
    /// A stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadId { .. } => "loyalty_bad_id",
            Self::DuplicateId { .. } => "loyalty_duplicate_id",
            Self::EmptyTitle { .. } => "loyalty_empty_title",
            Self::EmptyEvent { .. } => "loyalty_empty_event",
            Self::BadPoints { .. } => "loyalty_bad_points",
            Self::BadCap { .. } => "loyalty_bad_cap",
            Self::BadCondition { .. } => "loyalty_bad_condition",
            Self::NoTiers => "loyalty_no_tiers",
            Self::FirstTierNotZero => "loyalty_first_tier_not_zero",
            Self::TiersNotAscending { .. } => "loyalty_tiers_not_ascending",
            Self::BadTierWindow => "loyalty_bad_tier_window",
            Self::BadCost { .. } => "loyalty_bad_cost",
            Self::NegativeStock { .. } => "loyalty_negative_stock",
            Self::BadExpiry => "loyalty_bad_expiry",
            Self::NegativePointValue => "loyalty_negative_point_value",
            Self::MissingText { .. } => "loyalty_missing_text",
        }
    }
}

/// A checked loyalty program. Read its settings with [`Program::config`].
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    config: ProgramConfig,
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn points_ok(p: i64) -> bool {
    (1..=MAX_POINTS_PER_EVENT).contains(&p)
}

fn unique<'a>(
    kind: &'static str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<(), ProgramError> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(ProgramError::DuplicateId {
                kind,
                id: id.to_owned(),
            });
        }
    }
    Ok(())
}

fn check_condition(id: &str, index: usize, c: &Condition) -> Result<(), ProgramError> {
    let bad = |why| ProgramError::BadCondition {
        id: id.to_owned(),
        index,
        why,
    };
    if blank(&c.property) {
        return Err(bad("it names no property"));
    }
    match (c.op, &c.value) {
        (Op::In, Value::List(items)) => {
            if items.is_empty() || items.len() > MAX_LIST {
                return Err(bad("a list needs 1 to 100 values"));
            }
            if items.iter().any(|v| matches!(v, Value::List(_))) {
                return Err(bad("a list cannot hold lists"));
            }
        }
        (Op::In, _) => return Err(bad("'in' needs a list")),
        (_, Value::List(_)) => return Err(bad("only 'in' takes a list")),
        (Op::Lt | Op::Le | Op::Gt | Op::Ge, v) if !matches!(v, Value::Number(_)) => {
            return Err(bad("an ordering compares numbers only"));
        }
        _ => {}
    }
    Ok(())
}

fn check_rule(rule: &EarnRule) -> Result<(), ProgramError> {
    let id = rule.id.as_str();
    if blank(&rule.title) {
        return Err(ProgramError::EmptyTitle {
            kind: "earning rule",
            id: id.to_owned(),
        });
    }
    if blank(&rule.event) {
        return Err(ProgramError::EmptyEvent { id: id.to_owned() });
    }
    match &rule.award {
        Award::PerEvent(p) if !points_ok(*p) => {
            return Err(ProgramError::BadPoints {
                kind: "earning rule",
                id: id.to_owned(),
            })
        }
        Award::PerAmount {
            property,
            points_per_unit,
        } => {
            if blank(property) {
                return Err(ProgramError::BadCondition {
                    id: id.to_owned(),
                    index: 0,
                    why: "a per-amount award names no amount property",
                });
            }
            if !points_per_unit.is_positive() {
                return Err(ProgramError::BadPoints {
                    kind: "earning rule",
                    id: id.to_owned(),
                });
            }
        }
        Award::PerEvent(_) => {}
    }
    if rule.cap_per_day.is_some_and(|c| c <= 0) || rule.cap_total.is_some_and(|c| c <= 0) {
        return Err(ProgramError::BadCap { id: id.to_owned() });
    }
    for (i, c) in rule.conditions.iter().enumerate() {
        check_condition(id, i, c)?;
    }
    Ok(())
}

impl Program {
    /// Checks the configuration: ids are unique slugs, titles are not blank, points, caps
    /// and costs are positive (points at most [`MAX_POINTS_PER_EVENT`]), stock is not
    /// negative, tiers start at 0 and strictly ascend, the tier window is 1..=730 days,
    /// `AfterDays` is 1..=3650, conditions are well-typed (orderings compare numbers, `In`
    /// and only `In` takes a non-empty flat list), and the currency and notice are given.
    pub fn new(config: ProgramConfig) -> Result<Self, ProgramError> {
        for rule in &config.earning {
            check_rule(rule)?;
        }
        unique("earning rule", config.earning.iter().map(|r| r.id.as_str()))?;

        for b in &config.field_bonuses {
            if FieldName::parse(&b.field).is_err() {
                return Err(ProgramError::BadId { kind: "field" });
            }
            if blank(&b.title) {
                return Err(ProgramError::EmptyTitle {
                    kind: "field bonus",
                    id: b.field.clone(),
                });
            }
            if !points_ok(b.points) {
                return Err(ProgramError::BadPoints {
                    kind: "field bonus",
                    id: b.field.clone(),
                });
            }
        }
        unique(
            "field bonus",
            config.field_bonuses.iter().map(|b| b.field.as_str()),
        )?;

        let first = config.tiers.first().ok_or(ProgramError::NoTiers)?;
        if first.min_points != 0 {
            return Err(ProgramError::FirstTierNotZero);
        }
        for t in &config.tiers {
            if !is_slug(&t.id) {
                return Err(ProgramError::BadId { kind: "tier" });
            }
            if blank(&t.title) {
                return Err(ProgramError::EmptyTitle {
                    kind: "tier",
                    id: t.id.clone(),
                });
            }
        }
        for pair in config.tiers.windows(2) {
            if let [a, b] = pair {
                if b.min_points <= a.min_points {
                    return Err(ProgramError::TiersNotAscending { id: b.id.clone() });
                }
            }
        }
        unique("tier", config.tiers.iter().map(|t| t.id.as_str()))?;
        if !TIER_WINDOW_DAYS.contains(&config.tier_window_days) {
            return Err(ProgramError::BadTierWindow);
        }

        for r in &config.rewards {
            if !is_slug(&r.id) {
                return Err(ProgramError::BadId { kind: "reward" });
            }
            if blank(&r.title) {
                return Err(ProgramError::EmptyTitle {
                    kind: "reward",
                    id: r.id.clone(),
                });
            }
            if r.cost <= 0 {
                return Err(ProgramError::BadCost { id: r.id.clone() });
            }
            if r.initial_stock.is_some_and(|s| s < 0) {
                return Err(ProgramError::NegativeStock { id: r.id.clone() });
            }
        }
        unique("reward", config.rewards.iter().map(|r| r.id.as_str()))?;

        if let Expiry::AfterDays(d) = config.expiry {
            if !EXPIRY_DAYS.contains(&d) {
                return Err(ProgramError::BadExpiry);
            }
        }
        if config.point_value_millis < 0 {
            return Err(ProgramError::NegativePointValue);
        }
        if blank(&config.currency) {
            return Err(ProgramError::MissingText { what: "currency" });
        }
        if blank(&config.notice) {
            return Err(ProgramError::MissingText { what: "notice" });
        }
        if config.financial_incentive.as_deref().is_some_and(blank) {
            return Err(ProgramError::MissingText {
                what: "financial-incentive notice text (or none)",
            });
        }
        Ok(Self { config })
    }

    /// The checked settings.
    pub fn config(&self) -> &ProgramConfig {
        &self.config
    }

    /// The bonus for volunteering `field`, if the program offers one.
    pub fn field_bonus(&self, field: &str) -> Option<&FieldBonus> {
        self.config.field_bonuses.iter().find(|b| b.field == field)
    }

    /// The reward with this id.
    pub fn reward(&self, id: &str) -> Option<&Reward> {
        self.config.rewards.iter().find(|r| r.id == id)
    }

    /// The earning rule with this id.
    pub fn rule(&self, id: &str) -> Option<&EarnRule> {
        self.config.earning.iter().find(|r| r.id.as_str() == id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rule(id: &str, event: &str, points: i64) -> EarnRule {
        EarnRule {
            id: RuleId::parse(id).unwrap(),
            title: format!("Rule {id}"),
            event: event.to_owned(),
            conditions: vec![],
            award: Award::PerEvent(points),
            cap_per_day: None,
            cap_total: None,
        }
    }

    pub(crate) fn tier(id: &str, min: i64) -> Tier {
        Tier {
            id: id.to_owned(),
            title: id.to_uppercase(),
            min_points: min,
        }
    }

    pub(crate) fn config() -> ProgramConfig {
        ProgramConfig {
            earning: vec![rule("order", "Order Completed", 10)],
            field_bonuses: vec![FieldBonus {
                field: "shoe_size".into(),
                points: 50,
                title: "Tell us your shoe size".into(),
            }],
            tiers: vec![tier("bronze", 0), tier("silver", 500), tier("gold", 2000)],
            tier_window_days: 365,
            rewards: vec![Reward {
                id: "coffee".into(),
                title: "A free coffee".into(),
                cost: 300,
                initial_stock: Some(10),
            }],
            expiry: Expiry::AfterDays(365),
            on_leave: OnLeave::Forfeit,
            point_value_millis: 10,
            currency: "EUR".into(),
            notice: "Our loyalty program".into(),
            financial_incentive: None,
        }
    }

    fn code_of(edit: impl FnOnce(&mut ProgramConfig)) -> &'static str {
        let mut c = config();
        edit(&mut c);
        Program::new(c).unwrap_err().code()
    }

    #[test]
    fn a_good_config_is_accepted() {
        let p = Program::new(config()).unwrap();
        assert_eq!(p.field_bonus("shoe_size").unwrap().points, 50);
        assert!(p.field_bonus("hat_size").is_none());
        assert_eq!(p.reward("coffee").unwrap().cost, 300);
        assert_eq!(p.rule("order").unwrap().event, "Order Completed");
    }

    #[test]
    fn rule_ids_are_slugs() {
        assert!(RuleId::parse("order_2").is_ok());
        for bad in ["", "Order", "2order", "or-der", &"a".repeat(65)] {
            assert_eq!(RuleId::parse(bad).unwrap_err().code(), "loyalty_bad_id");
        }
    }

    #[test]
    fn each_rule_of_the_config_is_checked() {
        assert_eq!(
            code_of(|c| c.earning.push(rule("order", "X", 1))),
            "loyalty_duplicate_id"
        );
        assert_eq!(
            code_of(|c| c.earning[0].title = " ".into()),
            "loyalty_empty_title"
        );
        assert_eq!(
            code_of(|c| c.earning[0].event = String::new()),
            "loyalty_empty_event"
        );
        assert_eq!(
            code_of(|c| c.earning[0].award = Award::PerEvent(0)),
            "loyalty_bad_points"
        );
        assert_eq!(
            code_of(|c| c.earning[0].award = Award::PerEvent(MAX_POINTS_PER_EVENT + 1)),
            "loyalty_bad_points"
        );
        assert_eq!(
            code_of(|c| c.earning[0].award = Award::PerAmount {
                property: "total".into(),
                points_per_unit: Decimal::ZERO
            }),
            "loyalty_bad_points"
        );
        assert_eq!(
            code_of(|c| c.earning[0].cap_per_day = Some(0)),
            "loyalty_bad_cap"
        );
        assert_eq!(
            code_of(|c| c.earning[0].cap_total = Some(-5)),
            "loyalty_bad_cap"
        );
        assert_eq!(
            code_of(|c| c.field_bonuses[0].field = "Shoe Size".into()),
            "loyalty_bad_id"
        );
        assert_eq!(
            code_of(|c| c.field_bonuses.push(c.field_bonuses[0].clone())),
            "loyalty_duplicate_id"
        );
        assert_eq!(
            code_of(|c| c.field_bonuses[0].points = -1),
            "loyalty_bad_points"
        );
        assert_eq!(code_of(|c| c.tiers.clear()), "loyalty_no_tiers");
        assert_eq!(
            code_of(|c| c.tiers[0].min_points = 1),
            "loyalty_first_tier_not_zero"
        );
        assert_eq!(
            code_of(|c| c.tiers[2].min_points = 500),
            "loyalty_tiers_not_ascending"
        );
        assert_eq!(
            code_of(|c| c.tiers[1].id = "gold".into()),
            "loyalty_duplicate_id"
        );
        assert_eq!(
            code_of(|c| c.tier_window_days = 0),
            "loyalty_bad_tier_window"
        );
        assert_eq!(
            code_of(|c| c.tier_window_days = 731),
            "loyalty_bad_tier_window"
        );
        assert_eq!(code_of(|c| c.rewards[0].cost = 0), "loyalty_bad_cost");
        assert_eq!(
            code_of(|c| c.rewards[0].initial_stock = Some(-1)),
            "loyalty_negative_stock"
        );
        assert_eq!(
            code_of(|c| c.rewards[0].id = "free coffee".into()),
            "loyalty_bad_id"
        );
        assert_eq!(
            code_of(|c| c.expiry = Expiry::AfterDays(0)),
            "loyalty_bad_expiry"
        );
        assert_eq!(
            code_of(|c| c.expiry = Expiry::AfterDays(3651)),
            "loyalty_bad_expiry"
        );
        assert_eq!(
            code_of(|c| c.point_value_millis = -1),
            "loyalty_negative_point_value"
        );
        assert_eq!(code_of(|c| c.notice = "".into()), "loyalty_missing_text");
        assert_eq!(
            code_of(|c| c.financial_incentive = Some(" ".into())),
            "loyalty_missing_text"
        );
    }

    #[test]
    fn boundaries_are_accepted() {
        let mut c = config();
        c.tier_window_days = 730;
        c.expiry = Expiry::AfterDays(3650);
        c.rewards[0].initial_stock = Some(0);
        c.earning[0].award = Award::PerEvent(MAX_POINTS_PER_EVENT);
        assert!(Program::new(c).is_ok());
        let mut c = config();
        c.tier_window_days = 1;
        c.expiry = Expiry::AfterDays(1);
        c.tiers.truncate(1);
        assert!(Program::new(c).is_ok());
    }

    #[test]
    fn conditions_are_well_typed() {
        let with = |op, value| {
            let mut c = config();
            c.earning[0].conditions.push(Condition {
                property: "store".into(),
                op,
                value,
            });
            Program::new(c)
        };
        let text = || Value::Text("online".into());
        assert!(with(Op::Eq, text()).is_ok());
        assert!(with(Op::Ge, Value::Number(Decimal::from_int(5))).is_ok());
        assert!(with(Op::In, Value::List(vec![text(), Value::Bool(true)])).is_ok());
        let err = with(Op::Lt, text()).unwrap_err();
        assert_eq!(err.code(), "loyalty_bad_condition");
        assert!(err.to_string().contains("\"order\""), "{err}");
        assert!(with(Op::In, text()).is_err());
        assert!(with(Op::Eq, Value::List(vec![text()])).is_err());
        assert!(with(Op::In, Value::List(vec![])).is_err());
        assert!(with(Op::In, Value::List(vec![Value::List(vec![text()])])).is_err());
    }
}
