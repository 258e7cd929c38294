//! Volunteered fields on SQLite, carried out inside the writer's group (in a savepoint,
//! so a refused write rolls back alone). The single writer is what orders a field write
//! with a deletion of its subject, so checking the subject first is enough.

use crate::front::FieldOp;
use crate::{statements as q, StoreError};
use rusqlite::{params, Connection};

pub(super) fn apply(conn: &Connection, op: &FieldOp) -> Result<bool, StoreError> {
    match op {
        FieldOp::Set(writes) => {
            for f in writes {
                let exists = conn
                    .prepare_cached(q::SUBJECT_KEY)?
                    .exists(params![&f.subject.as_bytes()[..]])?;
                if !exists {
                    // The savepoint rolls back what this job wrote before.
                    return Err(StoreError::UnknownSubject);
                }
                conn.prepare_cached(q::UPSERT_FIELD)?.execute(params![
                    &f.subject.as_bytes()[..],
                    f.field,
                    f.sealed,
                    f.provenance,
                    f.time_ms
                ])?;
            }
            Ok(true)
        }
        FieldOp::Remove { subject, field } => {
            let removed = conn
                .prepare_cached(q::DELETE_FIELD)?
                .execute(params![&subject.as_bytes()[..], field])?;
            Ok(removed > 0)
        }
    }
}
