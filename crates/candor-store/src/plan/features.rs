//! Which events feed insight features, how their deltas are recorded in the event log,
//! and how the deltas of many events merge into one write (see `crate::features` for
//! why features are derived after commit).

use crate::StoreError;
use candor_core::{PurposeSet, SubjectId};
use candor_insights::{Category, DailyFeature, Day, FeatureDelta, FeatureKind};
use std::collections::{BTreeMap, BTreeSet};

/// Whether a stored row's deltas count: insights are on (`insights_bit`), the row has
/// deltas, and the purposes it is stored under include the insights purpose. For a row
/// read back from the log, `stored_under` is its purposes after purpose floors, so a
/// withdrawal since it was stored (and any re-grant after that) keeps it out.
pub fn feeds(insights_bit: Option<u8>, stored_under: PurposeSet, has_deltas: bool) -> bool {
    has_deltas && insights_bit.is_some_and(|b| stored_under.contains(b))
}

/// The key of one daily feature; its order is the order rows are written in, so
/// concurrent writers lock them in the same order.
pub type ActivityKey = (SubjectId, Day, FeatureKind, Category);

/// The merged deltas of a run of events: activity counts summed per feature, the last
/// declaration per field (`None`: no longer shared).
#[derive(Debug, Default)]
pub struct Batch {
    pub activity: BTreeMap<ActivityKey, u32>,
    pub declared: BTreeMap<(SubjectId, String), Option<String>>,
}

impl Batch {
    /// Adds one event's deltas (events must be added in log order: the last declaration
    /// wins). A zero count adds nothing (it would only leave an empty row).
    pub fn add(&mut self, subject: SubjectId, deltas: &[FeatureDelta]) {
        for d in deltas {
            match d {
                FeatureDelta::Activity(f) if f.count == 0 => {}
                FeatureDelta::Activity(f) => {
                    let c = self
                        .activity
                        .entry((subject, f.day, f.kind, f.category.clone()))
                        .or_insert(0);
                    *c = c.saturating_add(f.count);
                }
                FeatureDelta::Declare { field, value } => {
                    self.declared
                        .insert((subject, field.clone()), Some(value.clone()));
                }
                FeatureDelta::Undeclare { field } => {
                    self.declared.insert((subject, field.clone()), None);
                }
            }
        }
    }

    /// Drops the subject's deltas (its insights purpose flipped: its features are gone).
    pub fn forget(&mut self, subject: &SubjectId) {
        self.activity.retain(|k, _| k.0 != *subject);
        self.declared.retain(|k, _| k.0 != *subject);
    }

    pub fn is_empty(&self) -> bool {
        self.activity.is_empty() && self.declared.is_empty()
    }

    /// Distinct features and fields it would write.
    pub fn len(&self) -> usize {
        self.activity.len() + self.declared.len()
    }

    pub fn subjects(&self) -> BTreeSet<SubjectId> {
        self.activity
            .keys()
            .map(|k| k.0)
            .chain(self.declared.keys().map(|k| k.0))
            .collect()
    }

    /// The activity deltas as daily features (count = the summed delta).
    pub fn activity_features(&self) -> impl Iterator<Item = (SubjectId, DailyFeature)> + '_ {
        self.activity.iter().map(|((s, day, kind, category), c)| {
            (
                *s,
                DailyFeature {
                    day: *day,
                    kind: *kind,
                    category: category.clone(),
                    count: *c,
                },
            )
        })
    }
}

/// The encoding of an event's deltas in the log's `features` column (sealed under the
/// subject's key before it is written). A version byte, then per delta a tag and its
/// fields; strings are UTF-8 with a 16-bit length. Decoding validates every field as the
/// types do, so a row edited behind the store's back is refused, not trusted.
pub fn encode(deltas: &[FeatureDelta]) -> Vec<u8> {
    let mut out = vec![LOG_VERSION];
    let text = |out: &mut Vec<u8>, s: &str| {
        let b = s.as_bytes();
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&b[..usize::from(len)]);
    };
    for d in deltas {
        match d {
            FeatureDelta::Activity(f) => {
                out.push(TAG_ACTIVITY);
                out.extend_from_slice(&f.day.days().to_le_bytes());
                out.push(f.kind.code());
                out.extend_from_slice(&f.count.to_le_bytes());
                text(&mut out, f.category.as_str());
            }
            FeatureDelta::Declare { field, value } => {
                out.push(TAG_DECLARE);
                text(&mut out, field);
                text(&mut out, value);
            }
            FeatureDelta::Undeclare { field } => {
                out.push(TAG_UNDECLARE);
                text(&mut out, field);
            }
        }
    }
    out
}

const LOG_VERSION: u8 = 1;
const TAG_ACTIVITY: u8 = 1;
const TAG_DECLARE: u8 = 2;
const TAG_UNDECLARE: u8 = 3;

/// The deltas [`encode`] wrote.
pub fn decode(b: &[u8]) -> Result<Vec<FeatureDelta>, StoreError> {
    let bad = || StoreError::Corrupt("an event's feature log entry".into());
    let mut r = Reader(b);
    if r.byte().ok_or_else(bad)? != LOG_VERSION {
        return Err(bad());
    }
    let mut out = Vec::new();
    while let Some(tag) = r.byte() {
        out.push(match tag {
            TAG_ACTIVITY => {
                let day = Day::from_days(r.u32().ok_or_else(bad)?).ok_or_else(bad)?;
                let kind = FeatureKind::from_code(r.byte().ok_or_else(bad)?).ok_or_else(bad)?;
                let count = r.u32().ok_or_else(bad)?;
                let category = Category::parse(r.text().ok_or_else(bad)?).ok_or_else(bad)?;
                FeatureDelta::Activity(DailyFeature {
                    day,
                    kind,
                    category,
                    count,
                })
            }
            TAG_DECLARE => FeatureDelta::Declare {
                field: r.text().ok_or_else(bad)?.to_owned(),
                value: r.text().ok_or_else(bad)?.to_owned(),
            },
            TAG_UNDECLARE => FeatureDelta::Undeclare {
                field: r.text().ok_or_else(bad)?.to_owned(),
            },
            _ => return Err(bad()),
        });
    }
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        std::str::from_utf8(self.take(usize::from(len))?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(day: u32, cat: &str, count: u32) -> FeatureDelta {
        FeatureDelta::Activity(DailyFeature {
            day: Day::from_days(day).unwrap(),
            kind: FeatureKind::AppUsed,
            category: Category::parse(cat).unwrap(),
            count,
        })
    }

    #[test]
    fn the_log_encoding_round_trips_and_refuses_garbage() {
        let deltas = vec![
            act(20_000, "games", 3),
            FeatureDelta::Declare {
                field: "age_band".into(),
                value: "25-34".into(),
            },
            FeatureDelta::Undeclare {
                field: "country".into(),
            },
        ];
        let b = encode(&deltas);
        assert_eq!(decode(&b).unwrap(), deltas);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
        for cut in 0..b.len() {
            // Every strict prefix either decodes to fewer deltas or is refused; none
            // decodes to something else.
            if let Ok(d) = decode(&b[..cut]) {
                assert!(d.len() < deltas.len() && deltas.starts_with(&d));
            }
        }
        assert!(decode(&[9]).is_err());
        assert!(decode(&[1, 7]).is_err());
    }

    #[test]
    fn a_batch_sums_activity_keeps_the_last_declaration_and_forgets_a_subject() {
        let (a, b) = (SubjectId::random(), SubjectId::random());
        let mut batch = Batch::default();
        batch.add(a, &[act(20_000, "games", 1), act(20_000, "games", 2)]);
        batch.add(
            a,
            &[FeatureDelta::Declare {
                field: "age_band".into(),
                value: "18-24".into(),
            }],
        );
        batch.add(
            a,
            &[FeatureDelta::Undeclare {
                field: "age_band".into(),
            }],
        );
        batch.add(b, &[act(20_000, "games", 1), act(20_001, "news", 0)]);
        assert_eq!(batch.len(), 3);
        let a_games = batch
            .activity_features()
            .find(|(s, _)| *s == a)
            .unwrap()
            .1
            .count;
        assert_eq!(a_games, 3);
        assert_eq!(batch.declared[&(a, "age_band".to_owned())], None);
        batch.forget(&a);
        assert_eq!(batch.subjects().into_iter().collect::<Vec<_>>(), vec![b]);
        assert!(feeds(Some(2), PurposeSet::single(2), true));
        assert!(!feeds(Some(2), PurposeSet::single(1), true));
        assert!(!feeds(None, PurposeSet::single(2), true));
        assert!(!feeds(Some(2), PurposeSet::single(2), false));
    }
}
