//! Rows of either backend read through one small trait ([`Col`]), so each kind of stored
//! record is decoded once: a ledger record, a consent state row, an advertiser, a report.
//!
//! Decoding is where stored data meets the types, and it refuses what the types cannot
//! hold (an unknown status, a hash of the wrong length) with `Corrupt`, naming the
//! field, rather than guessing.

use crate::types::{
    AdminAction, AdminActionRecord, Advertiser, BudgetPeriod, ReportRecord, Spend, StateRow,
};
use crate::StoreError;
use candor_core::consent::{Channel, ConsentStatus};
use candor_core::ledger::{Actor, Attribution, Evidence, KeyId, LedgerEntry, RingKey, SealedEntry};
use candor_core::{PurposeId, SubjectId, UnixMillis};

/// Typed access to the columns of a result row.
pub(crate) trait Col {
    /// An integer column of any width.
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError>;
    fn flag(&self, i: usize) -> Result<bool, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError>;
    /// A nullable BIGINT (INTEGER on SQLite).
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;

    fn blob_n<const N: usize>(&self, i: usize, what: &str) -> Result<[u8; N], StoreError> {
        self.blob(i)?
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("{what}: expected {N} bytes")))
    }

    fn subject(&self, i: usize) -> Result<SubjectId, StoreError> {
        Ok(SubjectId::from_bytes(self.blob_n(i, "subject id")?))
    }

    fn u32(&self, i: usize, what: &str) -> Result<u32, StoreError> {
        u32::try_from(self.int(i)?).map_err(|_| StoreError::Corrupt(format!("{what} out of range")))
    }
}

impl Col for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
    fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        Ok(self.get(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
}

impl Col for tokio_postgres::Row {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        use tokio_postgres::types::Type;
        let ty = self
            .columns()
            .get(i)
            .map(|c| c.type_().clone())
            .ok_or_else(|| StoreError::Database(format!("no column {i}")))?;
        Ok(match ty {
            Type::INT2 => i64::from(self.try_get::<_, i16>(i)?),
            Type::INT4 => i64::from(self.try_get::<_, i32>(i)?),
            _ => self.try_get::<_, i64>(i)?,
        })
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(i)?)
    }
}

/// The ledger's columns, in [`ledger_entry`] order.
pub(crate) const LEDGER_COLS: &str =
    "seq, subject_id, purpose_id, status, notice_version, notice_hash, channel,
    time_ms, evidence, prev_hash, hash, signature, actor, key_id";

/// A ledger record from its row. A value that cannot even be parsed (an edit that left
/// an unknown status, say) is reported as corrupt, naming the row.
pub(crate) fn ledger_entry(r: &impl Col) -> Result<SealedEntry, StoreError> {
    let seq = r.int(0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("ledger row {seq}: {what}"));
    Ok(SealedEntry {
        entry: LedgerEntry {
            seq: u64::try_from(seq).map_err(|_| corrupt("seq"))?,
            subject: r.subject(1)?,
            purpose: PurposeId::parse(&r.text(2)?).map_err(|_| corrupt("purpose"))?,
            status: ConsentStatus::parse(&r.text(3)?).ok_or_else(|| corrupt("status"))?,
            notice_version: r
                .u32(4, "notice version")
                .map_err(|_| corrupt("notice version"))?,
            notice_hash: r.blob_n(5, "notice hash")?,
            channel: Channel::parse(&r.text(6)?).ok_or_else(|| corrupt("channel"))?,
            time_ms: UnixMillis(r.int(7)?),
            evidence: Evidence::stored(
                serde_json::from_str(&r.text(8)?).map_err(|_| corrupt("evidence"))?,
            ),
            prev_hash: r.blob_n(9, "previous hash")?,
            attribution: attribution(r.opt_text(12)?, r.opt_blob(13)?)
                .map_err(|()| corrupt("actor or key id"))?,
        },
        hash: r.blob_n(10, "hash")?,
        signature: r
            .blob_n(11, "signature")
            .map_err(|_| corrupt("signature"))?,
    })
}

/// A format-2 record's actor and key id (both present), or a format-1 record's
/// (both absent); one without the other is corrupt.
fn attribution(actor: Option<String>, key_id: Option<Vec<u8>>) -> Result<Option<Attribution>, ()> {
    match (actor, key_id) {
        (None, None) => Ok(None),
        (Some(a), Some(k)) => Ok(Some(Attribution {
            actor: Actor::parse(&a).ok_or(())?,
            key_id: KeyId(k.try_into().map_err(|_| ())?),
        })),
        _ => Err(()),
    }
}

/// The stored form of a record's attribution: (actor, key id), NULL for format 1.
pub(crate) fn attribution_cols(e: &LedgerEntry) -> (Option<String>, Option<Vec<u8>>) {
    match &e.attribution {
        Some(a) => (Some(a.actor.to_text()), Some(a.key_id.0.to_vec())),
        None => (None, None),
    }
}

/// A signing key of the ring, from `SIGNING_KEYS`.
pub(crate) fn ring_key(r: &impl Col) -> Result<RingKey, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("signing key: {what}"));
    let public: [u8; 32] = r.blob_n(0, "signing key")?;
    Ok(RingKey {
        key: ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| corrupt("not Ed25519"))?,
        from_seq: u64::try_from(r.int(1)?).map_err(|_| corrupt("from_seq"))?,
        certificate: r
            .opt_blob(2)?
            .map(|c| c.try_into().map_err(|_| corrupt("certificate")))
            .transpose()?,
    })
}

/// A key ring entry's columns for `INSERT_SIGNING_KEY` (without the time).
pub(crate) fn ring_key_cols(k: &RingKey) -> (Vec<u8>, Vec<u8>, i64, Option<Vec<u8>>) {
    (
        KeyId::of(&k.key).0.to_vec(),
        k.key.as_bytes().to_vec(),
        i64::try_from(k.from_seq).unwrap_or(i64::MAX),
        k.certificate.map(|c| c.to_vec()),
    )
}

/// An admin action from `ADMIN_ACTIONS`.
pub(crate) fn admin_action(r: &impl Col) -> Result<AdminActionRecord, StoreError> {
    Ok(AdminActionRecord {
        id: r.int(0)?,
        action: AdminAction {
            time_ms: UnixMillis(r.int(1)?),
            action: r.text(2)?,
            target: r.text(3)?,
            outcome: r.text(4)?,
            detail: r.text(5)?,
        },
    })
}

/// The columns of `consent_state` in [`state_row`] order.
pub(crate) const STATE_COLS: &str = "purpose_id, status, notice_version, seq, time_ms";

pub(crate) fn state_row(r: &impl Col) -> Result<StateRow, StoreError> {
    let status = r.text(1)?;
    Ok(StateRow {
        purpose: PurposeId::parse(&r.text(0)?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        status: ConsentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
        notice_version: r.u32(2, "notice version")?,
        seq: u64::try_from(r.int(3)?).map_err(|_| StoreError::Corrupt("seq".into()))?,
        time_ms: UnixMillis(r.int(4)?),
    })
}

/// The advertisers table's columns, in [`advertiser`] order (and the order of
/// `advertisers::values`).
pub(crate) const ADVERTISER_COLS: &str = "advertiser_id, name, key_hash, budget_epsilon_nano,
    budget_delta_atto, period, allowed_features, allowed_dimensions, disabled, created_ms,
    updated_ms, lifetime_epsilon_nano, lifetime_delta_atto";

pub(crate) fn advertiser(r: &impl Col) -> Result<Advertiser, StoreError> {
    let names = |i: usize| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(&r.text(i)?)
            .map_err(|e| StoreError::Corrupt(format!("advertiser permission list: {e}")))
    };
    Ok(Advertiser {
        id: r.text(0)?,
        name: r.text(1)?,
        key_hash: r.blob_n(2, "advertiser key hash")?,
        budget: Spend {
            epsilon_nano: r.int(3)?,
            delta_atto: r.int(4)?,
        },
        period: {
            let p = r.text(5)?;
            BudgetPeriod::parse(&p)
                .ok_or_else(|| StoreError::Corrupt(format!("advertiser budget period {p:?}")))?
        },
        allowed_features: names(6)?,
        allowed_dimensions: names(7)?,
        disabled: r.flag(8)?,
        created_ms: UnixMillis(r.int(9)?),
        updated_ms: UnixMillis(r.int(10)?),
        lifetime: opt_spend(r, 11)?,
    })
}

/// A spend kept in two nullable columns (`i`, `i + 1`): both set or both NULL.
pub(crate) fn opt_spend(r: &impl Col, i: usize) -> Result<Option<Spend>, StoreError> {
    match (r.opt_int(i)?, r.opt_int(i + 1)?) {
        (Some(epsilon_nano), Some(delta_atto)) => Ok(Some(Spend {
            epsilon_nano,
            delta_atto,
        })),
        (None, None) => Ok(None),
        _ => Err(StoreError::Corrupt("half a lifetime budget".into())),
    }
}

/// The columns a report is read with (in [`report`] order), from `insight_reports r`.
pub(crate) const REPORT_COLS: &str =
    "r.id, r.advertiser_id, r.period, r.time_ms, r.cost_epsilon_nano,
    r.cost_delta_atto, r.purpose, r.query_json, r.answer_json, r.spent_epsilon_nano,
    r.spent_delta_atto, r.budget_epsilon_nano, r.budget_delta_atto";

pub(crate) fn report(r: &impl Col) -> Result<ReportRecord, StoreError> {
    let spend = |e: usize| -> Result<Spend, StoreError> {
        Ok(Spend {
            epsilon_nano: r.int(e)?,
            delta_atto: r.int(e + 1)?,
        })
    };
    Ok(ReportRecord {
        id: r.int(0)?,
        advertiser: r.text(1)?,
        period: r.text(2)?,
        time_ms: UnixMillis(r.int(3)?),
        cost: spend(4)?,
        purpose: r.text(6)?,
        query_json: r.text(7)?,
        answer_json: r.text(8)?,
        spent_after: spend(9)?,
        budget: spend(11)?,
    })
}

/// The columns an event is read with, in [`stored_event`] order.
pub(crate) const EVENT_COLS: &str =
    "id, subject_id, source_id, kind, category, purposes, event_ms, received_ms, sealed, dedup_key";

/// An event as stored (its purposes before purpose floors).
pub(crate) fn stored_event(r: &impl Col) -> Result<crate::types::StoredEvent, StoreError> {
    Ok(crate::types::StoredEvent {
        id: r.int(0)?,
        subject: r.subject(1)?,
        source: r.text(2)?,
        kind: r.text(3)?,
        category: r.text(4)?,
        // Bits are stored as the two's-complement i64 of the u64 mask.
        purposes: candor_core::PurposeSet::from_bits(r.int(5)? as u64),
        event_ms: UnixMillis(r.int(6)?),
        received_ms: UnixMillis(r.int(7)?),
        sealed_payload: r.blob(8)?,
        dedup_key: r.blob_n(9, "dedup key")?,
    })
}

/// An `identities` row in [`crate::statements::IDENTITIES_OF`] order, still sealed.
pub(crate) fn sealed_identity(r: &impl Col) -> Result<crate::seal::SealedIdentity, StoreError> {
    let code = r.int(0)?;
    Ok(crate::seal::SealedIdentity {
        kind: u8::try_from(code)
            .ok()
            .and_then(candor_core::crypto::IdKind::from_code)
            .ok_or_else(|| StoreError::Corrupt(format!("identifier kind {code}")))?,
        hash: candor_core::crypto::LookupHash(r.blob_n(1, "lookup hash")?),
        sealed: r.blob(2)?,
    })
}

/// An `access_log` row in [`crate::statements::ACCESS_LOG`] order.
pub(crate) fn access(r: &impl Col) -> Result<crate::types::Access, StoreError> {
    Ok(crate::types::Access {
        subject: r.subject(0)?,
        time_ms: UnixMillis(r.int(1)?),
        accessor: r.text(2)?,
        purpose: r.text(3)?,
        why: r.text(4)?,
    })
}

/// A `subject_requests` row in [`crate::statements::REQUESTS`] order.
pub(crate) fn request(r: &impl Col) -> Result<crate::types::RequestRecord, StoreError> {
    let kind = r.text(2)?;
    Ok(crate::types::RequestRecord {
        id: r.int(0)?,
        subject: r.subject(1)?,
        kind: crate::types::RequestKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown request kind {kind:?}")))?,
        channel: r.text(3)?,
        requested_ms: UnixMillis(r.int(4)?),
        completed_ms: r.opt_int(5)?.map(UnixMillis),
        outcome: r.text(6)?,
    })
}

/// A volunteered field's row, still sealed ([`crate::statements::FIELDS`] order).
pub(crate) fn field_row(r: &impl Col) -> Result<crate::seal::FieldRow, StoreError> {
    Ok(crate::seal::FieldRow {
        field: r.text(0)?,
        sealed: r.blob(1)?,
        provenance: r.text(2)?,
        updated_ms: r.int(3)?,
    })
}

/// A subject and one of its fields (`statements::FIELDS_AFTER`).
pub(crate) fn subject_field_row(
    r: &impl Col,
) -> Result<(SubjectId, crate::seal::FieldRow), StoreError> {
    Ok((
        r.subject(0)?,
        crate::seal::FieldRow {
            field: r.text(1)?,
            sealed: r.blob(2)?,
            provenance: r.text(3)?,
            updated_ms: r.int(4)?,
        },
    ))
}

/// A loyalty transaction (`statements::TXN_COLS`).
pub(crate) fn txn(r: &impl Col) -> Result<crate::loyalty::Txn, StoreError> {
    let kind = r.text(3)?;
    Ok(crate::loyalty::Txn {
        id: r.int(0)?,
        subject: r.subject(1)?,
        key: r.text(2)?,
        kind: crate::loyalty::TxnKind::parse(&kind).ok_or_else(|| {
            StoreError::Corrupt(format!("unknown loyalty transaction kind {kind}"))
        })?,
        points: r.int(4)?,
        rule: r.opt_text(5)?,
        reward: r.opt_text(6)?,
        reverses: r.opt_int(7)?,
        reason: r.text(8)?,
        source: r.text(9)?,
        at: UnixMillis(r.int(10)?),
    })
}

/// A segment definition (`statements::SEGMENTS`).
pub(crate) fn segment(r: &impl Col) -> Result<crate::loyalty::SegmentRecord, StoreError> {
    Ok(crate::loyalty::SegmentRecord {
        name: r.text(0)?,
        purpose: r.text(1)?,
        rule: r.text(2)?,
        description: r.text(3)?,
        created_ms: r.int(4)?,
        updated_ms: r.int(5)?,
    })
}

pub(crate) fn segment_size(r: &impl Col) -> Result<crate::loyalty::SegmentSize, StoreError> {
    Ok(crate::loyalty::SegmentSize {
        name: r.text(0)?,
        day: i32::try_from(r.int(1)?)
            .map_err(|_| StoreError::Corrupt("segment size day out of range".into()))?,
        size: r.int(2)?,
    })
}

pub(crate) fn subscription(r: &impl Col) -> Result<crate::email::Subscription, StoreError> {
    let status = r.text(2)?;
    Ok(crate::email::Subscription {
        subject: r.subject(0)?,
        list: r.text(1)?,
        status: crate::email::SubStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("subscription status {status:?}")))?,
        created_ms: r.int(3)?,
        updated_ms: r.int(4)?,
        confirmed_ms: r.opt_int(5)?,
        sends: r.u32(6, "confirmation sends")?,
        window_ms: r.int(7)?,
        origin: r.opt_blob(8)?,
    })
}

pub(crate) fn suppression(r: &impl Col) -> Result<crate::email::Suppression, StoreError> {
    let reason = r.text(2)?;
    Ok(crate::email::Suppression {
        address: candor_core::crypto::LookupHash(r.blob_n(0, "address hash")?),
        list: r.text(1)?,
        reason: crate::email::SuppressReason::parse(&reason)
            .ok_or_else(|| StoreError::Corrupt(format!("suppression reason {reason:?}")))?,
        created_ms: r.int(3)?,
    })
}

pub(crate) fn campaign(r: &impl Col) -> Result<crate::email::Campaign, StoreError> {
    let status = r.text(7)?;
    Ok(crate::email::Campaign {
        id: r.int(0)?,
        name: r.text(1)?,
        list: r.text(2)?,
        segment: r.opt_text(3)?,
        subject_line: r.text(4)?,
        text_body: r.text(5)?,
        html_body: r.opt_text(6)?,
        status: crate::email::CampaignStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("campaign status {status:?}")))?,
        created_ms: r.int(8)?,
        started_ms: r.opt_int(9)?,
        finished_ms: r.opt_int(10)?,
    })
}

pub(crate) fn message(r: &impl Col) -> Result<crate::email::QueuedMessage, StoreError> {
    let status = r.text(2)?;
    Ok(crate::email::QueuedMessage {
        campaign: r.int(0)?,
        subject: r.subject(1)?,
        status: crate::email::MessageStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("message status {status:?}")))?,
        attempts: r.u32(3, "attempts")?,
        next_ms: r.int(4)?,
        updated_ms: r.int(5)?,
        detail: r.opt_text(6)?,
    })
}

pub(crate) fn message_status(s: &str) -> Result<crate::email::MessageStatus, StoreError> {
    crate::email::MessageStatus::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("message status {s:?}")))
}
