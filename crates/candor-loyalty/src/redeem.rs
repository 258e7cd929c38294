//! Whether a reward may be redeemed now, decided without I/O.
//!
//! The store redeems inside its transaction (balance and stock read and changed
//! atomically, so two redemptions never both take the last point or the last item); it
//! asks this function with the figures it read there, so the rule and its error codes are
//! the same for every backend and the server can say exactly what went wrong.

use crate::program::{Program, Reward};
use thiserror::Error;

/// Why a redemption is refused. Messages name the reward, never the person.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RedeemError {
    #[error("there is no such reward")]
    UnknownReward,
    #[error("not enough points for reward {reward:?}")]
    NotEnoughPoints { reward: String },
    #[error("reward {reward:?} is out of stock")]
    OutOfStock { reward: String },
}

impl RedeemError {
    /// A stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownReward => "loyalty_unknown_reward",
            Self::NotEnoughPoints { .. } => "loyalty_not_enough_points",
            Self::OutOfStock { .. } => "loyalty_out_of_stock",
        }
    }
}

impl Program {
    /// The reward `reward_id`, if a subject with `balance` points may redeem it while
    /// `redeemed` of it (net of reversals, all subjects) have been redeemed so far: the
    /// balance covers its cost and, for a limited reward, `initial_stock − redeemed ≥ 1`.
    pub fn check_redeem(
        &self,
        reward_id: &str,
        balance: i64,
        redeemed: i64,
    ) -> Result<&Reward, RedeemError> {
        let reward = self.reward(reward_id).ok_or(RedeemError::UnknownReward)?;
        if let Some(stock) = reward.initial_stock {
            if stock.saturating_sub(redeemed.max(0)) < 1 {
                return Err(RedeemError::OutOfStock {
                    reward: reward.id.clone(),
                });
            }
        }
        if balance < reward.cost {
            return Err(RedeemError::NotEnoughPoints {
                reward: reward.id.clone(),
            });
        }
        Ok(reward)
    }
}

#[cfg(test)]
mod tests {
    use crate::program::tests::config;
    use crate::program::Program;

    #[test]
    fn redemption_needs_the_points_and_the_stock() {
        // coffee costs 300, 10 in stock
        let p = Program::new(config()).unwrap();
        assert_eq!(p.check_redeem("coffee", 300, 9).unwrap().id, "coffee");
        let code = |r: &str, b, n| p.check_redeem(r, b, n).unwrap_err().code();
        assert_eq!(code("coffee", 299, 0), "loyalty_not_enough_points");
        assert_eq!(code("coffee", 1000, 10), "loyalty_out_of_stock");
        assert_eq!(code("tea", 1000, 0), "loyalty_unknown_reward");
        let mut c = config();
        c.rewards[0].initial_stock = None;
        let unlimited = Program::new(c).unwrap();
        assert!(unlimited.check_redeem("coffee", 300, i64::MAX).is_ok());
        let mut c = config();
        c.rewards[0].initial_stock = Some(0);
        let none = Program::new(c).unwrap();
        assert_eq!(
            none.check_redeem("coffee", 300, 0).unwrap_err().code(),
            "loyalty_out_of_stock"
        );
    }
}
