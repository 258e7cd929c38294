//! Reading a subject's points ledger: balance, points earned in the tier window, and
//! expiry by first-in-first-out lots.
//!
//! The store keeps the ledger (append-only, idempotent) and hands its entries here; these
//! functions only read them, so the rule for what expires when is written once.
//!
//! # Lots (the expiry rule, in plain words)
//!
//! *Every time points are added, they form a lot; points are spent oldest lot first; a lot
//! expires at the start of the UTC day `N` days after the day it was added.* Precisely,
//! entries are taken in time order (entries at the same instant in the order given):
//!
//! - A positive entry of any kind (an earning, an upward adjustment, the reversal of a
//!   redemption) adds a lot dated at that entry. A reversed redemption therefore gives the
//!   points back as a *new* lot dated at the reversal, with a full life ahead: simple to
//!   explain ("points returned to you count from the day they come back"), and it needs
//!   no link between a reversal and the redemption it undoes.
//! - Before each entry, and at `now`, every lot whose expiry has arrived stops being
//!   spendable; its rest is *due to expire* until an `Expire` entry writes it off.
//! - A negative `Expire` entry writes off points due to expire, oldest first (then, should
//!   a store have written off more than was due, spendable lots, oldest first).
//! - Any other negative entry (a redemption, a downward adjustment, a forfeit) spends the
//!   oldest spendable lots first, then points due to expire but not yet written off (the
//!   balance still showed them, so they were spent, and there is nothing left to expire).
//!   Spending beyond everything is a debt that later lots pay first (a store never lets a
//!   balance go negative, but reading an odd history must not break).
//!
//! [`expired`] is what is due to expire at `now`: the amount of the `Expire` entry the
//! store should append now. After appending it at `now`, `expired` returns 0; it never
//! exceeds the balance; with [`Expiry::Never`] nothing ever expires.
//!
//! Arithmetic is in `i128` and results saturate to `i64`, so no history can overflow it.

use crate::program::Expiry;
use candor_core::time::UnixMillis;
use std::collections::VecDeque;

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Points earned by an event or a field bonus (positive).
    Earn,
    /// Points spent on a reward (negative).
    Redeem,
    /// A redemption undone (positive).
    Reverse,
    /// Points written off because they expired (negative).
    Expire,
    /// An operator's correction (either sign).
    Adjust,
    /// The balance given up on leaving the program under [`crate::OnLeave::Forfeit`]
    /// (negative).
    Forfeit,
}

/// One ledger entry as the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub at: UnixMillis,
    /// Signed: positive adds points, negative takes them away.
    pub points: i64,
    pub kind: EntryKind,
}

fn saturate(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

/// The balance: the sum of all entries (saturating).
pub fn balance(history: &[Entry]) -> i64 {
    saturate(history.iter().map(|e| i128::from(e.points)).sum())
}

/// Points that count toward a tier: `Earn` entries plus `Adjust` entries of either sign
/// (an adjustment corrects what was earned, e.g. points taken back for a returned order),
/// dated within the last `window_days` UTC days, today included, and not after `now`.
/// Redemptions, their reversals, expiry and forfeits do not change it: spending points
/// never costs a tier. Never negative.
pub fn earned_in_window(history: &[Entry], now: UnixMillis, window_days: u16) -> i64 {
    let first_day = now.day() - i64::from(window_days) + 1;
    let sum: i128 = history
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Earn | EntryKind::Adjust))
        .filter(|e| e.at <= now && e.at.day() >= first_day)
        .map(|e| i128::from(e.points))
        .sum();
    saturate(sum.max(0))
}

/// The lots a history leaves at `now`.
struct Lots {
    /// Spendable lots, oldest first: (expires at, points left).
    live: VecDeque<(Option<UnixMillis>, i128)>,
    /// Points whose lot has expired, not yet written off.
    due: i128,
}

impl Lots {
    fn expire_until(&mut self, t: UnixMillis) {
        // Lots are in order of the day they were added, so their expiries ascend.
        while let Some(&(Some(at), left)) = self.live.front() {
            if at > t {
                break;
            }
            self.due += left;
            self.live.pop_front();
        }
    }

    fn spend_live(&mut self, mut amount: i128) -> i128 {
        while amount > 0 {
            let Some(front) = self.live.front_mut() else {
                break;
            };
            let take = amount.min(front.1);
            front.1 -= take;
            amount -= take;
            if front.1 == 0 {
                self.live.pop_front();
            }
        }
        amount
    }

    fn spend_due(&mut self, amount: i128) -> i128 {
        let take = amount.min(self.due);
        self.due -= take;
        amount - take
    }
}

fn lot_expiry(at: UnixMillis, expiry: &Expiry) -> Option<UnixMillis> {
    match expiry {
        Expiry::Never => None,
        Expiry::AfterDays(n) => Some(UnixMillis::day_start(at.day() + i64::from(*n))),
    }
}

fn lots(history: &[Entry], now: UnixMillis, expiry: &Expiry) -> Lots {
    let mut order: Vec<&Entry> = history.iter().filter(|e| e.at <= now).collect();
    order.sort_by_key(|e| e.at); // stable: same-instant entries keep their order
    let mut lots = Lots {
        live: VecDeque::new(),
        due: 0,
    };
    let mut debt: i128 = 0;
    for e in order {
        lots.expire_until(e.at);
        let points = i128::from(e.points);
        if points > 0 {
            let paid = points.min(debt);
            debt -= paid;
            let left = points - paid;
            if left > 0 {
                lots.live.push_back((lot_expiry(e.at, expiry), left));
            }
        } else if points < 0 {
            let amount = -points;
            let rest = if e.kind == EntryKind::Expire {
                let rest = lots.spend_due(amount);
                lots.spend_live(rest)
            } else {
                let rest = lots.spend_live(amount);
                lots.spend_due(rest)
            };
            debt += rest;
        }
    }
    lots.expire_until(now);
    lots
}

/// Points that have expired by `now` and that no `Expire` entry has written off yet: the
/// amount (as a positive number) of the `Expire` entry to append at `now`, 0 if none.
/// Entries after `now` are ignored. See the module documentation for the rule.
pub fn expired(history: &[Entry], now: UnixMillis, expiry: &Expiry) -> i64 {
    if *expiry == Expiry::Never {
        return 0;
    }
    let due = lots(history, now, expiry).due;
    let balance_now: i128 = history
        .iter()
        .filter(|e| e.at <= now)
        .map(|e| i128::from(e.points))
        .sum();
    // `due` is never more than the balance (see the module doc); the clamp makes it so for
    // any input at all.
    saturate(due.min(balance_now).max(0))
}

/// Points that will expire after `now` and at most `within_days` days later, by expiry
/// instant, soonest first (e.g. 120 points at the start of 2027-01-10). Points already
/// expired are not listed: that is [`expired`]. Spending is oldest-first, so future
/// redemptions may make these smaller; never larger.
pub fn expiring_soon(
    history: &[Entry],
    now: UnixMillis,
    expiry: &Expiry,
    within_days: u16,
) -> Vec<(UnixMillis, i64)> {
    let horizon = now.plus_days(i64::from(within_days));
    let mut out: Vec<(UnixMillis, i64)> = Vec::new();
    for (at, left) in lots(history, now, expiry).live {
        let Some(at) = at else { continue };
        if at > horizon || left <= 0 {
            continue;
        }
        match out.last_mut() {
            Some((last, sum)) if *last == at => *sum = saturate(i128::from(*sum) + left),
            _ => out.push((at, saturate(left))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::time::DAY_MS;
    use proptest::prelude::*;
    use EntryKind::*;

    /// Noon of day `d` plus `ms`.
    fn day(d: i64) -> UnixMillis {
        UnixMillis(d * DAY_MS + DAY_MS / 2)
    }

    fn e(at: UnixMillis, points: i64, kind: EntryKind) -> Entry {
        Entry { at, points, kind }
    }

    const THIRTY: Expiry = Expiry::AfterDays(30);

    #[test]
    fn a_lot_expires_at_the_start_of_day_plus_n() {
        let h = [e(day(100), 50, Earn)];
        // Earned on day 100: spendable through day 129, expired from day 130 00:00.
        let last_ms = UnixMillis::day_start(130).plus_ms(-1);
        assert_eq!(expired(&h, last_ms, &THIRTY), 0);
        assert_eq!(expired(&h, UnixMillis::day_start(130), &THIRTY), 50);
        assert_eq!(expired(&h, day(500), &THIRTY), 50);
        assert_eq!(expired(&h, day(500), &Expiry::Never), 0);
        // A lot earned at the first or last millisecond of its day expires at the same
        // instant.
        let early = [e(UnixMillis::day_start(100), 5, Earn)];
        let late = [e(UnixMillis::day_start(101).plus_ms(-1), 5, Earn)];
        for h in [early, late] {
            assert_eq!(expired(&h, last_ms, &THIRTY), 0);
            assert_eq!(expired(&h, UnixMillis::day_start(130), &THIRTY), 5);
        }
    }

    #[test]
    fn redemptions_spend_the_oldest_lot_first() {
        let h = [
            e(day(100), 100, Earn),
            e(day(110), 80, Earn),
            e(day(115), -120, Redeem), // all of lot 1, 20 of lot 2
        ];
        assert_eq!(expired(&h, UnixMillis::day_start(130), &THIRTY), 0);
        assert_eq!(
            expired(&h, UnixMillis::day_start(140).plus_ms(-1), &THIRTY),
            0
        );
        assert_eq!(expired(&h, UnixMillis::day_start(140), &THIRTY), 60);
    }

    #[test]
    fn a_redemption_on_the_expiry_instant_cannot_use_the_expired_lot() {
        let start = UnixMillis::day_start(130);
        let h = [
            e(day(100), 100, Earn),
            e(day(105), 100, Earn),
            e(start, -50, Redeem), // lot 1 has just expired: spends lot 2
        ];
        assert_eq!(expired(&h, start, &THIRTY), 100);
        assert_eq!(expired(&h, UnixMillis::day_start(135), &THIRTY), 150);
        // One millisecond earlier the redemption spends lot 1.
        let h2 = [h[0], h[1], e(start.plus_ms(-1), -50, Redeem)];
        assert_eq!(expired(&h2, start, &THIRTY), 50);
        assert_eq!(expired(&h2, UnixMillis::day_start(135), &THIRTY), 150);
    }

    #[test]
    fn points_spent_before_the_write_off_are_not_expired_again() {
        // Lot 1 expired on day 130 but the store wrote nothing off before a redemption on
        // day 131. The redemption spends the spendable lot 2 (30) first, then 80 of lot 1:
        // only lot 1's last 20 are left to expire.
        let h = [
            e(day(100), 100, Earn),
            e(day(120), 30, Earn),
            e(day(131), -110, Redeem),
        ];
        assert_eq!(expired(&h, day(131), &THIRTY), 20);
        assert_eq!(expired(&h, day(150), &THIRTY), 20);
        assert_eq!(balance(&h), 20);
        let spent_all = [h[0], h[1], e(day(131), -130, Redeem)];
        assert_eq!(expired(&spent_all, day(131), &THIRTY), 0);
        assert_eq!(expired(&spent_all, day(150), &THIRTY), 0);
    }

    #[test]
    fn expire_entries_write_off_what_was_due() {
        let mut h = vec![e(day(100), 100, Earn), e(day(120), 30, Earn)];
        let now = day(131);
        let due = expired(&h, now, &THIRTY);
        assert_eq!(due, 100);
        h.push(e(now, -due, Expire));
        assert_eq!(expired(&h, now, &THIRTY), 0);
        assert_eq!(expired(&h, day(149), &THIRTY), 0);
        assert_eq!(expired(&h, day(150), &THIRTY), 30);
        assert_eq!(balance(&h), 30);
    }

    #[test]
    fn a_reversal_is_a_new_lot_dated_at_the_reversal() {
        let h = [
            e(day(100), 100, Earn),
            e(day(110), -100, Redeem),
            e(day(125), 100, Reverse),
        ];
        assert_eq!(expired(&h, day(140), &THIRTY), 0);
        assert_eq!(expired(&h, UnixMillis::day_start(155), &THIRTY), 100);
    }

    #[test]
    fn adjustments_add_lots_and_spend_like_redemptions() {
        let h = [
            e(day(100), 40, Adjust),
            e(day(101), 60, Earn),
            e(day(102), -50, Adjust),
        ];
        assert_eq!(expired(&h, day(130), &THIRTY), 0);
        assert_eq!(expired(&h, day(131), &THIRTY), 50);
    }

    #[test]
    fn forfeit_leaves_nothing_to_expire() {
        let h = [e(day(100), 100, Earn), e(day(105), -100, Forfeit)];
        assert_eq!(expired(&h, day(300), &THIRTY), 0);
    }

    #[test]
    fn entries_after_now_are_ignored() {
        let h = [e(day(100), 100, Earn), e(day(200), -100, Redeem)];
        assert_eq!(expired(&h, day(150), &THIRTY), 100);
    }

    #[test]
    fn expiring_soon_groups_by_instant() {
        let h = [
            e(day(100), 100, Earn),
            e(day(100), 20, Earn),
            e(day(103), 50, Earn),
            e(day(104), -30, Redeem),
            e(day(120), 7, Earn),
        ];
        let now = day(125);
        assert_eq!(
            expiring_soon(&h, now, &THIRTY, 10),
            [
                (UnixMillis::day_start(130), 90),
                (UnixMillis::day_start(133), 50)
            ]
        );
        // Exactly `within_days` later is included.
        let at_edge = UnixMillis::day_start(130).minus_days(3);
        assert_eq!(
            expiring_soon(&h, at_edge, &THIRTY, 3),
            [(UnixMillis::day_start(130), 90)]
        );
        assert_eq!(expiring_soon(&h, now, &THIRTY, 0), []);
        assert_eq!(expiring_soon(&h, now, &Expiry::Never, 3650), []);
        // Expired lots are not "soon".
        assert_eq!(
            expiring_soon(&h, day(131), &THIRTY, 3),
            [(UnixMillis::day_start(133), 50)]
        );
    }

    #[test]
    fn earned_in_window_counts_earnings_and_adjustments_only() {
        let now = day(200);
        let h = [
            e(day(170), 1000, Earn), // outside a 30-day window (days 171..=200)
            e(UnixMillis::day_start(171), 100, Earn),
            e(day(180), 50, Adjust),
            e(day(181), -20, Adjust),
            e(day(182), -130, Redeem),
            e(day(183), 130, Reverse),
            e(day(184), -10, Expire),
            e(day(200), 5, Earn),
            e(day(201), 999, Earn), // after now
        ];
        assert_eq!(earned_in_window(&h, now, 30), 135);
        assert_eq!(earned_in_window(&h, now, 31), 1135);
        assert_eq!(earned_in_window(&h, now, 1), 5);
        assert_eq!(earned_in_window(&[e(day(1), -5, Adjust)], day(2), 10), 0);
    }

    /// A history a store could write: balance never negative, and the store sometimes
    /// appends the `Expire` entry `expired` asks for.
    #[derive(Debug, Clone)]
    enum Step {
        Wait(i64),
        Earn(i64),
        AdjustUp(i64),
        Spend(u8, bool), // percent of the balance; redeem or adjust down
        Reverse(u8),     // percent of the last redemption
        WriteOff,
        Forfeit,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0i64..20 * DAY_MS).prop_map(Step::Wait),
            3 => (1i64..1000).prop_map(Step::Earn),
            1 => (1i64..1000).prop_map(Step::AdjustUp),
            3 => (0u8..=100, any::<bool>()).prop_map(|(p, r)| Step::Spend(p, r)),
            1 => (0u8..=100).prop_map(Step::Reverse),
            2 => Just(Step::WriteOff),
            1 => Just(Step::Forfeit),
        ]
    }

    fn build(steps: &[Step], expiry: &Expiry) -> (Vec<Entry>, UnixMillis) {
        let mut h = Vec::new();
        let mut now = UnixMillis(1_700_000_000_000);
        let mut last_redeem = 0i64;
        for s in steps {
            let bal = balance(&h);
            match s {
                Step::Wait(ms) => now = now.plus_ms(*ms),
                Step::Earn(p) => h.push(e(now, *p, Earn)),
                Step::AdjustUp(p) => h.push(e(now, *p, Adjust)),
                Step::Spend(pct, redeem) => {
                    let amount = bal * i64::from(*pct) / 100;
                    if amount > 0 {
                        let kind = if *redeem { Redeem } else { Adjust };
                        h.push(e(now, -amount, kind));
                        if *redeem {
                            last_redeem = amount;
                        }
                    }
                }
                Step::Reverse(pct) => {
                    let amount = last_redeem * i64::from(*pct) / 100;
                    if amount > 0 {
                        h.push(e(now, amount, Reverse));
                        last_redeem = 0;
                    }
                }
                Step::WriteOff => {
                    let due = expired(&h, now, expiry);
                    if due > 0 {
                        h.push(e(now, -due, Expire));
                    }
                }
                Step::Forfeit => {
                    if bal > 0 {
                        h.push(e(now, -bal, Forfeit));
                    }
                }
            }
        }
        (h, now)
    }

    fn expiry_strategy() -> impl Strategy<Value = Expiry> {
        prop_oneof![Just(Expiry::Never), (1u16..=60).prop_map(Expiry::AfterDays),]
    }

    proptest! {
        #[test]
        fn expiring_is_safe_and_idempotent(
            steps in proptest::collection::vec(step(), 0..60),
            expiry in expiry_strategy(),
            later in 0i64..200 * DAY_MS,
        ) {
            let (mut h, now) = build(&steps, &expiry);
            let now = now.plus_ms(later);
            let bal = balance(&h);
            prop_assert!(bal >= 0);
            // The rule itself keeps what is due within the balance; the clamp in `expired`
            // is only a backstop for histories no store writes.
            prop_assert!(lots(&h, now, &expiry).due <= i128::from(bal));
            let due = expired(&h, now, &expiry);
            prop_assert!(due >= 0);
            prop_assert!(due <= bal, "expired {} of a balance of {}", due, bal);
            if expiry == Expiry::Never {
                prop_assert_eq!(due, 0);
            }
            h.push(e(now, -due, Expire));
            prop_assert!(balance(&h) >= 0);
            prop_assert_eq!(expired(&h, now, &expiry), 0);
            // What is listed as expiring soon fits in the balance, and is exactly what
            // `expired` will report as time passes with no new entries.
            let soon = expiring_soon(&h, now, &expiry, 3650);
            prop_assert!(soon.iter().map(|(_, p)| p).sum::<i64>() <= balance(&h));
            let mut previous = 0;
            for days in [0i64, 1, 7, 30, 61, 400] {
                let t = now.plus_days(days);
                let listed: i64 = soon.iter().filter(|(at, _)| *at <= t).map(|(_, p)| p).sum();
                let due = expired(&h, t, &expiry);
                prop_assert_eq!(due, listed, "at {} days", days);
                prop_assert!(due >= previous, "expiry only grows while nothing is appended");
                previous = due;
            }
        }

        #[test]
        fn any_history_is_read_without_panic(
            raw in proptest::collection::vec((any::<i64>(), any::<i64>(), 0u8..6), 0..40),
            now in any::<i64>(),
            days in any::<u16>(),
        ) {
            let kinds = [Earn, Redeem, Reverse, Expire, Adjust, Forfeit];
            let h: Vec<Entry> = raw
                .iter()
                .map(|&(at, p, k)| e(UnixMillis(at), p, kinds[usize::from(k)]))
                .collect();
            let now = UnixMillis(now);
            let expiry = Expiry::AfterDays(days.max(1));
            let due = expired(&h, now, &expiry);
            let until_now: Vec<Entry> = h.iter().copied().filter(|e| e.at <= now).collect();
            prop_assert!(due >= 0);
            prop_assert!(due <= balance(&until_now).max(0));
            let _ = expiring_soon(&h, now, &expiry, days);
            prop_assert!(earned_in_window(&h, now, days) >= 0);
        }
    }
}
