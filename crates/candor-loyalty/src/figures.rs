//! The program's figures for the operator's dashboard: points issued, redeemed, expired,
//! outstanding, and what the outstanding points are worth (the liability an accountant
//! books).
//!
//! The store sums its ledger per entry kind (one `GROUP BY`) into [`KindTotals`]; the
//! arithmetic from those sums to the figures is here, once, so every backend reports the
//! same numbers. Everything saturates: no total can overflow it.

use crate::ledger::{Entry, EntryKind};
use crate::program::Program;

/// Signed sums of ledger points per entry kind, as stored (redemptions negative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindTotals {
    pub earn: i64,
    pub redeem: i64,
    pub reverse: i64,
    pub expire: i64,
    pub adjust: i64,
    pub forfeit: i64,
}

impl KindTotals {
    /// Adds one entry to its kind's sum.
    pub fn add(&mut self, entry: &Entry) {
        let slot = match entry.kind {
            EntryKind::Earn => &mut self.earn,
            EntryKind::Redeem => &mut self.redeem,
            EntryKind::Reverse => &mut self.reverse,
            EntryKind::Expire => &mut self.expire,
            EntryKind::Adjust => &mut self.adjust,
            EntryKind::Forfeit => &mut self.forfeit,
        };
        *slot = slot.saturating_add(entry.points);
    }

    /// The sums of a list of entries.
    pub fn of(entries: &[Entry]) -> Self {
        let mut totals = Self::default();
        for e in entries {
            totals.add(e);
        }
        totals
    }
}

/// The program's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Members (people who joined and have not left), as the store counts them.
    pub members: u64,
    /// Earned plus net adjustments (an adjustment corrects what was issued).
    pub points_issued: i64,
    /// Redeemed, net of reversed redemptions; positive.
    pub points_redeemed: i64,
    /// Written off by expiry; positive.
    pub points_expired: i64,
    /// Given up by people leaving under `OnLeave::Forfeit`; positive.
    pub points_forfeited: i64,
    /// The sum of all balances: issued − redeemed − expired − forfeited.
    pub outstanding: i64,
    /// `outstanding × point_value_millis` (never negative): the outstanding points' value
    /// in thousandths of the currency unit.
    pub liability_millis: i64,
}

/// The figures from per-kind sums and the value of one point.
pub fn figures(members: u64, totals: &KindTotals, point_value_millis: i64) -> Figures {
    let outstanding = totals
        .earn
        .saturating_add(totals.redeem)
        .saturating_add(totals.reverse)
        .saturating_add(totals.expire)
        .saturating_add(totals.adjust)
        .saturating_add(totals.forfeit);
    Figures {
        members,
        points_issued: totals.earn.saturating_add(totals.adjust),
        points_redeemed: totals
            .redeem
            .saturating_add(totals.reverse)
            .saturating_neg(),
        points_expired: totals.expire.saturating_neg(),
        points_forfeited: totals.forfeit.saturating_neg(),
        outstanding,
        liability_millis: outstanding.max(0).saturating_mul(point_value_millis.max(0)),
    }
}

impl Program {
    /// [`figures`] at this program's point value.
    pub fn figures(&self, members: u64, totals: &KindTotals) -> Figures {
        figures(members, totals, self.config().point_value_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::time::UnixMillis;
    use EntryKind::*;

    #[test]
    fn figures_from_a_ledger() {
        let e = |points, kind| Entry {
            at: UnixMillis(0),
            points,
            kind,
        };
        let totals = KindTotals::of(&[
            e(1000, Earn),
            e(500, Earn),
            e(50, Adjust),
            e(-20, Adjust),
            e(-300, Redeem),
            e(-300, Redeem),
            e(300, Reverse),
            e(-100, Expire),
            e(-80, Forfeit),
        ]);
        let f = figures(3, &totals, 10); // a point is worth 0.01
        assert_eq!(
            f,
            Figures {
                members: 3,
                points_issued: 1530,
                points_redeemed: 300,
                points_expired: 100,
                points_forfeited: 80,
                outstanding: 1050,
                liability_millis: 10_500,
            }
        );
        assert_eq!(
            f.points_issued - f.points_redeemed - f.points_expired - f.points_forfeited,
            f.outstanding
        );
    }

    #[test]
    fn figures_saturate() {
        let totals = KindTotals {
            earn: i64::MAX,
            adjust: i64::MAX,
            redeem: i64::MIN,
            ..KindTotals::default()
        };
        let f = figures(0, &totals, i64::MAX);
        assert_eq!(f.points_issued, i64::MAX);
        assert_eq!(f.points_redeemed, i64::MAX);
        assert_eq!(figures(0, &KindTotals::default(), -5).liability_millis, 0);
    }
}
