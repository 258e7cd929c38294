//! What the writer's open transaction sees: the changes earlier jobs of the group
//! staged (not yet published: the group has not committed) over the committed caches.
//! Consent and ingest jobs resolve identifiers, read granted purposes and subject keys,
//! and link new identifiers through these.

use super::writer::{Pending, Writer};
use crate::seal::SealedIdentity;
use crate::StoreError;
use candor_core::crypto::{LookupHash, SubjectKey};
use candor_core::{PurposeSet, SubjectId};
use rusqlite::params;

impl Writer {
    /// The subject an identifier resolves to, as this transaction sees it.
    pub fn lookup(&self, h: &LookupHash, group: &Pending, job: &Pending) -> Option<SubjectId> {
        job.caches
            .resolve(h)
            .or_else(|| group.caches.resolve(h))
            .or_else(|| self.caches.resolve(h))
    }

    /// The subject's granted purposes, as this transaction sees them.
    pub fn granted(&self, s: &SubjectId, group: &Pending, job: &Pending) -> PurposeSet {
        job.caches
            .granted
            .get(s)
            .or_else(|| group.caches.granted.get(s))
            .map(|g| g.0)
            .unwrap_or_else(|| self.caches.index.granted(s))
    }

    pub fn key(
        &self,
        s: SubjectId,
        group: &Pending,
        job: &Pending,
    ) -> Result<SubjectKey, StoreError> {
        if let Some(k) = job
            .caches
            .keys
            .get(&s)
            .or_else(|| group.caches.keys.get(&s))
        {
            return Ok(k.clone());
        }
        if let Some(k) = self.caches.key(&s) {
            return Ok(k);
        }
        super::read::subject_key(&self.conn, &self.caches.master, s)?
            .ok_or(StoreError::UnknownSubject)
    }

    /// Links a sealed identifier to `subject` unless it already resolves (possibly to
    /// another subject: identities are never merged silently, since that would move one
    /// person's consent onto another).
    pub fn link(
        &self,
        subject: SubjectId,
        ident: &SealedIdentity,
        now_ms: i64,
        group: &Pending,
        job: &mut Pending,
    ) -> Result<(), StoreError> {
        if self.lookup(&ident.hash, group, job).is_some() {
            return Ok(());
        }
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO identities (lookup_hash, subject_id, kind, sealed_value, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &ident.hash.0[..],
                &subject.as_bytes()[..],
                ident.kind.code(),
                ident.sealed,
                now_ms
            ])?;
        job.caches.ids.insert(ident.hash, subject);
        Ok(())
    }
}
