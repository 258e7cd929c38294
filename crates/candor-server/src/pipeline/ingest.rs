//! The ingestion pipeline for one request's messages: validate every message (any
//! invalid one rejects the request whole, so nothing is half-applied), [`gate`] each,
//! hand what is allowed to the store (which seals it and commits it durably), and report
//! per message what was kept and why the rest was not.
//!
//! Sources: the Segment routes, and the demo seeder (so synthetic data passes the very
//! same gate).

use super::fields;
use super::gate::{self, Decision, Origin};
use crate::error::{ApiError, ApiResult, Code, ItemError};
use crate::segment;
use crate::state::AppState;
use crate::telemetry::{DropReason, EventsAccepted, EventsDropped};
use candor_core::event::EventKind;
use candor_store::{RowOutcome, StoreError};
use std::collections::HashMap;

/// One request's messages from one source.
pub struct Request<'a> {
    pub source: &'a str,
    /// What the request's credential proves about identity.
    pub credential: gate::Credential,
    /// Each message's JSON text.
    pub raws: &'a [&'a str],
    /// The kind a single-message route implies (`None` for a batch).
    pub implied: Option<EventKind>,
    /// The batch's `sentAt`.
    pub sent_at: Option<i64>,
    /// The request carried `Sec-GPC: 1`.
    pub gpc: bool,
}

/// What became of each message.
#[derive(Debug, Default)]
pub struct Report {
    pub accepted: usize,
    /// The messages not stored, in request order.
    pub dropped: Vec<Dropped>,
}

#[derive(Debug)]
pub struct Dropped {
    pub index: usize,
    pub message_id: Option<String>,
    pub reason: DropReason,
}

pub async fn run(st: &AppState, req: Request<'_>) -> ApiResult<Report> {
    // 1. Validate everything first.
    let mut messages = Vec::with_capacity(req.raws.len());
    let mut errors = Vec::new();
    for (i, raw) in req.raws.iter().enumerate() {
        match segment::parse_message(raw, req.implied) {
            Ok(m) => messages.push(m),
            Err(e) => errors.push((i, e)),
        }
    }
    if let Some((_, first)) = errors.first() {
        // A single-message endpoint answers with the message's own code (e.g.
        // event_too_large); a batch with invalid_message and the list.
        let (code, msg) = match req.implied {
            Some(_) => (first.code, first.message.clone()),
            None => (
                Code::InvalidMessage,
                format!(
                    "{} of {} messages are invalid; nothing was stored",
                    errors.len(),
                    req.raws.len()
                ),
            ),
        };
        let items = errors
            .into_iter()
            .map(|(index, e)| ItemError {
                index,
                code: e.code.as_str(),
                message: e.message,
            })
            .collect();
        return Err(ApiError::new(code, msg).with_items(items));
    }

    // 2. Gate each message.
    let origin = Origin {
        source: req.source,
        credential: &req.credential,
        gpc: req.gpc,
        sent_at: req.sent_at,
        received: st.now(),
    };
    let mut ids = Vec::with_capacity(messages.len());
    let mut drops: Vec<Option<DropReason>> = Vec::with_capacity(messages.len());
    let mut rows = Vec::new();
    let mut row_index = Vec::new();
    // Field values an identify carries, by row: written only if its row is stored.
    let mut field_writes = Vec::new();
    // Loyalty points a track message earns, by row: applied once its row is stored.
    let mut earns = Vec::new();
    for (i, m) in messages.into_iter().enumerate() {
        ids.push(m.message_id.clone());
        let pending = fields::from_message(st, &m);
        let earning = match m.kind {
            EventKind::Track => crate::loyalty::earnings(
                st,
                &crate::loyalty::TrackView::new(m.name.as_deref(), m.properties),
            ),
            _ => Vec::new(),
        };
        let event_name = m.name.clone().unwrap_or_default();
        match gate::decide(st, m, &origin) {
            Decision::Store(row) => {
                if let Some(p) = pending {
                    field_writes.push((rows.len(), row.subject, p));
                }
                if !earning.is_empty() {
                    earns.push((
                        rows.len(),
                        row.subject,
                        row.purposes,
                        row.dedup_key,
                        event_name,
                        earning,
                    ));
                }
                rows.push(*row);
                row_index.push(i);
                drops.push(None);
            }
            Decision::Drop(reason) => drops.push(Some(reason)),
        }
    }

    // 3. Seal and store (the store's sealing stage, then its writer), durably.
    let outcomes = st.store.ingest(rows).await?;
    // 3b. The fields of identifies the store kept (not duplicates, not those whose
    // consent changed before the commit), through the store's writer in one write,
    // before anyone is answered.
    let writes: Vec<_> = field_writes
        .into_iter()
        .filter(|(row, _, _)| outcomes.get(*row) == Some(&RowOutcome::Stored))
        .flat_map(|(_, subject, pending)| pending.writes(subject, origin.received))
        .collect();
    match st.store.set_fields(writes.clone()).await {
        // A subject erased since the gate found it: the others' fields still go in.
        Err(StoreError::UnknownSubject) => {
            for w in writes.iter().cloned() {
                match st.store.set_field(w).await {
                    Ok(()) | Err(StoreError::UnknownSubject) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        other => other?,
    }
    // 3c. Loyalty points of the track events kept (and of duplicates: a retry after a
    // crash between the event's commit and its points' is how those points arrive; the
    // key makes them one transaction).
    for (row, subject, purposes, dedup, name, earning) in earns {
        if matches!(
            outcomes.get(row),
            Some(RowOutcome::Stored | RowOutcome::Duplicate)
        ) {
            crate::loyalty::earn_for_event(st, subject, purposes, &dedup, &name, earning).await?;
        }
    }
    for (i, o) in row_index.into_iter().zip(outcomes) {
        drops[i] = match o {
            RowOutcome::Stored => None,
            RowOutcome::Duplicate => Some(DropReason::Duplicate),
            RowOutcome::ConsentChanged => Some(DropReason::ConsentChanged),
        };
    }

    // 4. Report.
    let mut report = Report::default();
    let mut by_reason: HashMap<DropReason, u64> = HashMap::new();
    for (index, (drop, message_id)) in drops.into_iter().zip(ids).enumerate() {
        match drop {
            None => report.accepted += 1,
            Some(reason) => {
                *by_reason.entry(reason).or_default() += 1;
                report.dropped.push(Dropped {
                    index,
                    message_id,
                    reason,
                });
            }
        }
    }
    EventsAccepted {
        source: req.source,
        count: report.accepted as u64,
    }
    .emit();
    for (reason, count) in by_reason {
        EventsDropped { reason, count }.emit();
    }
    Ok(report)
}
