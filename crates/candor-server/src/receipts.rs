//! Consent receipts as JSON: built from sealed ledger entries, and checked offline by
//! `candor receipt verify`. The signed content is the ledger entry's canonical bytes
//! (see `candor_core::ledger`); this JSON carries those fields faithfully, plus human
//! context (controller, purpose title) that is informative and not signed.
//!
//! Field names follow Kantara Consent Receipt v1.1 where one fits (`piiControllers`,
//! `policyUrl`, `collectionMethod`, `consentTimestamp`).

use crate::config::OperatorInfo;
use crate::segment::format_time;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use candor_core::consent::{Channel, ConsentStatus};
use candor_core::ledger::{Evidence, LedgerEntry, SealedEntry};
use candor_core::receipt::{self, key_id};
use candor_core::{PurposeId, SubjectId, UnixMillis};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const RECEIPT_VERSION: &str = "candor-receipt-1";

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Controller {
    pub pii_controller: String,
    pub policy_url: String,
    pub contact: String,
    pub jurisdiction: String,
}

/// The ledger entry, field for field.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordJson {
    pub seq: u64,
    pub subject: String,
    pub purpose: String,
    pub status: String,
    pub notice_version: u32,
    pub notice_hash: String,
    pub collection_method: String,
    pub consent_timestamp_ms: i64,
    pub consent_timestamp: String,
    pub evidence: BTreeMap<String, String>,
    pub prev_hash: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub version: String,
    pub receipt_id: String,
    pub controller: Controller,
    pub record: RecordJson,
    pub record_hash: String,
    pub signature: String,
    pub public_key: String,
    pub key_id: String,
    /// The subject's consent right after this change, as IAB strings (informative,
    /// not signed: they are derived from the signed records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<crate::iab::Signals>,
}

impl RecordJson {
    pub fn from_entry(e: &LedgerEntry) -> Self {
        Self {
            seq: e.seq,
            subject: e.subject.to_string(),
            purpose: e.purpose.to_string(),
            status: e.status.as_str().into(),
            notice_version: e.notice_version,
            notice_hash: hex::encode(e.notice_hash),
            collection_method: e.channel.as_str().into(),
            consent_timestamp_ms: e.time_ms.0,
            consent_timestamp: format_time(e.time_ms),
            evidence: e.evidence.entries().clone(),
            prev_hash: hex::encode(e.prev_hash),
        }
    }

    pub fn to_entry(&self) -> Result<LedgerEntry, String> {
        let h32 = |s: &str, what: &str| -> Result<[u8; 32], String> {
            let mut b = [0u8; 32];
            hex::decode_to_slice(s, &mut b)
                .map_err(|_| format!("{what} is not 64 hex characters"))?;
            Ok(b)
        };
        Ok(LedgerEntry {
            seq: self.seq,
            subject: SubjectId::parse(&self.subject).map_err(|e| e.to_string())?,
            purpose: PurposeId::parse(&self.purpose).map_err(|e| e.to_string())?,
            status: ConsentStatus::parse(&self.status).ok_or("unknown status")?,
            notice_version: self.notice_version,
            notice_hash: h32(&self.notice_hash, "noticeHash")?,
            channel: Channel::parse(&self.collection_method).ok_or("unknown collectionMethod")?,
            time_ms: UnixMillis(self.consent_timestamp_ms),
            // What the receipt claims was recorded: its signature vouches for it or not.
            evidence: Evidence::stored(self.evidence.clone()),
            prev_hash: h32(&self.prev_hash, "prevHash")?,
        })
    }
}

pub fn build(s: &SealedEntry, op: &OperatorInfo, key: &VerifyingKey) -> Receipt {
    Receipt {
        version: RECEIPT_VERSION.into(),
        receipt_id: hex::encode(&s.hash[..16]),
        controller: Controller {
            pii_controller: op.name.clone(),
            policy_url: op.policy_url.clone(),
            contact: op.contact.clone(),
            jurisdiction: op.jurisdiction.clone(),
        },
        record: RecordJson::from_entry(&s.entry),
        record_hash: hex::encode(s.hash),
        signature: STANDARD.encode(s.signature),
        public_key: hex::encode(key.as_bytes()),
        key_id: key_id(key),
        signals: None,
    }
}

/// Checks a receipt; with `expected`, also that the operator's key signed it.
/// Returns the key id that signed it.
pub fn verify(text: &str, expected: Option<&VerifyingKey>) -> Result<String, String> {
    let r: Receipt =
        serde_json::from_str(text).map_err(|e| format!("not a Candor receipt: {e}"))?;
    if r.version != RECEIPT_VERSION {
        return Err(format!("unsupported receipt version {:?}", r.version));
    }
    let entry = r.record.to_entry()?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&r.record_hash, &mut hash)
        .map_err(|_| "recordHash is not 64 hex characters")?;
    let sig: [u8; 64] = STANDARD
        .decode(&r.signature)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or("signature is not 64 base64 bytes")?;
    let pk = hex::decode(&r.public_key).map_err(|_| "publicKey is not hex")?;
    let key = receipt::parse_public_key(&pk).map_err(|e| e.to_string())?;
    receipt::verify(&entry, &hash, &sig, &key, expected).map_err(|e| e.to_string())?;
    Ok(key_id(&key))
}
