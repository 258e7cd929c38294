//! A budget charge: whether a report's cost fits what is left of every budget it is
//! charged against (the advertiser's for the period, its lifetime cap, the operator's
//! cap across advertisers), in exact fixed-point arithmetic (see `Spend`).
//!
//! Each backend reads the budgets and sums under its locks and fills a [`Charge`]; the
//! decision is made here, once.

use crate::types::{BudgetLimit, Spend};
use crate::StoreError;

/// The budgets one report is charged against, each as (limit, spent before).
#[derive(Clone, Copy, Debug)]
pub struct Charge {
    pub period: (Spend, Spend),
    pub lifetime: Option<(Spend, Spend)>,
    pub total: Option<(Spend, Spend)>,
}

impl Charge {
    /// Checks `cost` against every budget; the period's total after it when all fit,
    /// else the first budget it would exceed (period, then lifetime, then total).
    pub fn check(&self, cost: Spend) -> Result<Spend, StoreError> {
        let after = charge(BudgetLimit::Period, self.period.0, self.period.1, cost)?;
        if let Some((budget, spent)) = self.lifetime {
            charge(BudgetLimit::Lifetime, budget, spent, cost)?;
        }
        if let Some((budget, spent)) = self.total {
            charge(BudgetLimit::Total, budget, spent, cost)?;
        }
        Ok(after)
    }
}

/// Checks a charge of `cost` on top of `spent` against `budget` (the `limit` kind);
/// returns the total after it. Refuses a negative cost (it would refund budget) and an
/// overflow.
pub fn charge(
    limit: BudgetLimit,
    budget: Spend,
    spent: Spend,
    cost: Spend,
) -> Result<Spend, StoreError> {
    if cost.epsilon_nano < 0 || cost.delta_atto < 0 {
        return Err(StoreError::Database(
            "a report's cost cannot be negative".into(),
        ));
    }
    match spent.checked_add(cost) {
        Some(after) if !after.exceeds(budget) => Ok(after),
        _ => Err(StoreError::Overspend {
            limit,
            budget,
            spent,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(e: i64, d: i64) -> Spend {
        Spend {
            epsilon_nano: e,
            delta_atto: d,
        }
    }

    fn charge(budget: Spend, spent: Spend, cost: Spend) -> Result<Spend, StoreError> {
        super::charge(BudgetLimit::Period, budget, spent, cost)
    }

    #[test]
    fn every_budget_must_fit_and_the_first_exceeded_is_named() {
        let c = Charge {
            period: (spend(1_000, 10), spend(100, 0)),
            lifetime: Some((spend(5_000, 10), spend(4_500, 0))),
            total: Some((spend(9_000, 10), spend(8_950, 0))),
        };
        assert_eq!(c.check(spend(50, 1)).unwrap(), spend(150, 1));
        let over = |c: Charge, cost| match c.check(cost) {
            Err(StoreError::Overspend { limit, .. }) => Some(limit),
            _ => None,
        };
        assert_eq!(over(c, spend(51, 0)), Some(BudgetLimit::Total));
        assert_eq!(over(c, spend(501, 0)), Some(BudgetLimit::Lifetime));
        assert_eq!(over(c, spend(901, 0)), Some(BudgetLimit::Period));
        assert_eq!(over(c, spend(0, 11)), Some(BudgetLimit::Period));
        let uncapped = Charge {
            lifetime: None,
            total: None,
            ..c
        };
        assert_eq!(uncapped.check(spend(900, 10)).unwrap(), spend(1_000, 10));
    }

    #[test]
    fn charges_are_checked_in_both_components_without_overflow() {
        let budget = spend(1_000, 10);
        assert_eq!(
            charge(budget, spend(900, 5), spend(100, 5)).unwrap(),
            budget
        );
        assert!(matches!(
            charge(budget, spend(900, 5), spend(101, 0)),
            Err(StoreError::Overspend { spent, .. }) if spent == spend(900, 5)
        ));
        assert!(matches!(
            charge(budget, spend(0, 10), spend(0, 1)),
            Err(StoreError::Overspend { .. })
        ));
        assert!(matches!(
            charge(spend(i64::MAX, i64::MAX), spend(i64::MAX, 0), spend(1, 0)),
            Err(StoreError::Overspend { .. })
        ));
        assert!(matches!(
            charge(budget, spend(0, 0), spend(-1, 0)),
            Err(StoreError::Database(_))
        ));
    }
}
