//! Tiers: which tier a member is in and how far to the next.
//!
//! A tier follows the points *earned* in the rolling window ([`crate::earned_in_window`]),
//! not the balance, so spending points on a reward never costs anyone their tier. Tiers
//! are checked to ascend strictly from 0, so every count of points falls in exactly one.

use crate::program::{Program, Tier};

/// Where a member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierStatus<'a> {
    pub current: &'a Tier,
    /// The next tier up and the points still needed to reach it; `None` at the top.
    pub next: Option<(&'a Tier, i64)>,
    /// Progress from the current tier's threshold to the next one's, 0..=999; 1000 at the
    /// top tier.
    pub progress_permille: u16,
}

/// Never used: [`Program::new`] refuses a program without tiers. It exists so that
/// [`Program::tier`] needs no panic path.
static NO_TIER: Tier = Tier {
    id: String::new(),
    title: String::new(),
    min_points: 0,
};

impl Program {
    /// The tier for `earned_in_window` points (a negative count counts as 0). Reaching a
    /// threshold exactly is reaching the tier.
    pub fn tier(&self, earned_in_window: i64) -> TierStatus<'_> {
        let tiers = &self.config().tiers;
        let earned = earned_in_window.max(0);
        let index = tiers
            .iter()
            .rposition(|t| t.min_points <= earned)
            .unwrap_or(0);
        let current = tiers.get(index).unwrap_or(&NO_TIER);
        match tiers.get(index + 1) {
            None => TierStatus {
                current,
                next: None,
                progress_permille: 1000,
            },
            Some(next) => {
                let span = i128::from(next.min_points) - i128::from(current.min_points);
                let done = i128::from(earned) - i128::from(current.min_points);
                let permille = if span > 0 {
                    (done * 1000 / span).clamp(0, 999)
                } else {
                    0
                };
                TierStatus {
                    current,
                    next: Some((next, next.min_points.saturating_sub(earned).max(0))),
                    progress_permille: u16::try_from(permille).unwrap_or(999),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::program::tests::config;
    use crate::program::Program;
    use proptest::prelude::*;

    fn summary(p: &Program, earned: i64) -> (String, Option<(String, i64)>, u16) {
        let s = p.tier(earned);
        (
            s.current.id.clone(),
            s.next.map(|(t, n)| (t.id.clone(), n)),
            s.progress_permille,
        )
    }

    #[test]
    fn thresholds_are_inclusive() {
        // bronze 0, silver 500, gold 2000
        let p = Program::new(config()).unwrap();
        assert_eq!(
            summary(&p, 0),
            ("bronze".into(), Some(("silver".into(), 500)), 0)
        );
        assert_eq!(
            summary(&p, 250),
            ("bronze".into(), Some(("silver".into(), 250)), 500)
        );
        assert_eq!(
            summary(&p, 499),
            ("bronze".into(), Some(("silver".into(), 1)), 998)
        );
        assert_eq!(
            summary(&p, 500),
            ("silver".into(), Some(("gold".into(), 1500)), 0)
        );
        assert_eq!(
            summary(&p, 1999),
            ("silver".into(), Some(("gold".into(), 1)), 999)
        );
        assert_eq!(summary(&p, 2000), ("gold".into(), None, 1000));
        assert_eq!(summary(&p, i64::MAX), ("gold".into(), None, 1000));
        assert_eq!(
            summary(&p, -40),
            ("bronze".into(), Some(("silver".into(), 500)), 0)
        );
    }

    #[test]
    fn a_single_tier_is_always_complete() {
        let mut c = config();
        c.tiers.truncate(1);
        let p = Program::new(c).unwrap();
        assert_eq!(summary(&p, 0), ("bronze".into(), None, 1000));
    }

    proptest! {
        #[test]
        fn tier_is_the_highest_reached(earned in any::<i64>()) {
            let p = Program::new(config()).unwrap();
            let s = p.tier(earned);
            prop_assert!(s.current.min_points <= earned.max(0));
            prop_assert!(s.progress_permille <= 1000);
            if let Some((next, needed)) = s.next {
                prop_assert!(next.min_points > earned);
                prop_assert_eq!(needed, next.min_points - earned.max(0));
                prop_assert!(s.progress_permille < 1000);
            }
        }
    }
}
