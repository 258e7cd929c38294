//! A budget charge: whether a report's cost fits what is left of an advertiser's
//! budget for the period, in exact fixed-point arithmetic (see `Spend`).

use crate::types::Spend;
use crate::StoreError;

/// Checks a charge of `cost` on top of `spent` against `budget`; returns the total
/// after it. Refuses a negative cost (it would refund budget) and an overflow.
pub fn charge(budget: Spend, spent: Spend, cost: Spend) -> Result<Spend, StoreError> {
    if cost.epsilon_nano < 0 || cost.delta_atto < 0 {
        return Err(StoreError::Database(
            "a report's cost cannot be negative".into(),
        ));
    }
    match spent.checked_add(cost) {
        Some(after) if !after.exceeds(budget) => Ok(after),
        _ => Err(StoreError::Overspend { budget, spent }),
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
