//! Loading this node's caches (consent index, identity map) from the database: all of
//! them at open and at every full resync, or a few subjects when another node says
//! they changed.
//!
//! The identity map is merged rather than replaced: replacing it with a snapshot could
//! briefly drop a link this node's writer published after the snapshot was read.
//! Identities go only with their subject's erasure, which is handled apart: the erased
//! subjects are read *after* the snapshot (so every erasure the snapshot missed is among
//! them) and forgotten *before* it is published, and a forgotten subject is never
//! published again (`Caches::forget`).

use super::Shared;
use crate::rows::Col;
use crate::StoreError;
use candor_core::crypto::LookupHash;
use candor_core::SubjectId;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// Reloads everything.
pub(super) async fn full_resync(shared: &Shared, client: &Client) -> Result<(), StoreError> {
    load(
        shared,
        client,
        "SELECT subject_id, purpose_id, status, seq FROM consent_state",
        "SELECT lookup_hash, subject_id FROM identity_lookup",
        Erased::Listed("SELECT subject_id FROM ledger WHERE status = 'erased'"),
        &[],
    )
    .await
}

/// Reloads the granted set and identities of `subjects`.
pub(super) async fn reload(
    shared: &Shared,
    client: &Client,
    subjects: &[SubjectId],
) -> Result<(), StoreError> {
    if subjects.is_empty() {
        return Ok(());
    }
    let keys: Vec<&[u8]> = subjects.iter().map(|s| &s.as_bytes()[..]).collect();
    load(
        shared,
        client,
        "SELECT subject_id, purpose_id, status, seq FROM consent_state WHERE subject_id = ANY($1)",
        "SELECT lookup_hash, subject_id FROM identities WHERE subject_id = ANY($1)",
        // A subject named in a notification whose row is gone was erased (the
        // notification is sent only once the subject exists or its erasure commits).
        Erased::Missing(
            "SELECT subject_id FROM subjects WHERE subject_id = ANY($1)",
            subjects,
        ),
        &[&keys],
    )
    .await
}

/// How to find the erased subjects a load must forget.
enum Erased<'a> {
    /// This query lists them.
    Listed(&'a str),
    /// Those of these subjects that this query (of existing subjects) does not return.
    /// (Not one `unnest … WHERE NOT EXISTS` query: Citus refuses a correlated subquery
    /// beside a set-returning function.)
    Missing(&'a str, &'a [SubjectId]),
}

async fn load(
    shared: &Shared,
    client: &Client,
    states: &str,
    idents: &str,
    erased: Erased<'_>,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), StoreError> {
    let rows = client.query(states, params).await?;
    let rows: Vec<_> = rows
        .iter()
        .map(|r| Ok((r.subject(0)?, r.text(1)?, r.text(2)?, r.int(3)?)))
        .collect();
    let ids = client
        .query(idents, params)
        .await?
        .iter()
        .map(|r| Ok((LookupHash(r.blob_n(0, "lookup hash")?), r.subject(1)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let gone: Vec<SubjectId> = match erased {
        Erased::Listed(q) => client
            .query(q, params)
            .await?
            .iter()
            .map(|r| r.subject(0))
            .collect::<Result<_, _>>()?,
        Erased::Missing(q, candidates) => {
            let present = client
                .query(q, params)
                .await?
                .iter()
                .map(|r| r.subject(0))
                .collect::<Result<std::collections::HashSet<_>, _>>()?;
            candidates
                .iter()
                .filter(|s| !present.contains(s))
                .copied()
                .collect()
        }
    };
    for s in gone {
        if shared.forget(s) {
            shared.dense.lock().remove(&s);
        }
    }
    shared.publish_ids(ids);
    shared.publish_state_rows(rows)
}
