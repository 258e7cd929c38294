//! A subscription change, decided (issue 16): the row it leaves, the marker record
//! that proves it, the suppression it adds or lifts, and whether a confirmation mail
//! may go out. Both backends read the subscription row inside the consent transaction
//! (after the command's purpose changes are planned, before anything is written), ask
//! [`plan`], and write the answer in the same transaction: a confirmation and its proof
//! are never apart.
//!
//! The rules: a request makes a pending row (a confirmed one stays confirmed, and one
//! that was left becomes pending again) and may mail a confirmation at most `max` times
//! per window; a confirmation moves pending → confirmed only, so a link followed after
//! the person left, or after the request expired, confirms nothing (`NotPending`), and
//! following it twice records once; leaving records once and suppresses the address for
//! that list, and a later confirmation (a new double opt-in) lifts that suppression.

use crate::email::{ListAction, ListChange, ListOutcome, SubStatus, Subscription};
use crate::types::ConsentCommand;
use crate::StoreError;
use candor_core::consent::ConsentStatus;
use candor_core::ledger::{Attribution, Head, KeyId, LedgerEntry, SealedEntry, LIST_PURPOSE};
use candor_core::receipt::ReceiptSigner;
use candor_core::{PurposeId, SubjectId};

/// What the suppression list gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuppressionChange {
    /// The address is suppressed for the list (reason `unsubscribe`).
    Add,
    /// A suppression of the address for the list by unsubscribe is lifted.
    Lift,
}

#[derive(Clone, Debug)]
pub struct ListPlan {
    /// The row to write, when it changes.
    pub row: Option<Subscription>,
    /// The marker record to append, chained after the command's other records.
    pub record: Option<SealedEntry>,
    pub suppression: Option<SuppressionChange>,
    /// The campaign whose message led the person to leave: its queue row is marked.
    pub left_campaign: Option<i64>,
    pub outcome: ListOutcome,
    /// The ledger head after the record.
    pub head: Head,
}

/// Decides `change` for `subject`, whose row for the list is `current`, with the ledger
/// at `head` (after the command's own records). `sealed_origin` and `origin_digest` are
/// the confirmation's origin sealed under the subject's key and its keyed digest
/// (`seal::origin`), when the command carries one.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    cmd: &ConsentCommand,
    change: &ListChange,
    subject: SubjectId,
    current: Option<&Subscription>,
    head: Head,
    signer: &ReceiptSigner,
    sealed_origin: Option<Vec<u8>>,
    origin_digest: Option<String>,
) -> Result<ListPlan, StoreError> {
    let now = cmd.time_ms.0;
    let before = current.map(|s| s.status);
    let fresh = || Subscription {
        subject,
        list: change.list.clone(),
        status: SubStatus::Pending,
        created_ms: now,
        updated_ms: now,
        confirmed_ms: None,
        sends: 0,
        window_ms: now,
        origin: None,
    };
    let unchanged = |after: SubStatus| ListPlan {
        row: None,
        record: None,
        suppression: None,
        left_campaign: None,
        outcome: ListOutcome {
            before,
            after,
            send_confirmation: false,
            recorded: None,
        },
        head,
    };
    match &change.action {
        ListAction::Request { window_ms, max } => {
            let mut row = current.cloned().unwrap_or_else(fresh);
            if row.status == SubStatus::Confirmed {
                return Ok(unchanged(SubStatus::Confirmed));
            }
            if row.status == SubStatus::Unsubscribed {
                row.status = SubStatus::Pending;
                row.created_ms = now;
            }
            if now.saturating_sub(row.window_ms) >= *window_ms || now < row.window_ms {
                row.window_ms = now;
                row.sends = 0;
            }
            let send = row.sends < *max;
            if send {
                row.sends += 1;
            }
            row.updated_ms = now;
            Ok(ListPlan {
                row: Some(row),
                record: None,
                suppression: None,
                left_campaign: None,
                outcome: ListOutcome {
                    before,
                    after: SubStatus::Pending,
                    send_confirmation: send,
                    recorded: None,
                },
                head,
            })
        }
        ListAction::Confirm {
            confirmation,
            origin: _,
        } => {
            let Some(cur) = current else {
                return Err(StoreError::NotPending {
                    list: change.list.clone(),
                });
            };
            match cur.status {
                SubStatus::Confirmed => return Ok(unchanged(SubStatus::Confirmed)),
                SubStatus::Unsubscribed => {
                    return Err(StoreError::NotPending {
                        list: change.list.clone(),
                    })
                }
                SubStatus::Pending => {}
            }
            let mut row = cur.clone();
            row.status = SubStatus::Confirmed;
            row.confirmed_ms = Some(now);
            row.updated_ms = now;
            row.origin = sealed_origin;
            let mut extra = vec![("confirmation", confirmation.clone())];
            if let Some(d) = origin_digest {
                extra.push(("origin", d));
            }
            let record = marker(
                cmd,
                change,
                subject,
                ConsentStatus::Given,
                &extra,
                head,
                signer,
            );
            Ok(ListPlan {
                head: Head {
                    seq: record.entry.seq,
                    hash: record.hash,
                },
                row: Some(row),
                suppression: Some(SuppressionChange::Lift),
                left_campaign: None,
                outcome: ListOutcome {
                    before,
                    after: SubStatus::Confirmed,
                    send_confirmation: false,
                    recorded: Some(record.entry.seq),
                },
                record: Some(record),
            })
        }
        ListAction::Leave { campaign } => {
            let Some(cur) = current.filter(|c| c.status != SubStatus::Unsubscribed) else {
                return Ok(unchanged(before.unwrap_or(SubStatus::Unsubscribed)));
            };
            let mut row = cur.clone();
            row.status = SubStatus::Unsubscribed;
            row.updated_ms = now;
            let extra: Vec<(&str, String)> = campaign
                .iter()
                .map(|c| ("campaign", c.to_string()))
                .collect();
            let record = marker(
                cmd,
                change,
                subject,
                ConsentStatus::Withdrawn,
                &extra,
                head,
                signer,
            );
            Ok(ListPlan {
                head: Head {
                    seq: record.entry.seq,
                    hash: record.hash,
                },
                row: Some(row),
                suppression: Some(SuppressionChange::Add),
                left_campaign: *campaign,
                outcome: ListOutcome {
                    before,
                    after: SubStatus::Unsubscribed,
                    send_confirmation: false,
                    recorded: Some(record.entry.seq),
                },
                record: Some(record),
            })
        }
    }
}

/// The marker record of a list change: [`LIST_PURPOSE`], the list's purpose's notice,
/// the command's channel and evidence plus the list and `extra`.
fn marker(
    cmd: &ConsentCommand,
    change: &ListChange,
    subject: SubjectId,
    status: ConsentStatus,
    extra: &[(&str, String)],
    head: Head,
    signer: &ReceiptSigner,
) -> SealedEntry {
    let mut evidence = cmd.evidence.clone().with("list", change.list.clone());
    for (k, v) in extra {
        evidence = evidence.with(k, v.clone());
    }
    LedgerEntry {
        seq: head.seq + 1,
        subject,
        purpose: PurposeId::parse(LIST_PURPOSE).unwrap_or_else(|_| unreachable!()),
        status,
        notice_version: change.notice_version,
        notice_hash: change.notice_hash,
        channel: cmd.channel,
        time_ms: cmd.time_ms,
        evidence,
        prev_hash: head.hash,
        attribution: Some(Attribution {
            actor: cmd.actor.clone(),
            key_id: KeyId::of(&signer.verifying_key()),
        }),
    }
    .seal(signer.signing_key())
}
