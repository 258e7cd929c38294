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

/// Reloads everything.
pub async fn full_resync(shared: &Shared, client: &Client) -> Result<(), StoreError> {
    let rows = client
        .query(
            "SELECT subject_id, purpose_id FROM consent_state WHERE status = 'given'",
            &[],
        )
        .await?;
    let mut granted: IdMap<SubjectId, PurposeSet> = IdMap::default();
    for r in &rows {
        let s = subject(r.get(0))?;
        let g = shared.granted_of([r.get::<_, &str>(1)]);
        let entry = granted.entry(s).or_default();
        *entry = entry.union(g);
    }
    granted.retain(|_, g| !g.is_empty());
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
            "SELECT subject_id, purpose_id FROM consent_state
             WHERE subject_id = ANY($1) AND status = 'given'",
            &[&keys],
        )
        .await?;
    let mut granted: IdMap<SubjectId, PurposeSet> =
        subjects.iter().map(|s| (*s, PurposeSet::EMPTY)).collect();
    for r in &rows {
        let s = subject(r.get(0))?;
        let g = shared.granted_of([r.get::<_, &str>(1)]);
        let entry = granted.entry(s).or_default();
        *entry = entry.union(g);
    }
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
    for (s, g) in granted {
        shared.publish_granted(s, g);
    }
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
