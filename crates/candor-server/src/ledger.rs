//! Ledger verification over a store: read every record in order and hand them to the
//! core verifier, under the key ring the store records, checked to end at the key the
//! verifier holds, and check that the ledger still extends every checkpoint given.
//! Signed checkpoints of the head, in the JSON form `GET /v1/ledger/checkpoint` serves
//! and `candor ledger checkpoint` writes. Shared by the CLI and the API.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use candor_core::ledger::{
    verify_chain, ChainFault, Checkpoint, CheckpointFault, KeyId, RingFault, SignedCheckpoint,
    GENESIS,
};
use candor_core::receipt::ReceiptSigner;
use candor_core::UnixMillis;
use candor_store::{Store, StoreError};
use ed25519_dalek::VerifyingKey;
use std::fmt;

/// Why a ledger does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerFault {
    /// The recorded key ring is not certified down to the current key.
    Ring(RingFault),
    Chain(ChainFault),
    /// The ledger no longer extends a checkpoint kept elsewhere.
    Checkpoint(CheckpointFault),
}

impl fmt::Display for LedgerFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerFault::Ring(r) => write!(f, "the signing key ring is not trustworthy: {r}"),
            LedgerFault::Chain(c) => c.fmt(f),
            LedgerFault::Checkpoint(c) => c.fmt(f),
        }
    }
}

/// `Ok(Ok(n))`: n records verified. `Ok(Err(fault))`: the first fault found. The
/// ledger must also extend every one of `checkpoints`.
pub async fn verify(
    store: &dyn Store,
    current: &VerifyingKey,
    checkpoints: &[SignedCheckpoint],
) -> Result<Result<u64, LedgerFault>, StoreError> {
    let ring = store.signing_keys().await?;
    if let Err(e) = ring.check(current) {
        return Ok(Err(LedgerFault::Ring(e)));
    }
    let head = store.ledger_head().await?;
    let mut all = Vec::new();
    let mut after = 0u64;
    loop {
        let page = store.ledger_page(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.entry.seq;
        all.extend(page);
    }
    let n = match verify_chain(&all, head, &ring) {
        Ok(n) => n,
        Err(f) => return Ok(Err(LedgerFault::Chain(f))),
    };
    for cp in checkpoints {
        if let Err(f) = cp.verify(&ring).and_then(|()| cp.extended_by(&all)) {
            return Ok(Err(LedgerFault::Checkpoint(f)));
        }
    }
    Ok(Ok(n))
}

/// A checkpoint of the ledger's head now, signed with the current signing key.
pub async fn checkpoint(
    store: &dyn Store,
    signer: &ReceiptSigner,
    now: UnixMillis,
) -> Result<SignedCheckpoint, StoreError> {
    let (seq, head) = store
        .ledger_head()
        .await?
        .map_or((0, GENESIS), |h| (h.seq, h.hash));
    Ok(Checkpoint {
        seq,
        head,
        time_ms: now,
        key_id: KeyId::of(&signer.verifying_key()),
    }
    .sign(signer.signing_key()))
}

/// A signed checkpoint of the ledger's head, as JSON (what an operator or auditor
/// keeps, to check later with `candor ledger verify --checkpoint`).
#[derive(serde::Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointJson {
    /// Always `candor-checkpoint-1`.
    pub version: &'static str,
    /// Records in the ledger (the last one's sequence number).
    pub seq: u64,
    /// The last record's hash, hex (zeros for an empty ledger).
    pub head_hash: String,
    /// When the checkpoint was taken, in milliseconds since the Unix epoch (signed).
    pub time_ms: i64,
    /// The same time, ISO-8601.
    pub time: String,
    /// The signing key's id.
    pub key_id: String,
    /// The Ed25519 signature, base64.
    pub signature: String,
}

/// A checkpoint as JSON (what an operator or auditor keeps).
pub fn checkpoint_json(cp: &SignedCheckpoint) -> CheckpointJson {
    let c = &cp.checkpoint;
    CheckpointJson {
        version: "candor-checkpoint-1",
        seq: c.seq,
        head_hash: hex::encode(c.head),
        time_ms: c.time_ms.0,
        time: crate::segment::format_time(c.time_ms),
        key_id: c.key_id.to_string(),
        signature: STANDARD.encode(cp.signature),
    }
}

/// A checkpoint from [`checkpoint_json`]'s form.
pub fn parse_checkpoint(text: &str) -> Result<SignedCheckpoint, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a checkpoint: {e}"))?;
    if v["version"] != "candor-checkpoint-1" {
        return Err("not a candor-checkpoint-1 checkpoint".into());
    }
    let mut head = [0u8; 32];
    hex::decode_to_slice(v["headHash"].as_str().unwrap_or(""), &mut head)
        .map_err(|_| "headHash is not 64 hex characters")?;
    Ok(SignedCheckpoint {
        checkpoint: Checkpoint {
            seq: v["seq"].as_u64().ok_or("seq is missing")?,
            head,
            time_ms: UnixMillis(v["timeMs"].as_i64().ok_or("timeMs is missing")?),
            key_id: v["keyId"]
                .as_str()
                .and_then(KeyId::parse_hex)
                .ok_or("keyId is not 16 hex characters")?,
        },
        signature: v["signature"]
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or("signature is not 64 base64 bytes")?,
    })
}
