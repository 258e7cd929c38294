//! Consent receipts: what a subject is handed for each consent change, and what anyone
//! holding the operator's public key can check offline.
//!
//! A receipt carries the full ledger entry (so the canonical bytes can be rebuilt), its
//! hash and the operator's Ed25519 signature over that hash: the very signature stored
//! in the ledger, so a receipt also proves the record is part of the operator's chain.
//! The fields follow the spirit of Kantara Consent Receipt v1.1 / ISO/IEC TS 27560
//! (controller, purpose, notice, time, method of collection); the JSON form is the
//! server's concern.

use crate::ledger::LedgerEntry;
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("the receipt's fields do not hash to its recordHash: it was altered")]
    HashMismatch,
    #[error("the signature does not verify under the receipt's public key")]
    BadSignature,
    #[error("the receipt was signed by key {found}, not the expected {expected}")]
    WrongKey { found: String, expected: String },
    #[error("the public key is not a valid Ed25519 key")]
    BadKey,
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

/// A short, stable name for a public key: hex of its first 8 bytes.
pub fn key_id(k: &VerifyingKey) -> String {
    hex::encode(&k.as_bytes()[..8])
}

pub fn parse_public_key(bytes: &[u8]) -> Result<VerifyingKey, ReceiptError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| ReceiptError::BadKey)?;
    VerifyingKey::from_bytes(&arr).map_err(|_| ReceiptError::BadKey)
}

/// Checks a receipt's entry against its claimed hash and signature; if `expected` is
/// given, also that it was signed by that key (the operator's published key).
pub fn verify(
    entry: &LedgerEntry,
    record_hash: &[u8; 32],
    signature: &[u8; 64],
    key: &VerifyingKey,
    expected: Option<&VerifyingKey>,
) -> Result<(), ReceiptError> {
    if let Some(e) = expected {
        if e != key {
            return Err(ReceiptError::WrongKey {
                found: key_id(key),
                expected: key_id(e),
            });
        }
    }
    if &entry.hash() != record_hash {
        return Err(ReceiptError::HashMismatch);
    }
    key.verify(record_hash, &Signature::from_bytes(signature))
        .map_err(|_| ReceiptError::BadSignature)
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
        };
        let sealed = e.clone().seal(s.signing_key());
        let vk = s.verifying_key();
        assert_eq!(
            verify(&e, &sealed.hash, &sealed.signature, &vk, Some(&vk)),
            Ok(())
        );
        let mut bad = e.clone();
        bad.status = ConsentStatus::Refused;
        assert_eq!(
            verify(&bad, &sealed.hash, &sealed.signature, &vk, None),
            Err(ReceiptError::HashMismatch)
        );
        let other = ReceiptSigner::generate().verifying_key();
        assert_eq!(
            verify(&e, &sealed.hash, &sealed.signature, &other, None),
            Err(ReceiptError::BadSignature)
        );
        assert!(matches!(
            verify(&e, &sealed.hash, &sealed.signature, &vk, Some(&other)),
            Err(ReceiptError::WrongKey { .. })
        ));
    }
}
