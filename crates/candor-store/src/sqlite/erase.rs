//! Erasure on SQLite: what `plan::erase` decided, carried out by the writer thread in a
//! transaction of its own (so `kill -9` leaves it complete or not started), then the
//! caches forgotten and the WAL checkpointed.
//!
//! Why the checkpoint: with `secure_delete` on, the pages an erasure rewrites reach the
//! WAL with the freed bytes zeroed, but the WAL still holds the *older* images of those
//! pages until it is checkpointed and reset. `wal_checkpoint(TRUNCATE)` copies the new
//! images into the main file and truncates the WAL to nothing. It cannot finish while a
//! reader holds an older snapshot; the writer then tries again a few times, and failing
//! that logs it (the erasure is committed either way, and the next successful
//! checkpoint of the writer's, at shutdown at the latest, removes the old images).

use super::writer::{FeatureEffect, Writer};
use crate::plan::erase::{self, SUBJECT_TABLES};
use crate::types::*;
use crate::{statements as q, StoreError};
use rusqlite::params;

/// How often a checkpoint blocked by readers is tried again, and how long apart.
const CHECKPOINT_TRIES: u32 = 20;
const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

impl Writer {
    /// Erases `req.subject` (between groups: the writer is idle otherwise).
    pub(super) fn erase(&mut self, req: &Erasure) -> Result<ErasureOutcome, StoreError> {
        self.exec("BEGIN IMMEDIATE")?;
        let res = self.erase_in_tx(req);
        let res = match res {
            Ok(done) => match self.exec("COMMIT") {
                Ok(()) => Ok(done),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        };
        let (outcome, dedup) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        // Durable now: forget the subject everywhere this process holds it.
        self.head = erase_head(&outcome);
        for k in &dedup {
            self.dedup.remove(k);
        }
        self.log.forget(&req.subject);
        self.log
            .committed(&self.caches, vec![FeatureEffect::Forget(req.subject)], 0);
        self.caches.forget(req.subject);
        self.checkpoint();
        Ok(outcome)
    }

    fn erase_in_tx(
        &mut self,
        req: &Erasure,
    ) -> Result<(ErasureOutcome, Vec<[u8; 16]>), StoreError> {
        let sid = &req.subject.as_bytes()[..];
        // The subject's row, with its wrapped data key, first: none means unknown (or
        // erased already), and nothing else is touched.
        let gone = self
            .conn
            .prepare_cached(q::DELETE_SUBJECT)?
            .execute(params![sid])?;
        if gone == 0 {
            return Err(StoreError::UnknownSubject);
        }
        if req.only_if_abandoned {
            for s in erase::ABANDONED_UNLESS {
                if self.conn.prepare_cached(s)?.exists(params![sid])? {
                    return Err(StoreError::NotAbandoned);
                }
            }
        }
        let mut deleted = ErasedCounts::default();
        for t in SUBJECT_TABLES {
            let n = self
                .conn
                .prepare_cached(&t.delete_sql())?
                .execute(params![sid])?;
            *t.count(&mut deleted) = n as u64;
        }
        // No index on events.subject_id (see `schema`): this scans the log once.
        let mut dedup = Vec::new();
        {
            let mut st = self
                .conn
                .prepare_cached("DELETE FROM events WHERE subject_id = ?1 RETURNING dedup_key")?;
            let mut rows = st.query(params![sid])?;
            while let Some(r) = rows.next()? {
                let k: Vec<u8> = r.get(0)?;
                if let Ok(k) = <[u8; 16]>::try_from(k.as_slice()) {
                    dedup.push(k);
                }
            }
        }
        deleted.events = dedup.len() as u64;
        deleted.dedup_keys = dedup.iter().filter(|k| self.dedup.contains(k)).count() as u64;
        self.conn
            .prepare_cached(
                "INSERT INTO insight_dense_next (id, next) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET next = max(next, excluded.next)",
            )?
            .execute(params![i64::from(self.log.next_dense())])?;
        let plan = erase::plan(req, self.head, &self.caches.signer);
        super::consent::append(self, sid, &plan.record)?;
        self.conn
            .prepare_cached(
                "INSERT INTO ledger_head (id, seq, hash) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            )?
            .execute(params![plan.head.seq as i64, &plan.head.hash[..]])?;
        Ok((
            ErasureOutcome {
                subject: req.subject,
                deleted,
                record: plan.record,
            },
            dedup,
        ))
    }

    /// Moves every WAL frame into the main file and truncates the WAL (see the module
    /// documentation for why, and what happens when readers keep it from finishing).
    fn checkpoint(&self) {
        for _ in 0..CHECKPOINT_TRIES {
            match self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                }) {
                Ok(0) => return,
                Ok(_) => std::thread::sleep(CHECKPOINT_PAUSE),
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoint after an erasure failed");
                    return;
                }
            }
        }
        tracing::warn!(
            "checkpoint after an erasure kept waiting for readers; the WAL keeps older page images until the next checkpoint"
        );
    }
}

fn erase_head(o: &ErasureOutcome) -> candor_core::ledger::Head {
    candor_core::ledger::Head {
        seq: o.record.entry.seq,
        hash: o.record.hash,
    }
}
