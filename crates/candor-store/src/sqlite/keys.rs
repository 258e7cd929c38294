//! The keys a SQLite database records (see `plan::keys`): checked and, the first time,
//! recorded at open; the signing-key ring read for verification and extended by a
//! rotation, each in an `IMMEDIATE` transaction of its own.

use super::read;
use crate::plan::keys::{self, Recorded, Setup};
use crate::rows::{self, Col};
use crate::{statements as q, StoreError};
use candor_core::crypto::MasterKey;
use candor_core::ledger::RingKey;
use candor_core::receipt::ReceiptSigner;
use ed25519_dalek::VerifyingKey;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

pub(super) fn setup(
    conn: &mut Connection,
    master: &MasterKey,
    signer: &VerifyingKey,
    now_ms: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let recorded = Recorded {
        master_check: tx
            .query_row(q::MASTER_CHECK, [], |r| r.get::<_, Vec<u8>>(0))
            .optional()?
            .map(|c| c.try_into())
            .transpose()
            .map_err(|_| StoreError::Corrupt("master key check value".into()))?,
        ring: ring(&tx)?,
        sample: read::all(&tx, q::SAMPLE_SUBJECT, [], |r| {
            Ok((r.subject(0)?, r.blob(1)?))
        })?
        .pop(),
        last_record: read::all(&tx, &q::last_record(), [], |r| rows::ledger_entry(r))?.pop(),
    };
    if keys::decide(&recorded, master, signer)? == Setup::Record {
        insert_key(&tx, &keys::first_key(signer), now_ms)?;
        tx.execute(
            q::RECORD_MASTER_CHECK,
            params![&master.check_value()[..], now_ms],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn insert_key(conn: &Connection, k: &RingKey, now_ms: i64) -> Result<(), StoreError> {
    let (id, public, from_seq, cert) = rows::ring_key_cols(k);
    conn.execute(
        q::INSERT_SIGNING_KEY,
        params![id, public, from_seq, cert, now_ms],
    )?;
    Ok(())
}

pub(super) fn ring(conn: &Connection) -> Result<Vec<RingKey>, StoreError> {
    read::all(conn, q::SIGNING_KEYS, [], |r| rows::ring_key(r))
}

pub(super) fn rotate(
    conn: &mut Connection,
    signer: &ReceiptSigner,
    next: VerifyingKey,
    now_ms: i64,
) -> Result<RingKey, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = ring(&tx)?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("the signing key ring is empty".into()))?;
    let head = read::head(&tx)?.map_or(0, |h| h.seq);
    let k = keys::rotation(&current, signer, next, head)?;
    insert_key(&tx, &k, now_ms)?;
    tx.commit()?;
    Ok(k)
}

pub(super) fn claim_meta(
    conn: &mut Connection,
    key: &str,
    value: &str,
) -> Result<String, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(q::CLAIM_META, params![key, value])?;
    let v: String = tx.query_row(q::GET_META, params![key], |r| r.get(0))?;
    tx.commit()?;
    Ok(v)
}

pub(super) fn record_admin_action(
    conn: &mut Connection,
    a: &crate::types::AdminAction,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        q::INSERT_ADMIN_ACTION,
        params![a.time_ms.0, a.action, a.target, a.outcome, a.detail],
    )?;
    tx.commit()?;
    Ok(())
}

pub(super) fn admin_actions(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<crate::types::AdminActionRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    read::all(conn, q::ADMIN_ACTIONS, params![after, limit], |r| {
        rows::admin_action(r)
    })
}
