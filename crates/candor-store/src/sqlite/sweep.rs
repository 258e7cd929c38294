//! The sweeper on SQLite: carries out `plan::floors::SweepPass` in small transactions on
//! the writer thread, between ingestion groups (see `plan::floors` for what a pass does).

use crate::plan::floors::SweepPass;
use crate::rows::Col;
use crate::StoreError;
use rusqlite::{params, Connection};

const CHUNK: i64 = 20_000;

#[derive(Default)]
pub(super) struct Sweeper {
    pass: Option<SweepPass>,
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
        match chunk(conn, pass) {
            Ok(done) => {
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

pub(super) fn pending(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM purpose_floors", [], |r| r.get(0))?)
}

fn load(conn: &Connection) -> Result<Option<SweepPass>, StoreError> {
    let mut st = conn.prepare_cached("SELECT subject_id, bit, upto_id FROM purpose_floors")?;
    let mut rows = st.query([])?;
    let mut floors = Vec::new();
    while let Some(r) = rows.next()? {
        floors.push((
            r.subject(0)?,
            u8::try_from(r.int(1)?).unwrap_or(u8::MAX),
            r.int(2)?,
        ));
    }
    Ok(SweepPass::new(floors))
}

/// One chunk; returns true when the pass reached its end (and deleted its floors).
fn chunk(conn: &Connection, pass: &mut SweepPass) -> Result<bool, StoreError> {
    let (from, to) = pass.range();
    let mut rows = Vec::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT id, subject_id, purposes FROM events WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3",
        )?;
        let mut q = st.query(params![from, to, CHUNK])?;
        while let Some(r) = q.next()? {
            rows.push((r.int(0)?, r.subject(1)?, r.int(2)? as u64, ()));
        }
    }
    let (rewrites, done) = pass.chunk(rows);
    for rw in rewrites {
        if rw.left == 0 {
            conn.prepare_cached("DELETE FROM events WHERE id = ?1")?
                .execute(params![rw.id])?;
        } else {
            conn.prepare_cached("UPDATE events SET purposes = ?2 WHERE id = ?1")?
                .execute(params![rw.id, rw.left as i64])?;
        }
    }
    if done {
        let mut del = conn.prepare_cached(
            "DELETE FROM purpose_floors WHERE subject_id = ?1 AND bit = ?2 AND upto_id = ?3",
        )?;
        for (s, bit, upto) in pass.applied() {
            del.execute(params![&s.as_bytes()[..], bit, upto])?;
        }
    }
    Ok(done)
}
