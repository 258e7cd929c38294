//! The sweeper: rewrites stored events after withdrawals, in small transactions on the
//! writer thread, between ingestion groups.
//!
//! A withdrawal commits a purpose floor (subject, purpose, highest event id at that
//! moment) in the same transaction as the ledger record, and every read applies the
//! floors, so the withdrawal is in force at once. The sweeper makes it physical: one
//! pass scans events up to the highest floor, removes floored purposes from matching
//! rows (deleting rows left with none), and at the end deletes the floors it applied,
//! unless a newer withdrawal replaced one meanwhile.

use crate::StoreError;
use candor_core::SubjectId;
use rusqlite::{params, Connection};
use std::collections::HashMap;

const CHUNK: i64 = 20_000;

#[derive(Default)]
pub struct Sweeper {
    pass: Option<Pass>,
}

struct Pass {
    floors: HashMap<SubjectId, Vec<(u8, i64)>>,
    max_upto: i64,
    cursor: i64,
}

impl Sweeper {
    /// Runs one chunk in its own transaction. Returns true while work remains.
    pub fn step(&mut self, conn: &Connection) -> Result<bool, StoreError> {
        if self.pass.is_none() {
            self.pass = load(conn)?;
        }
        let Some(pass) = self.pass.as_mut() else {
            return Ok(false);
        };
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let res = chunk(conn, pass);
        match res {
            Ok(done) => {
                if done {
                    let mut del = conn.prepare_cached(
                        "DELETE FROM purpose_floors WHERE subject_id = ?1 AND bit = ?2 AND upto_id = ?3",
                    )?;
                    for (s, list) in &pass.floors {
                        for (bit, upto) in list {
                            del.execute(params![&s.as_bytes()[..], bit, upto])?;
                        }
                    }
                }
                conn.execute_batch("COMMIT")?;
                if done {
                    self.pass = None;
                    // Floors written during this pass are picked up by the next one.
                    return Ok(pending(conn)? > 0);
                }
                Ok(true)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                self.pass = None;
                Err(e)
            }
        }
    }
}

pub fn pending(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM purpose_floors", [], |r| r.get(0))?)
}

fn load(conn: &Connection) -> Result<Option<Pass>, StoreError> {
    let mut st = conn.prepare_cached("SELECT subject_id, bit, upto_id FROM purpose_floors")?;
    let mut rows = st.query([])?;
    let mut floors: HashMap<SubjectId, Vec<(u8, i64)>> = HashMap::new();
    let mut max_upto = 0;
    while let Some(r) = rows.next()? {
        let upto: i64 = r.get(2)?;
        max_upto = max_upto.max(upto);
        floors
            .entry(SubjectId::from_bytes(super::blob16(r, 0)?))
            .or_default()
            .push((r.get(1)?, upto));
    }
    Ok((!floors.is_empty()).then_some(Pass {
        floors,
        max_upto,
        cursor: 0,
    }))
}

/// The purposes floored for an event of `subject` with id `id`.
pub fn mask(floors: &[(u8, i64)], id: i64) -> u64 {
    floors
        .iter()
        .filter(|(_, upto)| id <= *upto)
        .fold(0u64, |m, (bit, _)| m | 1u64.wrapping_shl(u32::from(*bit)))
}

/// One chunk; returns true when the pass reached its end.
fn chunk(conn: &Connection, pass: &mut Pass) -> Result<bool, StoreError> {
    let mut changes: Vec<(i64, u64)> = Vec::new();
    let mut last = pass.cursor;
    {
        let mut st = conn.prepare_cached(
            "SELECT id, subject_id, purposes FROM events WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3",
        )?;
        let mut rows = st.query(params![pass.cursor, pass.max_upto, CHUNK])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            last = id;
            let subject = SubjectId::from_bytes(super::blob16(r, 1)?);
            if let Some(f) = pass.floors.get(&subject) {
                let purposes = r.get::<_, i64>(2)? as u64;
                let m = mask(f, id);
                if purposes & m != 0 {
                    changes.push((id, purposes & !m));
                }
            }
        }
    }
    for (id, left) in changes {
        if left == 0 {
            conn.prepare_cached("DELETE FROM events WHERE id = ?1")?
                .execute(params![id])?;
        } else {
            conn.prepare_cached("UPDATE events SET purposes = ?2 WHERE id = ?1")?
                .execute(params![id, left as i64])?;
        }
    }
    let done = last >= pass.max_upto || last == pass.cursor;
    pass.cursor = last;
    Ok(done)
}
