//! Bulk operations for the CLI: importing consent records from another consent manager
//! and exporting the ledger and events, both as JSON Lines.
//!
//! Import is validate-everything-then-apply-in-one-transaction: a file with one bad
//! line changes nothing, and the error names the line.

use crate::receipts::RecordJson;
use crate::segment::{format_time, parse_time};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use candor_core::consent::{Action, Channel};
use candor_core::crypto::{IdKind, MasterKey};
use candor_core::ledger::Evidence;
use candor_core::purpose::Catalog;
use candor_core::{PurposeId, UnixMillis};
use candor_store::{ConsentCommand, PurposeChange, Store, StoreError};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OpsError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Subject(String),
}

/// One imported consent record.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportLine {
    /// The person's id in the other system; becomes a userId (or `idType`).
    subject_id: String,
    #[serde(default)]
    id_type: Option<String>,
    purpose: String,
    /// given | refused | withdrawn
    status: String,
    /// ISO-8601 time of the choice.
    time: String,
    notice_version: u32,
    #[serde(default)]
    evidence: BTreeMap<String, String>,
}

/// Parses and checks the whole file, returning the commands to apply.
pub fn parse_import(
    reader: impl BufRead,
    catalog: &Catalog,
    master: &MasterKey,
) -> Result<Vec<ConsentCommand>, OpsError> {
    let mut cmds = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| OpsError::Line { line: n, message };
        let rec: ImportLine =
            serde_json::from_str(&line).map_err(|e| err(format!("not a valid record: {e}")))?;
        if rec.subject_id.is_empty() || rec.subject_id.len() > 512 {
            return Err(err("subjectId must be 1 to 512 characters".into()));
        }
        let kind = match rec.id_type.as_deref() {
            None | Some("userId") => IdKind::UserId,
            Some("anonymousId") => IdKind::AnonymousId,
            Some(other) => {
                return Err(err(format!(
                    "idType must be userId or anonymousId, not {other:?}"
                )))
            }
        };
        let purpose = PurposeId::parse(&rec.purpose)
            .ok()
            .and_then(|p| catalog.purpose(&p))
            .ok_or_else(|| err(format!("unknown purpose {:?}", rec.purpose)))?;
        // "withdrawn" imports as a refusal: it ends a grant if one is held here, and
        // is recorded as a refusal otherwise (we hold no grant to withdraw).
        let action = match rec.status.as_str() {
            "given" => Action::Grant,
            "refused" | "withdrawn" => Action::Refuse,
            other => {
                return Err(err(format!(
                    "status must be given, refused or withdrawn, not {other:?}"
                )))
            }
        };
        // A grant is only valid for the notice the person saw; we can vouch only for
        // our current notice text, so older grants are refused rather than guessed.
        if action == Action::Grant && rec.notice_version != purpose.notice.version {
            return Err(err(format!(
                "a grant of {} under notice version {} cannot be imported: the current notice is version {}",
                purpose.id, rec.notice_version, purpose.notice.version
            )));
        }
        let time_ms = parse_time(&rec.time)
            .ok_or_else(|| err(format!("time {:?} is not ISO-8601", rec.time)))?;
        let evidence = Evidence::parse(rec.evidence)
            .map_err(|e| err(e.to_string()))?
            .with("import_line", n.to_string());
        cmds.push(ConsentCommand {
            identities: vec![crate::pipeline::identity(master, kind, &rec.subject_id)],
            authority: candor_store::Authority::Any,
            actor: candor_core::ledger::Actor::Import,
            create: true,
            changes: vec![PurposeChange {
                purpose: purpose.id.clone(),
                bit: purpose.bit,
                action,
                notice_version: rec.notice_version,
                notice_hash: if rec.notice_version == purpose.notice.version {
                    purpose.notice.hash
                } else {
                    [0; 32]
                },
            }],
            channel: Channel::Imported,
            evidence,
            time_ms: UnixMillis(time_ms),
            list: None,
        });
    }
    Ok(cmds)
}

/// Applies parsed commands in one transaction. Returns the ledger records written.
pub async fn apply_import(store: &dyn Store, cmds: Vec<ConsentCommand>) -> Result<usize, OpsError> {
    let outs = store.apply_consents_atomically(cmds).await?;
    Ok(outs.iter().map(|o| o.records.len()).sum())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LedgerLine {
    kind: &'static str,
    #[serde(flatten)]
    record: RecordJson,
    hash: String,
    signature: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventLine {
    kind: &'static str,
    id: i64,
    subject: String,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    category: String,
    purposes: Vec<String>,
    event_time: String,
    received_at: String,
    message: serde_json::Value,
}

pub struct ExportCounts {
    pub ledger: u64,
    pub events: u64,
}

/// Writes every ledger record, then every event (decrypted), as JSON Lines.
pub async fn export(
    store: &dyn Store,
    catalog: &Catalog,
    out: &mut dyn Write,
    progress: &ProgressBar,
) -> Result<ExportCounts, OpsError> {
    let mut counts = ExportCounts {
        ledger: 0,
        events: 0,
    };
    let mut after = 0u64;
    loop {
        let page = store.ledger_page(after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.entry.seq;
        for r in &page {
            let line = LedgerLine {
                kind: "ledger",
                record: RecordJson::from_entry(&r.entry),
                hash: hex::encode(r.hash),
                signature: STANDARD.encode(r.signature),
            };
            serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
            counts.ledger += 1;
        }
        progress.inc(page.len() as u64);
    }
    let mut after = 0i64;
    loop {
        let page = store.events_page(after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in &page {
            let key = store
                .subject_key(e.subject)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("event {} has no subject key", e.id)))?;
            let plain = candor_store::seal::open_payload(&key, e).map_err(|err| {
                StoreError::Corrupt(format!(
                    "event {}: its sealed payload does not open in its row ({err}): moved, swapped or relabelled in the database",
                    e.id
                ))
            })?;
            let message = serde_json::from_slice(&plain)
                .map_err(|err| StoreError::Corrupt(format!("event {}: {err}", e.id)))?;
            let line = EventLine {
                kind: "event",
                id: e.id,
                subject: e.subject.to_string(),
                source: e.source.clone(),
                event_type: e.kind.clone(),
                category: e.category.clone(),
                purposes: catalog
                    .names(e.purposes)
                    .into_iter()
                    .map(|p| p.to_string())
                    .collect(),
                event_time: format_time(e.event_ms),
                received_at: format_time(e.received_ms),
                message,
            };
            serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
            counts.events += 1;
        }
        progress.inc(page.len() as u64);
    }
    out.flush()?;
    Ok(counts)
}

/// `candor export --subject ID` (or `--user-id`): everything held about one person,
/// as the person's own export (`mydata`, schema `candor-my-data-v1`), recorded in their
/// access log and in the operator's list of requests (channel `cli`).
pub async fn export_subject(
    holder: &crate::mydata::Holder<'_>,
    subject: candor_core::SubjectId,
    out: &mut dyn Write,
) -> Result<u64, OpsError> {
    if holder.store.subject_key(subject).await?.is_none() {
        return Err(OpsError::Subject(format!("no subject {subject} is held")));
    }
    let data = crate::mydata::gather_from(holder, subject, crate::mydata::Depth::Export)
        .await
        .map_err(|e| OpsError::Subject(e.message))?;
    serde_json::to_writer_pretty(&mut *out, &data).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()?;
    let now = holder.now;
    holder
        .store
        .record_access(candor_store::Access {
            subject,
            time_ms: now,
            accessor: "candor export (the operator's command line)".into(),
            purpose: String::new(),
            why: "the operator exported your data for you".into(),
        })
        .await?;
    let id = holder
        .store
        .open_request(subject, candor_store::RequestKind::Export, "cli", now)
        .await?;
    holder.store.close_request(id, now, "ok").await?;
    Ok(data.events.total)
}
