//! Loading this node's caches (consent index, identity map) from the database: all of
//! them at open and at every full resync, or a few subjects when another node says
//! they changed.
//!
//! Identities are only ever added today (erasure is a later issue), so the identity
//! map is merged rather than replaced: replacing it with a snapshot could briefly drop
//! a link this node's writer published after the snapshot was read.

use super::Shared;
use crate::StoreError;
use candor_core::crypto::LookupHash;
use candor_core::idhash::IdMap;
use candor_core::{PurposeSet, SubjectId};
use tokio_postgres::Client;

/// Granted set and version (highest ledger seq) per subject, from `consent_state` rows
/// of (subject, purpose, status, seq).
fn fold(
    shared: &Shared,
    rows: &[tokio_postgres::Row],
    into: &mut IdMap<SubjectId, (PurposeSet, u64)>,
) -> Result<(), StoreError> {
    for r in rows {
        let s = subject(r.get(0))?;
        let entry = into.entry(s).or_insert((PurposeSet::EMPTY, 0));
        if r.get::<_, &str>(2) == "given" {
            entry.0 = entry.0.union(shared.granted_of([r.get::<_, &str>(1)]));
        }
        entry.1 = entry.1.max(u64::try_from(r.get::<_, i64>(3)).unwrap_or(0));
    }
    Ok(())
}

/// Reloads everything.
pub async fn full_resync(shared: &Shared, client: &Client) -> Result<(), StoreError> {
    let rows = client
        .query(
            "SELECT subject_id, purpose_id, status, seq FROM consent_state",
            &[],
        )
        .await?;
    let mut granted: IdMap<SubjectId, (PurposeSet, u64)> = IdMap::default();
    fold(shared, &rows, &mut granted)?;
    let rows = client
        .query("SELECT lookup_hash, subject_id FROM identity_lookup", &[])
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        ids.push((hash(r.get(0))?, subject(r.get(1))?));
    }
    shared.ids.write().extend(ids);
    shared.publish_all_granted(granted);
    Ok(())
}

/// Reloads the granted set and identities of `subjects`.
pub async fn reload(
    shared: &Shared,
    client: &Client,
    subjects: &[SubjectId],
) -> Result<(), StoreError> {
    if subjects.is_empty() {
        return Ok(());
    }
    let keys: Vec<&[u8]> = subjects.iter().map(|s| &s.as_bytes()[..]).collect();
    let rows = client
        .query(
            "SELECT subject_id, purpose_id, status, seq FROM consent_state WHERE subject_id = ANY($1)",
            &[&keys],
        )
        .await?;
    let mut granted: IdMap<SubjectId, (PurposeSet, u64)> = IdMap::default();
    fold(shared, &rows, &mut granted)?;
    let rows = client
        .query(
            "SELECT lookup_hash, subject_id FROM identities WHERE subject_id = ANY($1)",
            &[&keys],
        )
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        ids.push((hash(r.get(0))?, subject(r.get(1))?));
    }
    shared.ids.write().extend(ids);
    shared.publish_all_granted(granted);
    Ok(())
}

pub fn subject(b: &[u8]) -> Result<SubjectId, StoreError> {
    Ok(SubjectId::from_bytes(b.try_into().map_err(|_| {
        StoreError::Corrupt("subject id: expected 16 bytes".into())
    })?))
}

pub fn hash(b: &[u8]) -> Result<LookupHash, StoreError> {
    Ok(LookupHash(b.try_into().map_err(|_| {
        StoreError::Corrupt("lookup hash: expected 32 bytes".into())
    })?))
}
