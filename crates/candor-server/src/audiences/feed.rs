//! The segment engine's feed: the store's committed log, read in order.
//!
//! A round reads, in this order: the ledger past its cursor (up to the head it finds),
//! then the event log past its cursor up to the settled id (`Store::settled_event_id`,
//! so nothing that commits later can have a lower id), applying each event to the
//! engine under the purposes it is stored with now (floors applied). Then, for each
//! ledger record read: an erasure makes the engine forget the subject; a record that
//! ends a grant (refused, withdrawn, expired) *resets* the subject: its usage and trait
//! facts are dropped and its events up to the new cursor replayed, floors applied.
//!
//! Why reset and replay rather than "drop the facts of that purpose": the engine keeps
//! per-day counts, not events, so it cannot tell an event from before a withdrawal from
//! one after a re-grant that it happened to read in the same round. Replaying what the
//! store shows now (the withdrawal committed before the replay read) is right whatever
//! the interleaving. Its cost is one pass over the log per round that saw withdrawals
//! (SQLite keeps no index by subject, by design: see ARCHITECTURE.md).

use super::view::StoredView;
use crate::state::AppState;
use candor_core::consent::ConsentStatus;
use candor_core::event::EventKind;
use candor_core::{PurposeSet, SubjectId};
use candor_segments::Engine;
use candor_store::{seal, StoreError, StoredEvent};
use std::collections::HashSet;

/// Events read per page.
const PAGE: usize = 2000;

/// How far the engine has read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cursor {
    pub events_after: i64,
    pub ledger_after: u64,
}

/// One round (see the module docs).
pub async fn round(st: &AppState, engine: &Engine, cursor: &mut Cursor) -> Result<(), StoreError> {
    engine.advance(st.now().day());
    let mut forget = HashSet::new();
    let mut reset = HashSet::new();
    let mut left = Vec::new();
    let loyalty = st.settings.loyalty.as_ref().map(|l| &l.purpose);
    // The ledger cursor moves only when the round has done what the records ask: a
    // round that fails part-way reads them again (forgetting, resetting and leaving are
    // idempotent), while events, which are counted, move their cursor as they apply.
    let mut ledger_after = cursor.ledger_after;
    loop {
        let page = st.store.ledger_page(ledger_after, PAGE).await?;
        let Some(last) = page.last() else { break };
        ledger_after = last.entry.seq;
        for r in page {
            match r.entry.status {
                ConsentStatus::Erased => {
                    forget.insert(r.entry.subject);
                }
                ConsentStatus::Given => {}
                ConsentStatus::Refused | ConsentStatus::Withdrawn | ConsentStatus::Expired => {
                    reset.insert(r.entry.subject);
                    if Some(&r.entry.purpose) == loyalty {
                        left.push((r.entry.subject, r.entry.seq));
                    }
                }
            }
        }
    }
    // Leaving the loyalty program: every node sees the record, the key makes it one
    // transaction.
    for (s, seq) in left {
        crate::loyalty::left(st, s, format!("leave:{seq}")).await?;
    }
    let upto = st.store.settled_event_id(cursor.events_after).await?;
    apply_log(st, engine, &mut cursor.events_after, upto, None).await?;
    for s in &forget {
        engine.forget(*s);
    }
    reset.retain(|s| !forget.contains(s));
    if !reset.is_empty() {
        for s in &reset {
            engine.withdraw(*s, PurposeSet::from_bits(u64::MAX));
        }
        let mut from = 0;
        apply_log(st, engine, &mut from, cursor.events_after, Some(&reset)).await?;
    }
    cursor.ledger_after = ledger_after;
    Ok(())
}

/// Feeds a new engine the whole log, and returns the cursor it stopped at. The ledger
/// cursor is taken first: a withdrawal committing during the replay is seen by the
/// next round, which resets its subject.
pub async fn replay(st: &AppState, engine: &Engine) -> Result<Cursor, StoreError> {
    let ledger_after = st.store.ledger_head().await?.map(|h| h.seq).unwrap_or(0);
    let upto = st.store.settled_event_id(0).await?;
    let mut events_after = 0;
    apply_log(st, engine, &mut events_after, upto, None).await?;
    Ok(Cursor {
        events_after,
        ledger_after,
    })
}

/// Every stored field value, as the engine reads them.
pub async fn load_fields(st: &AppState, engine: &Engine) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let page = st.store.fields_page(after.clone(), PAGE).await?;
        let Some((s, f)) = page.last() else { break };
        after = Some((*s, f.field.clone()));
        for (subject, f) in page {
            // A field the operator has since removed or changed no longer counts.
            let Some(spec) = st.settings.fields.get(f.field.as_str()) else {
                continue;
            };
            if let Ok(v) = spec.parse_stored(f.value.expose()) {
                engine.set_field(subject, &f.field, Some(v));
            }
        }
    }
    Ok(())
}

/// Reads one subject's fields back from the store into the engine (every field of the
/// catalog: those no longer stored are cleared).
pub async fn reload_fields(
    st: &AppState,
    engine: &Engine,
    subject: SubjectId,
) -> Result<(), StoreError> {
    let stored = st.store.fields(subject).await?;
    for spec in st.settings.fields.iter() {
        let value = stored
            .iter()
            .find(|f| f.field == spec.name)
            .and_then(|f| spec.parse_stored(f.value.expose()).ok());
        engine.set_field(subject, &spec.name, value);
    }
    Ok(())
}

/// Applies the events with ids in `(*after, upto]` (only `only`'s subjects, when
/// given), moving `*after` past each one as it is applied, so that a read failing
/// part-way leaves the cursor where the applied events end.
async fn apply_log(
    st: &AppState,
    engine: &Engine,
    after: &mut i64,
    upto: i64,
    only: Option<&HashSet<SubjectId>>,
) -> Result<(), StoreError> {
    while *after < upto {
        let page = st.store.events_page(*after, PAGE).await?;
        let Some(last) = page.last().map(|e| e.id) else {
            // Nothing visible up to `upto`: rows hidden by floors have no purpose left.
            *after = upto;
            break;
        };
        for e in page.iter().filter(|e| e.id <= upto) {
            if only.is_none_or(|o| o.contains(&e.subject)) {
                apply_event(st, engine, e).await?;
            }
            *after = e.id;
        }
        if last >= upto {
            *after = upto;
            break;
        }
    }
    Ok(())
}

async fn apply_event(st: &AppState, engine: &Engine, e: &StoredEvent) -> Result<(), StoreError> {
    let Some(kind) = EventKind::parse(&e.kind) else {
        return Ok(());
    };
    if matches!(kind, EventKind::Group | EventKind::Alias) {
        return Ok(());
    }
    // An erased subject's key is gone: its events are gone too, or about to be.
    let Some(key) = st.store.subject_key(e.subject).await? else {
        return Ok(());
    };
    let Ok(payload) = seal::open_payload(&key, e) else {
        tracing::warn!(
            event = e.id,
            "a stored event did not open; the segments skip it"
        );
        return Ok(());
    };
    let view = StoredView::parse(kind, &payload);
    if !engine.wants_event(e.purposes, kind, candor_segments::EventView::name(&view)) {
        return Ok(());
    }
    // The day the event happened, never after the day it arrived.
    let day = e.event_ms.0.min(e.received_ms.0).div_euclid(86_400_000);
    engine.apply_event(e.subject, e.purposes, day, &view);
    Ok(())
}
