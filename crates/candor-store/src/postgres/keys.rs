//! The keys a PostgreSQL database records (see `plan::keys`): checked and, the first
//! time, recorded at open, under a table lock so two nodes opening a new database at
//! once cannot record different keys; the ring read for verification and extended by
//! a rotation, which locks the ledger head so the hand-over record is exact.

use super::{read, sql};
use crate::plan::keys::{self, Recorded, Setup};
use crate::rows::{self, Col};
use crate::{statements as q, StoreError};
use candor_core::crypto::MasterKey;
use candor_core::ledger::RingKey;
use candor_core::receipt::ReceiptSigner;
use deadpool_postgres::{GenericClient, Object};
use ed25519_dalek::VerifyingKey;

pub(super) async fn setup(
    c: &mut Object,
    master: &MasterKey,
    signer: &VerifyingKey,
    now_ms: i64,
) -> Result<(), StoreError> {
    let tx = c.transaction().await?;
    tx.batch_execute("LOCK TABLE key_checks IN EXCLUSIVE MODE")
        .await?;
    let recorded = Recorded {
        master_check: sql::query_opt(&tx, q::MASTER_CHECK, &[])
            .await?
            .map(|r| r.blob_n(0, "master key check value"))
            .transpose()?,
        ring: ring(&tx).await?,
        sample: read::all(&tx, q::SAMPLE_SUBJECT, &[], |r| {
            Ok((r.subject(0)?, r.blob(1)?))
        })
        .await?
        .pop(),
        last_record: read::all(&tx, &q::last_record(), &[], rows::ledger_entry)
            .await?
            .pop(),
    };
    if keys::decide(&recorded, master, signer)? == Setup::Record {
        insert_key(&tx, &keys::first_key(signer), now_ms).await?;
        sql::execute(
            &tx,
            q::RECORD_MASTER_CHECK,
            &[&&master.check_value()[..], &now_ms],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn insert_key<C: GenericClient>(c: &C, k: &RingKey, now_ms: i64) -> Result<(), StoreError> {
    let (id, public, from_seq, cert) = rows::ring_key_cols(k);
    sql::execute(
        c,
        q::INSERT_SIGNING_KEY,
        &[&id, &public, &from_seq, &cert, &now_ms],
    )
    .await?;
    Ok(())
}

pub(super) async fn ring<C: GenericClient>(c: &C) -> Result<Vec<RingKey>, StoreError> {
    read::all(c, q::SIGNING_KEYS, &[], rows::ring_key).await
}

pub(super) async fn rotate(
    mut c: Object,
    signer: &ReceiptSigner,
    next: VerifyingKey,
    now_ms: i64,
) -> Result<RingKey, StoreError> {
    let tx = c.transaction().await?;
    let head = sql::query_opt(
        &tx,
        "SELECT seq FROM ledger_head WHERE id = 1 FOR UPDATE",
        &[],
    )
    .await?
    .map_or(Ok(0), |r| r.int(0))?;
    let current = ring(&tx)
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("the signing key ring is empty".into()))?;
    let k = keys::rotation(&current, signer, next, u64::try_from(head).unwrap_or(0))?;
    insert_key(&tx, &k, now_ms).await?;
    tx.commit().await?;
    Ok(k)
}

pub(super) async fn claim_meta(c: &Object, key: &str, value: &str) -> Result<String, StoreError> {
    sql::execute(c, q::CLAIM_META, &[&key, &value]).await?;
    sql::query_opt(c, q::GET_META, &[&key])
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("store_meta {key} vanished")))?
        .text(0)
}

pub(super) async fn record_admin_action(
    c: &Object,
    a: &crate::types::AdminAction,
) -> Result<(), StoreError> {
    sql::execute(
        c,
        q::INSERT_ADMIN_ACTION,
        &[&a.time_ms.0, &a.action, &a.target, &a.outcome, &a.detail],
    )
    .await?;
    Ok(())
}

pub(super) async fn admin_actions(
    c: &Object,
    after: i64,
    limit: usize,
) -> Result<Vec<crate::types::AdminActionRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    read::all(c, q::ADMIN_ACTIONS, &[&after, &limit], rows::admin_action).await
}
