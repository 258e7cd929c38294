//! Purpose floors: how a withdrawal is in force for stored events at once, and how the
//! sweeper makes it physical later.
//!
//! A withdrawal commits a floor (subject, purpose bit, highest event id so far) in the
//! same transaction as its ledger record. Every read of events masks the floored bits
//! off the rows at or below the floor ([`mask`]); the sweeper then rewrites the rows
//! (removing the bits, deleting rows left with none) in passes ([`SweepPass`]) and at the
//! end deletes exactly the floors it applied, so a floor that a newer withdrawal moved
//! meanwhile stays for the next pass.

use candor_core::idhash::IdMap;
use candor_core::SubjectId;

/// Floors per subject: (bit, highest event id it covers).
pub type Floors = IdMap<SubjectId, Vec<(u8, i64)>>;

/// The purposes floored for an event of a subject with these floors and id `id`.
pub fn mask(floors: &[(u8, i64)], id: i64) -> u64 {
    floors
        .iter()
        .filter(|(_, upto)| id <= *upto)
        .fold(0u64, |m, (bit, _)| m | 1u64.wrapping_shl(u32::from(*bit)))
}

/// One sweeper pass over the events up to the highest floor, in id chunks.
#[derive(Debug)]
pub struct SweepPass {
    floors: Floors,
    max_upto: i64,
    cursor: i64,
}

/// A stored row to change: drop `mask` from its purposes; `left` is what remains (the
/// row is deleted when nothing does). `extra` is what the backend needs to find the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite<T> {
    pub id: i64,
    pub mask: u64,
    pub left: u64,
    pub extra: T,
}

impl SweepPass {
    /// A pass over these floors, `None` when there are none.
    pub fn new(rows: impl IntoIterator<Item = (SubjectId, u8, i64)>) -> Option<Self> {
        let mut floors = Floors::default();
        let mut max_upto = 0;
        for (s, bit, upto) in rows {
            max_upto = max_upto.max(upto);
            floors.entry(s).or_default().push((bit, upto));
        }
        (!floors.is_empty()).then_some(Self {
            floors,
            max_upto,
            cursor: 0,
        })
    }

    /// Where the next chunk starts (exclusive) and ends (inclusive).
    pub fn range(&self) -> (i64, i64) {
        (self.cursor, self.max_upto)
    }

    /// The rewrites for a chunk of rows `(id, subject, purposes, extra)` read in id order
    /// from [`SweepPass::range`], and whether the pass is done after it.
    pub fn chunk<T>(
        &mut self,
        rows: impl IntoIterator<Item = (i64, SubjectId, u64, T)>,
    ) -> (Vec<Rewrite<T>>, bool) {
        let mut out = Vec::new();
        let mut last = self.cursor;
        for (id, subject, purposes, extra) in rows {
            last = id;
            if let Some(f) = self.floors.get(&subject) {
                let m = mask(f, id);
                if purposes & m != 0 {
                    out.push(Rewrite {
                        id,
                        mask: m,
                        left: purposes & !m,
                        extra,
                    });
                }
            }
        }
        let done = last >= self.max_upto || last == self.cursor;
        self.cursor = last;
        (out, done)
    }

    /// The floors this pass applies (to delete, exactly as read, when it is done).
    pub fn applied(&self) -> impl Iterator<Item = (SubjectId, u8, i64)> + '_ {
        self.floors
            .iter()
            .flat_map(|(s, list)| list.iter().map(move |(b, u)| (*s, *b, *u)))
    }
}

/// A page of events with floors applied: at most `limit` that some purpose may still
/// use, in id order, however many hidden rows it has to skip. A backend reads chunks
/// where [`Page::next`] says, loads the floors of the subjects [`Page::unknown`] names,
/// and hands the chunk to [`Page::take`], until `next` says the page is complete.
#[derive(Debug)]
pub struct Page {
    out: Vec<crate::types::StoredEvent>,
    floors: Floors,
    cursor: i64,
    limit: usize,
    exhausted: bool,
}

impl Page {
    pub fn new(after: i64, limit: usize) -> Self {
        Self {
            out: Vec::new(),
            floors: Floors::default(),
            cursor: after,
            limit,
            exhausted: false,
        }
    }

    /// The id the next chunk starts after, `None` once the page is complete.
    pub fn next(&self) -> Option<i64> {
        (!self.exhausted && self.out.len() < self.limit).then_some(self.cursor)
    }

    /// Subjects of `chunk` whose floors are not loaded yet.
    pub fn unknown(&self, chunk: &[crate::types::StoredEvent]) -> Vec<SubjectId> {
        let mut v: Vec<SubjectId> = chunk
            .iter()
            .map(|e| e.subject)
            .filter(|s| !self.floors.contains_key(s))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Records the floors of subjects [`Page::unknown`] named (one row per floor; a
    /// subject with none is recorded with none).
    pub fn floors(
        &mut self,
        subjects: &[SubjectId],
        rows: impl IntoIterator<Item = (SubjectId, u8, i64)>,
    ) {
        for s in subjects {
            self.floors.entry(*s).or_default();
        }
        for (s, bit, upto) in rows {
            self.floors.entry(s).or_default().push((bit, upto));
        }
    }

    /// Takes a chunk read in id order with purposes as stored: keeps what some purpose
    /// may still use, masked, up to the limit.
    pub fn take(&mut self, chunk: Vec<crate::types::StoredEvent>) {
        if chunk.is_empty() {
            self.exhausted = true;
        }
        for mut e in chunk {
            if self.out.len() >= self.limit {
                break;
            }
            self.cursor = e.id;
            let m = self.floors.get(&e.subject).map_or(0, |f| mask(f, e.id));
            e.purposes = candor_core::PurposeSet::from_bits(e.purposes.bits() & !m);
            if !e.purposes.is_empty() {
                self.out.push(e);
            }
        }
    }

    pub fn into_events(self) -> Vec<crate::types::StoredEvent> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_rewrites_only_floored_rows_up_to_their_floor() {
        let (a, b) = (SubjectId::random(), SubjectId::random());
        let mut pass = SweepPass::new([(a, 0, 5), (a, 2, 3), (b, 1, 9)]).unwrap();
        assert_eq!(pass.range(), (0, 9));
        let (rw, done) = pass.chunk([
            (2, a, 0b101, ()),
            (4, a, 0b101, ()),
            (6, a, 0b001, ()),
            (7, b, 0b011, ()),
        ]);
        assert!(!done);
        assert_eq!(
            rw.iter()
                .map(|r| (r.id, r.mask, r.left))
                .collect::<Vec<_>>(),
            vec![(2, 0b101, 0), (4, 0b001, 0b100), (7, 0b010, 0b001)]
        );
        assert_eq!(pass.range(), (7, 9));
        let (rw, done) = pass.chunk(std::iter::empty::<(i64, SubjectId, u64, ())>());
        assert!(rw.is_empty() && done, "no rows left: the pass ends");
        assert_eq!(pass.applied().count(), 3);
        assert!(SweepPass::new([]).is_none());
    }
}
