//! The `messageId` de-duplication window: keys seen in the last 24 hours, in memory.
//!
//! Segment itself de-duplicates within a window of about a day, and SDKs retry within
//! seconds to minutes, so a window is what clients rely on. Holding it in memory keeps
//! the event table free of a random-key unique index, whose page-per-row writes were the
//! bottleneck of ingestion. The window is rebuilt from the stored `dedup_key` column at
//! start, so it survives restarts and crashes.
//!
//! Memory: about 40 bytes per event received in the window.

use candor_core::idhash::IdSet;
use std::collections::VecDeque;

const HOUR_MS: i64 = 3_600_000;

pub struct DedupWindow {
    hours: i64,
    /// (hour, keys first seen in that hour), oldest first.
    buckets: VecDeque<(i64, IdSet<[u8; 16]>)>,
}

impl DedupWindow {
    pub fn new(window_ms: i64) -> Self {
        Self {
            hours: (window_ms / HOUR_MS).max(1),
            buckets: VecDeque::new(),
        }
    }

    pub fn contains(&self, key: &[u8; 16]) -> bool {
        self.buckets.iter().any(|(_, b)| b.contains(key))
    }

    pub fn insert(&mut self, key: [u8; 16], at_ms: i64) {
        let hour = at_ms.div_euclid(HOUR_MS);
        match self.buckets.back_mut() {
            Some((h, b)) if *h >= hour => {
                b.insert(key);
            }
            _ => {
                let mut set = IdSet::default();
                set.insert(key);
                self.buckets.push_back((hour, set));
            }
        }
        let newest = self.buckets.back().map_or(hour, |(h, _)| *h);
        while self
            .buckets
            .front()
            .is_some_and(|(h, _)| *h <= newest - self.hours)
        {
            self.buckets.pop_front();
        }
    }

    /// Forgets a key (its event was erased).
    pub fn remove(&mut self, key: &[u8; 16]) {
        for (_, b) in &mut self.buckets {
            b.remove(key);
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(|(_, b)| b.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let mut w = DedupWindow::new(24 * HOUR_MS);
        w.insert([1; 16], 0);
        w.insert([2; 16], 5 * HOUR_MS);
        assert!(w.contains(&[1; 16]) && w.contains(&[2; 16]));
        w.insert([3; 16], 24 * HOUR_MS + 1);
        assert!(!w.contains(&[1; 16]), "older than the window");
        assert!(w.contains(&[2; 16]) && w.contains(&[3; 16]));
        assert_eq!(w.len(), 2);
    }
}
