//! Erasure for the operator's command line (`candor erase`): naming whom to erase (a
//! subject id, a user id resolved through its lookup hash, or a file of subject ids),
//! and erasing each in a transaction of its own through `Store::erase`.
//!
//! A file is read whole and checked line by line first; a bad line is reported by its
//! number and nothing is done for it, while the good ones are erased one by one, each
//! complete or not at all (a crash part-way leaves earlier lines erased and later ones
//! intact; running the same file again erases what is left and reports the rest as
//! already gone). Reports name lines and pseudonymous subject ids only, never a user id.

use candor_core::consent::Channel;
use candor_core::crypto::{IdKind, MasterKey};
use candor_core::ledger::Actor;
use candor_core::{SubjectId, UnixMillis};
use candor_store::{Erasure, ErasureOutcome, RequestKind, Store, StoreError};
use std::io::BufRead;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EraseError {
    #[error("not a subject id (32 lowercase hex characters)")]
    BadSubjectId,
    #[error("no subject has this user id")]
    UnknownUserId,
    #[error("no such subject (never existed, or erased already)")]
    UnknownSubject,
    #[error("store: {0}")]
    Store(StoreError),
}

impl From<StoreError> for EraseError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownSubject => EraseError::UnknownSubject,
            other => EraseError::Store(other),
        }
    }
}

/// The subject a user id resolves to (through its keyed lookup hash, as loaded by the
/// store at open).
pub fn resolve_user_id(
    store: &dyn Store,
    master: &MasterKey,
    user_id: &str,
) -> Result<SubjectId, EraseError> {
    store
        .resolve(&master.lookup_hash(IdKind::UserId, user_id))
        .ok_or(EraseError::UnknownUserId)
}

pub fn parse_subject(s: &str) -> Result<SubjectId, EraseError> {
    SubjectId::parse(s.trim()).map_err(|_| EraseError::BadSubjectId)
}

/// Erases one subject on the operator's behalf (`Actor::Admin`, channel `api`).
pub async fn erase(store: &dyn Store, subject: SubjectId) -> Result<ErasureOutcome, EraseError> {
    let now = now_ms();
    // Recorded as a request the operator answered (channel `cli`), like the person's
    // own requests through the API and the page, so the list of requests shows it.
    let request = store
        .open_request(subject, RequestKind::Erasure, "cli", UnixMillis(now))
        .await?;
    let result = store
        .erase(Erasure {
            subject,
            actor: Actor::Admin,
            channel: Channel::Api,
            time_ms: UnixMillis(now),
            only_if_abandoned: false,
        })
        .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(StoreError::UnknownSubject) => "subject_not_found",
        Err(_) => "failed",
    };
    store
        .close_request(request, UnixMillis(now_ms()), outcome)
        .await?;
    Ok(result?)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What became of one line of a file.
pub struct LineReport {
    /// 1-based.
    pub line: usize,
    pub result: Result<ErasureOutcome, EraseError>,
}

/// Reads a file of subject ids (one a line; blank lines and `#` comments skipped).
pub fn parse_file(
    reader: impl BufRead,
) -> std::io::Result<Vec<(usize, Result<SubjectId, EraseError>)>> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        out.push((i + 1, parse_subject(t)));
    }
    Ok(out)
}

/// Erases every good line, each in its own transaction, calling `each` as it goes.
pub async fn erase_lines(
    store: &dyn Store,
    lines: Vec<(usize, Result<SubjectId, EraseError>)>,
    mut each: impl FnMut(&LineReport),
) -> Vec<LineReport> {
    let mut out = Vec::with_capacity(lines.len());
    for (line, parsed) in lines {
        let result = match parsed {
            Ok(s) => erase(store, s).await,
            Err(e) => Err(e),
        };
        let r = LineReport { line, result };
        each(&r);
        out.push(r);
    }
    out
}

/// One line of the command's report.
pub fn describe(o: &ErasureOutcome) -> String {
    let d = &o.deleted;
    format!(
        "erased {} ({} identifiers, {} consent states, {} events, {} insight features, {} declared fields; ledger record {})",
        o.subject,
        d.identities,
        d.consent_states,
        d.events,
        d.insight_features,
        d.insight_declared,
        o.record.entry.seq
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_its_bad_lines() {
        let s = SubjectId::random();
        let text = format!("# erasures\n{s}\n\nnot-an-id\n  {s}  \n");
        let lines = parse_file(text.as_bytes()).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].0, 2);
        assert!(matches!(lines[0].1, Ok(x) if x == s));
        assert_eq!(lines[1].0, 4);
        assert!(matches!(lines[1].1, Err(EraseError::BadSubjectId)));
        assert!(matches!(lines[2].1, Ok(x) if x == s));
    }
}
