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
use candor_core::ledger::{
    Actor, Attribution, Evidence, KeyId, KeyRing, LedgerEntry, RingKey, SealedEntry,
};
use candor_core::receipt::{self, key_id};
use candor_core::{PurposeId, SubjectId, UnixMillis};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const RECEIPT_VERSION: &str = "candor-receipt-1";

#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Controller {
    pub pii_controller: String,
    pub policy_url: String,
    pub contact: String,
    pub jurisdiction: String,
}

/// The ledger entry, field for field.
#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
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
    /// Who acted (format-2 records): `source:<id>`, `subject-token`, `admin`, `import`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The id of the key that signed it (format-2 records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_id: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, utoipa::ToSchema)]
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
            actor: e.attribution.as_ref().map(|a| a.actor.to_text()),
            signing_key_id: e.attribution.as_ref().map(|a| a.key_id.to_string()),
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
            attribution: match (&self.actor, &self.signing_key_id) {
                (None, None) => None,
                (Some(a), Some(k)) => Some(Attribution {
                    actor: Actor::parse(a).ok_or("unknown actor")?,
                    key_id: KeyId::parse_hex(k).ok_or("signingKeyId is not 16 hex characters")?,
                }),
                _ => return Err("actor and signingKeyId go together".into()),
            },
        })
    }
}

/// The receipt of one ledger record, naming `key`, the key that signed it (the one
/// the operator's ring says was current for the record).
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

/// Which keys a receipt is checked against.
pub enum Trust<'a> {
    /// The operator's published key ring (or one key of it).
    Ring(&'a KeyRing),
    /// The key the receipt itself carries: proves only that the receipt is intact,
    /// not that the operator signed it; only on explicit request.
    Embedded,
}

/// Checks a receipt against the keys trusted; returns the id of the key that signed
/// it. Strict verification (`receipt::verify`).
pub fn verify(text: &str, trust: Trust<'_>) -> Result<String, String> {
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
    let embedded;
    let ring = match trust {
        Trust::Ring(ring) => ring,
        Trust::Embedded => {
            let pk = hex::decode(&r.public_key).map_err(|_| "publicKey is not hex")?;
            let key = receipt::parse_public_key(&pk).map_err(|e| e.to_string())?;
            embedded = KeyRing::single(key);
            &embedded
        }
    };
    receipt::verify(&entry, &hash, &sig, ring)
        .map(|k| k.to_string())
        .map_err(|e| e.to_string())
}

/// The operator's key ring as `GET /v1/receipts/public-key` serves it: every key with
/// the first record it signs and its predecessor's certificate.
pub fn ring_json(ring: &KeyRing) -> KeyRingJson {
    let current = ring.keys().last();
    KeyRingJson {
        algorithm: "Ed25519",
        public_key: current.map(|k| hex::encode(k.key.as_bytes())),
        key_id: current.map(|k| key_id(&k.key)),
        keys: ring
            .keys()
            .iter()
            .map(|k| RingKeyJson {
                public_key: hex::encode(k.key.as_bytes()),
                key_id: key_id(&k.key),
                from_seq: k.from_seq,
                certificate: k.certificate.map(|c| STANDARD.encode(c)),
            })
            .collect(),
    }
}

/// The receipt-signing key ring: the current key, and every key the ledger has used,
/// each certified by its predecessor.
#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRingJson {
    /// Always `Ed25519`.
    pub algorithm: &'static str,
    /// The current key, hex.
    pub public_key: Option<String>,
    /// The current key's id.
    pub key_id: Option<String>,
    /// Every key, oldest first.
    pub keys: Vec<RingKeyJson>,
}

/// One key of the ring.
#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RingKeyJson {
    /// The public key, hex.
    pub public_key: String,
    pub key_id: String,
    /// The first ledger record this key signs.
    pub from_seq: u64,
    /// The predecessor's signature handing over to this key, base64 (`null` for the
    /// first key).
    pub certificate: Option<String>,
}

/// A key ring from [`ring_json`]'s form (an operator's published file), or one hex key.
/// The ring is checked: each key certified by its predecessor, ending at its current
/// key.
pub fn parse_ring(text: &str) -> Result<KeyRing, String> {
    let text = text.trim();
    if let Ok(b) = hex::decode(text) {
        return receipt::parse_public_key(&b)
            .map(KeyRing::single)
            .map_err(|e| e.to_string());
    }
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "neither a hex key nor the key ring's JSON")?;
    let mut keys = Vec::new();
    for k in v["keys"]
        .as_array()
        .ok_or("the key ring JSON has no keys")?
    {
        let pk = k["publicKey"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .ok_or("a key without a hex publicKey")?;
        let certificate = match k["certificate"].as_str() {
            None => None,
            Some(c) => Some(
                STANDARD
                    .decode(c)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or("a certificate that is not 64 base64 bytes")?,
            ),
        };
        keys.push(RingKey {
            key: receipt::parse_public_key(&pk).map_err(|e| e.to_string())?,
            from_seq: k["fromSeq"].as_u64().ok_or("a key without fromSeq")?,
            certificate,
        });
    }
    let ring = KeyRing::new(keys);
    let last = ring.keys().last().ok_or("the key ring is empty")?.key;
    ring.check(&last).map_err(|e| e.to_string())?;
    Ok(ring)
}
