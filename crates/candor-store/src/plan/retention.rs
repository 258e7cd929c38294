//! Retention policy shared by both backends: which stored events are past the retention
//! of every purpose they may still be used for.
//!
//! An event is kept as long as the *longest* retention among its purposes: it was
//! collected for all of them, and any one still entitled to it justifies keeping it.
//! Once every purpose's period has passed (counted from the day it was received), it
//! is deleted. A purpose that is no longer configured keeps nothing alive: it grants
//! nothing (fail closed), so holding data for it would be data nobody may use.
//!
//! The policy is expressed as *tiers*, one per distinct retention period: a row
//! received before a tier's cutoff whose purposes all lie in that tier's expired set is
//! past retention. Both backends turn the tiers into one `DELETE ... WHERE` predicate.
//!
//! Audience-insight features (when insights are configured) expire by the insights
//! purpose's retention alone: they exist only for that purpose. A feature is counted from
//! its UTC day, the day the activity it sums happened, so the feature of day D is kept
//! while D >= today - retention ([`FeatureCutoff`]). As for events, a missing period keeps
//! nothing alive.

use candor_core::PurposeId;
use std::collections::HashMap;

pub(crate) use candor_core::time::DAY_MS;

/// One retention period: rows received before `cutoff_ms` whose purposes all lie in
/// `expired` (the bits whose retention is at most this period) are past retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tier {
    pub cutoff_ms: i64,
    pub expired: u64,
}

impl Tier {
    /// The bits that keep a row alive at this tier (for `purposes & keep = 0`).
    pub fn keep(&self) -> u64 {
        !self.expired
    }
}

/// The tiers for `now_ms`, longest retention last. `days` gives each purpose's
/// retention; `bits` the store's bit assignment.
pub(crate) fn tiers(
    now_ms: i64,
    days: &HashMap<PurposeId, u32>,
    bits: &HashMap<PurposeId, u8>,
) -> Vec<Tier> {
    let mut per_bit = [0u32; 64];
    for (p, d) in days {
        if let Some(b) = bits.get(p) {
            if let Some(slot) = per_bit.get_mut(usize::from(*b)) {
                *slot = *d;
            }
        }
    }
    let mut periods: Vec<u32> = per_bit.to_vec();
    periods.sort_unstable();
    periods.dedup();
    periods
        .into_iter()
        .map(|r| Tier {
            cutoff_ms: now_ms.saturating_sub(i64::from(r).saturating_mul(DAY_MS)),
            expired: per_bit
                .iter()
                .enumerate()
                .filter(|(_, d)| **d <= r)
                .fold(0u64, |m, (b, _)| m | (1u64 << b)),
        })
        .collect()
}

/// Which insight features are past retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FeatureCutoff {
    /// Features of days (since the Unix epoch) before this one.
    Before(i64),
    /// Every feature: the insights purpose has no retention period.
    All,
}

/// The features past retention as of `now_ms` under the insights purpose's retention.
pub(crate) fn feature_cutoff(
    now_ms: i64,
    days: &HashMap<PurposeId, u32>,
    purpose: &PurposeId,
) -> FeatureCutoff {
    match days.get(purpose) {
        Some(d) => FeatureCutoff::Before(now_ms.div_euclid(DAY_MS) - i64::from(*d)),
        None => FeatureCutoff::All,
    }
}

/// Whether a row is past retention under `tiers` (the reference the SQL must match).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn expired(tiers: &[Tier], received_ms: i64, purposes: u64) -> bool {
    tiers
        .iter()
        .any(|t| received_ms < t.cutoff_ms && purposes & t.keep() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_retention_among_purposes_wins() {
        let a = PurposeId::parse("analytics").unwrap();
        let l = PurposeId::parse("loyalty").unwrap();
        let bits = HashMap::from([(a.clone(), 0u8), (l.clone(), 1u8)]);
        let days = HashMap::from([(a, 30u32), (l, 365u32)]);
        let now = 1_000 * DAY_MS;
        let t = tiers(now, &days, &bits);
        let at = |d: i64| now - d * DAY_MS - 1;
        assert!(!expired(&t, at(29), 0b01));
        assert!(expired(&t, at(30), 0b01));
        assert!(!expired(&t, at(100), 0b11), "loyalty keeps it");
        assert!(expired(&t, at(365), 0b11));
        // A purpose that is not configured (bit 5) keeps nothing alive.
        assert!(expired(&t, at(0), 0b10_0000));
        assert!(!expired(&t, at(0), 0b10_0001));
    }

    #[test]
    fn features_expire_by_the_insights_purpose_alone() {
        let i = PurposeId::parse("insights").unwrap();
        let days = HashMap::from([(i.clone(), 30u32)]);
        // Any instant of day 1000 keeps day 970 and drops day 969.
        for now in [1_000 * DAY_MS, 1_001 * DAY_MS - 1] {
            assert_eq!(feature_cutoff(now, &days, &i), FeatureCutoff::Before(970));
        }
        let zero = HashMap::from([(i.clone(), 0u32)]);
        assert_eq!(
            feature_cutoff(1_000 * DAY_MS, &zero, &i),
            FeatureCutoff::Before(1_000),
            "today is kept"
        );
        let other = PurposeId::parse("analytics").unwrap();
        assert_eq!(
            feature_cutoff(1_000 * DAY_MS, &HashMap::from([(other, 365)]), &i),
            FeatureCutoff::All
        );
    }
}
