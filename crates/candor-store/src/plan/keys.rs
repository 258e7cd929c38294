//! Keys that cannot silently change (issue 11, part 4): what a database records of the
//! keys it was first opened with, and the decision at every open.
//!
//! The master key lives outside the database (files in `keys/` or the environment). A
//! node started with another one, or with one freshly generated because `keys/` was
//! not restored, would write data nobody can read back beside data it cannot read,
//! and a second signing key would start an unverifiable ledger. So the database keeps
//! a one-way check value of the master key (`MasterKey::check_value`) and the ring of
//! receipt-signing keys, and every open compares: a mismatch refuses to open.
//!
//! A database written before this check existed records it at its next open, after
//! the keys are checked against the data itself: one subject's wrapped key must unwrap
//! and the newest ledger record must verify.

use crate::StoreError;
use candor_core::crypto::MasterKey;
use candor_core::ledger::{KeyId, KeyRing, RingKey, SealedEntry};
use candor_core::SubjectId;
use ed25519_dalek::VerifyingKey;

/// What a database holds about its keys, read at open.
#[derive(Debug, Default)]
pub struct Recorded {
    pub master_check: Option<[u8; 32]>,
    /// The signing keys, oldest first.
    pub ring: Vec<RingKey>,
    /// One subject and its wrapped data key, if there is any subject.
    pub sample: Option<(SubjectId, Vec<u8>)>,
    /// The newest ledger record, if any.
    pub last_record: Option<SealedEntry>,
}

/// What to do at open.
#[derive(Debug, PartialEq, Eq)]
pub enum Setup {
    /// The keys are the recorded ones.
    Ready,
    /// Nothing is recorded yet: record the master key's check value and the signing
    /// key as the first of the ring.
    Record,
}

pub const MASTER_MISMATCH: &str = "this database was first opened with another master key (its recorded check value differs): keys/master.key or CANDOR_MASTER_KEY is not the key the data was written with (a restore without keys/, or a second node without the shared key?). Restore the original key; refusing to start rather than write data nobody can read back";

/// Decides what an open does, or refuses it.
pub fn decide(
    r: &Recorded,
    master: &MasterKey,
    signer: &VerifyingKey,
) -> Result<Setup, StoreError> {
    match r.master_check {
        Some(check) => {
            if check != master.check_value() {
                return Err(StoreError::KeyMismatch(MASTER_MISMATCH.into()));
            }
            let current = r
                .ring
                .last()
                .ok_or_else(|| StoreError::Corrupt("the signing key ring is empty".into()))?;
            if &current.key != signer {
                return Err(StoreError::SigningKeyMismatch {
                    expected: KeyId::of(&current.key),
                    found: KeyId::of(signer),
                });
            }
            Ok(Setup::Ready)
        }
        None => {
            // Written before the check existed (or brand new): the keys must open
            // what is there.
            if let Some((s, wrapped)) = &r.sample {
                if master.unwrap_key(s, wrapped).is_err() {
                    return Err(StoreError::KeyMismatch(MASTER_MISMATCH.into()));
                }
            }
            if let Some(last) = &r.last_record {
                if !last.is_authentic(&KeyRing::single(*signer)) {
                    let expected = last
                        .entry
                        .attribution
                        .as_ref()
                        .map_or(KeyId([0; 8]), |a| a.key_id);
                    return Err(StoreError::SigningKeyMismatch {
                        expected,
                        found: KeyId::of(signer),
                    });
                }
            }
            Ok(Setup::Record)
        }
    }
}

/// The first key of a ring recorded now: it signs from record 1 (every record before
/// the check existed was signed by it, as [`decide`] verified on the newest).
pub fn first_key(signer: &VerifyingKey) -> RingKey {
    RingKey {
        key: *signer,
        from_seq: 1,
        certificate: None,
    }
}

/// The ring key that takes over from `current` (whose signer signs the hand-over) at
/// the record after `head_seq`. Refused when `current` has signed nothing yet: two
/// keys starting at one record would leave no way to tell which signed it.
pub fn rotation(
    current: &RingKey,
    signer: &candor_core::receipt::ReceiptSigner,
    next: VerifyingKey,
    head_seq: u64,
) -> Result<RingKey, StoreError> {
    use ed25519_dalek::Signer;
    if current.key != signer.verifying_key() {
        return Err(StoreError::SigningKeyMismatch {
            expected: KeyId::of(&current.key),
            found: KeyId::of(&signer.verifying_key()),
        });
    }
    let from_seq = head_seq + 1;
    if from_seq <= current.from_seq {
        return Err(StoreError::Refused(
            "the current signing key has not signed any record yet: nothing to rotate".into(),
        ));
    }
    let certificate = signer
        .signing_key()
        .sign(&candor_core::ledger::rotation_message(&next, from_seq))
        .to_bytes();
    Ok(RingKey {
        key: next,
        from_seq,
        certificate: Some(certificate),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::crypto::SubjectKey;
    use candor_core::receipt::ReceiptSigner;

    #[test]
    fn an_open_with_other_keys_is_refused() {
        let master = MasterKey::from_bytes(&[1; 32]);
        let other = MasterKey::from_bytes(&[2; 32]);
        let signer = ReceiptSigner::from_bytes(&[3; 32]).verifying_key();
        let other_signer = ReceiptSigner::from_bytes(&[4; 32]).verifying_key();
        // Brand new: record.
        assert_eq!(
            decide(&Recorded::default(), &master, &signer).unwrap(),
            Setup::Record
        );
        let recorded = Recorded {
            master_check: Some(master.check_value()),
            ring: vec![first_key(&signer)],
            ..Recorded::default()
        };
        assert_eq!(decide(&recorded, &master, &signer).unwrap(), Setup::Ready);
        assert!(matches!(
            decide(&recorded, &other, &signer),
            Err(StoreError::KeyMismatch(_))
        ));
        assert!(matches!(
            decide(&recorded, &master, &other_signer),
            Err(StoreError::SigningKeyMismatch { .. })
        ));
        // Written before the check: the keys must open the data.
        let s = SubjectId::random();
        let old = Recorded {
            sample: Some((s, master.wrap(&s, &SubjectKey::generate()))),
            ..Recorded::default()
        };
        assert_eq!(decide(&old, &master, &signer).unwrap(), Setup::Record);
        assert!(matches!(
            decide(&old, &other, &signer),
            Err(StoreError::KeyMismatch(_))
        ));
    }
}
