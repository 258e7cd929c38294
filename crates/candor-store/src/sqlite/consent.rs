//! Consent commands on SQLite, inside the writer's group transaction: resolve (or
//! create) the subject, link its identifiers, then carry out what
//! `plan::consent::plan` decided (ledger records, state rows, floors, deleting insight
//! features on a flip).

use super::writer::{FeatureEffect, Pending, Writer};
use crate::email::{ListAction, ListChange, SuppressReason};
use crate::plan::consent::{self, SubjectConsent};
use crate::plan::email::{self, ListPlan, SuppressionChange};
use crate::rows;
use crate::types::*;
use crate::{seal, statements as q, StoreError};
use candor_core::crypto::SubjectKey;
use candor_core::ledger::{Head, SealedEntry};
use candor_core::SubjectId;
use rusqlite::params;

pub(super) fn apply(
    w: &mut Writer,
    cmd: &ConsentCommand,
    group: &Pending,
    job: &mut Pending,
) -> Result<ConsentOutcome, StoreError> {
    let found = cmd
        .identities
        .iter()
        .find_map(|i| w.lookup(&i.hash, group, job));
    let (subject, created) = match found {
        Some(s) => (s, false),
        None if cmd.create => {
            let s = SubjectId::random();
            let key = SubjectKey::generate();
            w.conn.prepare_cached(q::INSERT_SUBJECT)?.execute(params![
                &s.as_bytes()[..],
                w.caches.master.wrap(&s, &key),
                cmd.time_ms.0
            ])?;
            job.caches.keys.insert(s, key);
            (s, true)
        }
        None => return Err(StoreError::UnknownSubject),
    };
    if let (Authority::Named { owner }, false) = (&cmd.authority, created) {
        let held: i64 = w
            .conn
            .prepare_cached(q::COUNT_IDENTITIES)?
            .query_row(params![&subject.as_bytes()[..]], |r| r.get(0))?;
        let named = cmd
            .identities
            .iter()
            .filter(|i| w.lookup(&i.hash, group, job) == Some(subject))
            .count();
        let owner_subject = owner.and_then(|h| w.lookup(&h, group, job));
        cmd.may_reach(subject, owner_subject, held, named)?;
    }
    for ident in &cmd.identities {
        if w.lookup(&ident.hash, group, job).is_none() {
            let key = w.key(subject, group, job)?;
            w.link(
                subject,
                &seal::identity(&key, ident),
                cmd.time_ms.0,
                group,
                job,
            )?;
        }
    }
    let state = {
        let mut st = w.conn.prepare_cached(&q::consent_state())?;
        let mut rows = st.query(params![&subject.as_bytes()[..]])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(rows::state_row(r)?);
        }
        SubjectConsent::from_rows(out)
    };
    let plan = consent::plan(
        cmd,
        subject,
        &state,
        &w.caches.bits,
        w.head,
        &w.caches.signer,
        w.caches.insights_bit(),
    )?;
    let sid = &subject.as_bytes()[..];
    let list = match &cmd.list {
        None => None,
        Some(change) => Some(plan_list(w, cmd, change, subject, plan.head, group, job)?),
    };
    for rec in &plan.records {
        append(w, sid, rec)?;
        let e = &rec.entry;
        w.conn.prepare_cached(q::UPSERT_STATE)?.execute(params![
            sid,
            e.purpose.as_str(),
            e.status.as_str(),
            e.notice_version,
            e.seq as i64,
            e.time_ms.0
        ])?;
    }
    let mut head = plan.head;
    if let Some(lp) = &list {
        write_list(w, cmd, sid, lp)?;
        head = lp.head;
    }
    for bit in &plan.floors {
        // "So far" is every event the single writer has written: ids are in commit order.
        w.conn
            .prepare_cached(
                "INSERT INTO purpose_floors (subject_id, bit, upto_id)
                 VALUES (?1, ?2, (SELECT coalesce(max(id), 0) FROM events))
                 ON CONFLICT (subject_id, bit) DO UPDATE SET upto_id = excluded.upto_id",
            )?
            .execute(params![sid, bit])?;
        job.caches.floored = true;
    }
    if plan.insights_flip.is_some() {
        w.conn
            .prepare_cached(q::DELETE_FEATURES)?
            .execute(params![sid])?;
        w.conn
            .prepare_cached(q::DELETE_DECLARED)?
            .execute(params![sid])?;
        job.features.push(FeatureEffect::Forget(subject));
    }
    w.head = head;
    job.caches
        .granted
        .insert(subject, (plan.granted, plan.version));
    Ok(ConsentOutcome {
        subject,
        created,
        records: plan.records,
        granted: plan.granted,
        list: list.map(|l| l.outcome),
    })
}

/// Appends one ledger record.
/// Appends one ledger record (a consent command's, or an erasure's).
pub(super) fn append(w: &Writer, sid: &[u8], rec: &SealedEntry) -> Result<(), StoreError> {
    let e = &rec.entry;
    let (actor, key_id) = rows::attribution_cols(e);
    w.conn.prepare_cached(q::INSERT_LEDGER)?.execute(params![
        e.seq as i64,
        sid,
        e.purpose.as_str(),
        e.status.as_str(),
        e.notice_version,
        &e.notice_hash[..],
        e.channel.as_str(),
        e.time_ms.0,
        evidence_json(&e.evidence)?,
        &e.prev_hash[..],
        &rec.hash[..],
        &rec.signature[..],
        actor,
        key_id
    ])?;
    Ok(())
}

/// Reads the subscription `change` is about and decides it (`plan::email`), chained
/// after the command's own records.
fn plan_list(
    w: &mut Writer,
    cmd: &ConsentCommand,
    change: &ListChange,
    subject: SubjectId,
    head: Head,
    group: &Pending,
    job: &mut Pending,
) -> Result<ListPlan, StoreError> {
    let current = {
        let mut st = w.conn.prepare_cached(&q::subscription())?;
        let mut rows = st.query(params![&subject.as_bytes()[..], change.list])?;
        match rows.next()? {
            Some(r) => Some(rows::subscription(r)?),
            None => None,
        }
    };
    let (sealed, digest) = match &change.action {
        ListAction::Confirm {
            origin: Some(o), ..
        } => {
            let key = w.key(subject, group, job)?;
            let (s, d) = seal::origin(&key, subject, &change.list, o);
            (Some(s), Some(d))
        }
        _ => (None, None),
    };
    email::plan(
        cmd,
        change,
        subject,
        current.as_ref(),
        head,
        &w.caches.signer,
        sealed,
        digest,
    )
}

/// Writes what `plan::email` decided: the marker record, the row, the suppression.
fn write_list(
    w: &Writer,
    cmd: &ConsentCommand,
    sid: &[u8],
    lp: &ListPlan,
) -> Result<(), StoreError> {
    if let Some(rec) = &lp.record {
        append(w, sid, rec)?;
    }
    if let Some(r) = &lp.row {
        w.conn
            .prepare_cached(q::PUT_SUBSCRIPTION)?
            .execute(params![
                sid,
                r.list,
                r.status.as_str(),
                r.created_ms,
                r.updated_ms,
                r.confirmed_ms,
                r.sends,
                r.window_ms,
                r.origin
            ])?;
    }
    if let Some(c) = lp.left_campaign {
        w.conn
            .prepare_cached(q::MARK_LEFT)?
            .execute(params![cmd.time_ms.0, c, sid])?;
    }
    if let (Some(change), Some(address)) = (lp.suppression, cmd.email_hash()) {
        let list = lp.row.as_ref().map_or("", |r| r.list.as_str());
        match change {
            SuppressionChange::Add => {
                w.conn.prepare_cached(q::SUPPRESS)?.execute(params![
                    &address.0[..],
                    list,
                    SuppressReason::Unsubscribe.as_str(),
                    cmd.time_ms.0
                ])?;
            }
            SuppressionChange::Lift => {
                w.conn
                    .prepare_cached(q::LIFT_UNSUBSCRIBE)?
                    .execute(params![&address.0[..], list])?;
            }
        }
    }
    Ok(())
}
