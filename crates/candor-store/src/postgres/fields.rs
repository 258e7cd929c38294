//! Volunteered fields on PostgreSQL: each write is a small transaction of its own on the
//! pool, beside the writer's groups. The subject's row is locked (shared) first, so a
//! write cannot slip past a transaction that deletes the subject (erasure) and leave a
//! row behind it.

use super::{sql, Shared};
use crate::front::FieldOp;
use crate::{statements as q, StoreError};

pub(super) async fn apply(shared: &Shared, op: &FieldOp) -> Result<bool, StoreError> {
    crate::retry::retrying("field", || async {
        let mut c = shared.pool.get().await?;
        let tx = c.transaction().await?;
        // Other nodes learn of the change when it commits (`listen`).
        let changed: Vec<candor_core::SubjectId> = match op {
            FieldOp::Set(writes) => writes.iter().map(|w| w.subject).collect(),
            FieldOp::Remove { subject, .. } => vec![*subject],
        };
        super::listen::notify_fields(&tx, &changed).await?;
        let done = match op {
            FieldOp::Set(writes) => {
                // Subjects locked in one order, so two such transactions cannot deadlock
                // on them.
                let mut subjects: Vec<&[u8]> =
                    writes.iter().map(|f| &f.subject.as_bytes()[..]).collect();
                subjects.sort_unstable();
                subjects.dedup();
                for subject in &subjects {
                    let exists = sql::query_opt(
                        &tx,
                        "SELECT 1 FROM subjects WHERE subject_id = $1 FOR SHARE",
                        &[subject],
                    )
                    .await?
                    .is_some();
                    if !exists {
                        return Err(StoreError::UnknownSubject);
                    }
                }
                for f in writes {
                    sql::execute(
                        &tx,
                        q::UPSERT_FIELD,
                        &[
                            &&f.subject.as_bytes()[..],
                            &f.field,
                            &f.sealed,
                            &f.provenance,
                            &f.time_ms,
                        ],
                    )
                    .await?;
                }
                true
            }
            FieldOp::Remove { subject, field } => {
                sql::execute(&tx, q::DELETE_FIELD, &[&&subject.as_bytes()[..], field]).await? > 0
            }
        };
        tx.commit().await?;
        Ok(done)
    })
    .await
}
