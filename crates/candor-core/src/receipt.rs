//! Consent receipts: what a subject is handed for each consent change, and what anyone
//! holding the operator's public key can check offline.
//!
//! A receipt carries the full ledger entry (so the canonical bytes can be rebuilt), its
//! hash and the operator's Ed25519 signature over that hash: the very signature stored
//! in the ledger, so a receipt also proves the record is part of the operator's chain.
//! The fields follow the spirit of Kantara Consent Receipt v1.1 / ISO/IEC TS 27560
//! (controller, purpose, notice, time, method of collection); the JSON form is the
//! server's concern.

use crate::ledger::{KeyId, KeyRing, LedgerEntry};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("the receipt's fields do not hash to its recordHash: it was altered")]
    HashMismatch,
    #[error("the signature does not verify under the receipt's public key")]
    BadSignature,
    #[error("the receipt names key {found}, but the operator's key for this record is {expected}")]
    WrongKey { found: String, expected: String },
    #[error("the public key is not a valid Ed25519 key")]
    BadKey,
    #[error("no key in the operator's key ring covers this record")]
    NoKey,
}

/// The operator's receipt-signing key pair.
pub struct ReceiptSigner {
    key: SigningKey,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ReceiptSigner(public {})",
            key_id(&self.key.verifying_key())
        )
    }
}

impl ReceiptSigner {
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    pub fn from_bytes(b: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(b),
        }
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}

/// A short, stable name for a public key: hex of its first 8 bytes ([`KeyId`]).
pub fn key_id(k: &VerifyingKey) -> String {
    KeyId::of(k).to_string()
}

pub fn parse_public_key(bytes: &[u8]) -> Result<VerifyingKey, ReceiptError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| ReceiptError::BadKey)?;
    VerifyingKey::from_bytes(&arr).map_err(|_| ReceiptError::BadKey)
}

/// Checks a receipt's entry against its claimed hash and signature, under the key the
/// ring says was current for the record (the ring the operator published, checked by
/// the caller; or one key the caller decided to trust). A format-2 record names its key,
/// which must be that one. Strict Ed25519 verification. Returns the key's id.
pub fn verify(
    entry: &LedgerEntry,
    record_hash: &[u8; 32],
    signature: &[u8; 64],
    ring: &KeyRing,
) -> Result<KeyId, ReceiptError> {
    let key = ring.key_for(entry.seq).ok_or(ReceiptError::NoKey)?;
    if let Some(a) = &entry.attribution {
        if a.key_id != KeyId::of(key) {
            return Err(ReceiptError::WrongKey {
                found: a.key_id.to_string(),
                expected: KeyId::of(key).to_string(),
            });
        }
    }
    if &entry.hash() != record_hash {
        return Err(ReceiptError::HashMismatch);
    }
    key.verify_strict(record_hash, &Signature::from_bytes(signature))
        .map_err(|_| ReceiptError::BadSignature)?;
    Ok(KeyId::of(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{Channel, ConsentStatus};
    use crate::ids::{PurposeId, SubjectId};
    use crate::ledger::{Evidence, GENESIS};

    #[test]
    fn verifies_and_detects_tampering() {
        let s = ReceiptSigner::generate();
        let e = LedgerEntry {
            seq: 1,
            subject: SubjectId::random(),
            purpose: PurposeId::parse("loyalty").unwrap(),
            status: ConsentStatus::Given,
            notice_version: 2,
            notice_hash: [1; 32],
            channel: Channel::PreferenceCenter,
            time_ms: crate::UnixMillis(5),
            evidence: Evidence::default(),
            prev_hash: GENESIS,
            attribution: None,
        };
        let sealed = e.clone().seal(s.signing_key());
        let vk = s.verifying_key();
        let ring = KeyRing::single(vk);
        assert_eq!(
            verify(&e, &sealed.hash, &sealed.signature, &ring),
            Ok(KeyId::of(&vk))
        );
        let mut bad = e.clone();
        bad.status = ConsentStatus::Refused;
        assert_eq!(
            verify(&bad, &sealed.hash, &sealed.signature, &ring),
            Err(ReceiptError::HashMismatch)
        );
        let other = KeyRing::single(ReceiptSigner::generate().verifying_key());
        assert_eq!(
            verify(&e, &sealed.hash, &sealed.signature, &other),
            Err(ReceiptError::BadSignature)
        );
        // A format-2 record naming a key other than the ring's for it.
        let named = LedgerEntry {
            attribution: Some(crate::ledger::Attribution {
                actor: crate::ledger::Actor::Admin,
                key_id: KeyId([7; 8]),
            }),
            ..e
        };
        let sealed = named.clone().seal(s.signing_key());
        assert!(matches!(
            verify(&named, &sealed.hash, &sealed.signature, &ring),
            Err(ReceiptError::WrongKey { .. })
        ));
    }
}
