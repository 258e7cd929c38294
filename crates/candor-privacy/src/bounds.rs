//! Per-subject contribution bounding: the step that gives every later mechanism a finite
//! sensitivity.
//!
//! **Guarantee.** The output holds, for each subject, at most `k` (subject, group)
//! contributions, each carrying one value (the sum of that subject's row values in that
//! group; callers clamp it with [`crate::mechanism::Quantizer`]). Which groups a subject
//! keeps depends only on that subject's own rows and on a [`SelectionKey`] that is
//! independent of the data, so adding or removing one subject changes at most `k` groups,
//! each count by 1 and each clamped sum by at most `max(|lo|, |hi|)`: L0 ≤ k, L∞ ≤ 1
//! (counts), L1 ≤ k (counts) and ≤ k·max(|lo|,|hi|) (sums).
//!
//! **Exactly k.** A subject in more than `k` groups keeps exactly `k` of them (tested below
//! with 10,000 rows; OpenDP 0.16's polars `truncate_num_groups(k)` was seen keeping k−1).
//!
//! **Which k.** Each of the subject's groups gets the tag HMAC-SHA256(key, subject ‖ group),
//! and the `k` smallest tags are kept. Why a keyed hash rather than "the first k rows" or
//! "the k lexicographically smallest groups": those favour particular groups (early events,
//! names starting with "A"), biasing every count; an HMAC under a fresh random key is a
//! pseudorandom function, so the kept subset is (computationally) a uniform k-subset of the
//! subject's groups, independent of their names and values: every group loses the same
//! expected fraction of heavy subjects. It is deterministic given the key (reproducible,
//! testable), and a subject cannot steer which groups count without knowing the key.
//! `query::run` draws a fresh key per query from the same source as the noise.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::mechanism::NoiseError;
use crate::query::{GroupKey, Row, Subject};

/// The secret key of the keyed hash that picks which groups a heavy subject keeps.
#[derive(Clone)]
pub struct SelectionKey([u8; 32]);

impl std::fmt::Debug for SelectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SelectionKey(<redacted>)")
    }
}

impl SelectionKey {
    /// A fresh key from the noise's random source.
    pub fn random() -> Result<Self, NoiseError> {
        let mut k = [0u8; 32];
        crate::random_bytes(&mut k)?;
        Ok(Self(k))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The tag of a group given as raw bytes, for callers that encode groups themselves
    /// (the encoding must be injective). Same PRF as [`bound_contributions`] uses.
    pub fn tag_raw(&self, subject: &[u8; 16], group: &[u8]) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return [0u8; 32];
        };
        mac.update(subject);
        mac.update(group);
        mac.finalize().into_bytes().into()
    }

    fn tag(&self, subject: &Subject, key: &GroupKey) -> [u8; 32] {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here; fall back to
        // an all-zero tag (still a valid, if fixed, choice) rather than panic.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return [0u8; 32];
        };
        mac.update(&subject.0);
        for part in key.parts() {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

/// One subject's bounded contribution to one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub subject: Subject,
    pub key: GroupKey,
    /// Sum of the subject's raw row values in this group (not yet clamped).
    pub value: f64,
}

/// Groups `rows` by subject and keeps at most `max_groups` groups per subject (exactly
/// `max_groups` when the subject has more), chosen by [`SelectionKey`]. Output is sorted by
/// subject, then by tag.
pub fn bound_contributions(
    rows: &[Row],
    max_groups: usize,
    key: &SelectionKey,
) -> Vec<Contribution> {
    let mut by_subject: BTreeMap<Subject, BTreeMap<&GroupKey, f64>> = BTreeMap::new();
    for row in rows {
        *by_subject
            .entry(row.subject)
            .or_default()
            .entry(&row.key)
            .or_insert(0.0) += row.value;
    }
    let mut out = Vec::new();
    for (subject, groups) in by_subject {
        let mut tagged: Vec<([u8; 32], &GroupKey, f64)> = groups
            .into_iter()
            .map(|(g, v)| (key.tag(&subject, g), g, v))
            .collect();
        // ties in a 256-bit tag are astronomically unlikely; the group breaks them anyway
        tagged.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        tagged.truncate(max_groups);
        out.extend(tagged.into_iter().map(|(_, g, value)| Contribution {
            subject,
            key: g.clone(),
            value,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn key(n: u8) -> SelectionKey {
        SelectionKey::from_bytes([n; 32])
    }

    fn g(a: &str) -> GroupKey {
        GroupKey::new(vec![a.to_string()]).unwrap()
    }

    fn heavy_subject() -> Vec<Row> {
        // 10,000 rows over 40 groups, values far outside any sane clamp range
        (0..10_000u32)
            .map(|i| Row {
                subject: Subject::from(7u64),
                key: g(&format!("app-{}", i % 40)),
                value: if i % 2 == 0 { 1e12 } else { -1e300 },
            })
            .collect()
    }

    #[test]
    fn keeps_exactly_k_groups() {
        let rows = heavy_subject();
        for k in [1usize, 2, 3, 5, 39, 40, 100] {
            let kept = bound_contributions(&rows, k, &key(1));
            assert_eq!(kept.len(), k.min(40), "k = {k}");
            let distinct: BTreeSet<_> = kept.iter().map(|c| &c.key).collect();
            assert_eq!(distinct.len(), k.min(40));
        }
        assert!(bound_contributions(&rows, 0, &key(1)).is_empty());
    }

    #[test]
    fn light_subjects_are_untouched_and_rows_merge_per_group() {
        let mut rows = vec![
            Row {
                subject: Subject::from(1u64),
                key: g("a"),
                value: 2.0,
            },
            Row {
                subject: Subject::from(1u64),
                key: g("a"),
                value: 3.0,
            },
            Row {
                subject: Subject::from(1u64),
                key: g("b"),
                value: 1.0,
            },
        ];
        rows.push(Row {
            subject: Subject::from(2u64),
            key: g("a"),
            value: 10.0,
        });
        let kept = bound_contributions(&rows, 2, &key(9));
        assert_eq!(kept.len(), 3);
        let s1a = kept
            .iter()
            .find(|c| c.subject == Subject::from(1u64) && c.key == g("a"))
            .unwrap();
        assert_eq!(s1a.value, 5.0);
    }

    #[test]
    fn deterministic_given_key_and_varies_with_key() {
        let rows = heavy_subject();
        let a = bound_contributions(&rows, 3, &key(1));
        assert_eq!(a, bound_contributions(&rows, 3, &key(1)));
        let distinct: BTreeSet<Vec<GroupKey>> = (0..20u8)
            .map(|n| {
                bound_contributions(&rows, 3, &key(n))
                    .into_iter()
                    .map(|c| c.key)
                    .collect()
            })
            .collect();
        assert!(distinct.len() > 10);
        // row order does not matter
        let mut rev = rows.clone();
        rev.reverse();
        assert_eq!(a, bound_contributions(&rev, 3, &key(1)));
    }

    #[test]
    fn selection_is_unbiased_across_groups() {
        // one subject in 10 groups, k = 2: over 4,000 keys each group should be kept ~800 times
        let rows: Vec<Row> = (0..10)
            .map(|i| Row {
                subject: Subject::from(3u64),
                key: g(&format!("{i}")),
                value: 1.0,
            })
            .collect();
        let mut kept: HashMap<GroupKey, u32> = HashMap::new();
        for n in 0..4_000u32 {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&n.to_le_bytes());
            for c in bound_contributions(&rows, 2, &SelectionKey::from_bytes(bytes)) {
                *kept.entry(c.key).or_default() += 1;
            }
        }
        assert_eq!(kept.len(), 10);
        // binomial(4000, 0.2): sd ≈ 25; allow 5 sd
        for (g, n) in kept {
            assert!((675..=925).contains(&n), "{g:?} kept {n} times");
        }
    }
}
