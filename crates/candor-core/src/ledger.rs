//! The consent ledger's records, their canonical bytes, hash chaining and the verifier.
//!
//! Each record commits to the previous record's hash, and is signed with the operator's
//! Ed25519 key (the same signature the subject's receipt carries). The chain alone finds
//! edits, drops and reorders; the signature also finds a forged record whose hashes were
//! recomputed, which a bare hash chain cannot. A separately stored head (last sequence
//! number and hash, written in the same transaction) finds a truncated tail.
//!
//! Canonical bytes are a fixed, length-prefixed binary layout (not JSON), so that no
//! serializer's whims can change a hash. Never change the layout of version 1; add a
//! new domain tag instead.

use crate::consent::{Channel, ConsentStatus};
use crate::ids::{PurposeId, SubjectId};
use crate::time::UnixMillis;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

pub const GENESIS: [u8; 32] = [0u8; 32];
const DOMAIN: &[u8] = b"candor-ledger-v1\0";

/// Non-personal facts about how a choice was captured (prompt id, locale, whether GPC
/// was present), kept in the ledger, which outlives erasure. Sorted, so its canonical
/// form is unique.
///
/// Its limits are checked in one place, [`Evidence::parse`], whoever supplies it (the
/// consent API, an import file): at most [`Evidence::MAX_ENTRIES`] entries, keys of 1 to
/// [`Evidence::MAX_KEY`] bytes, values of at most [`Evidence::MAX_VALUE`] bytes. Candor
/// adds a few entries of its own on top ([`Evidence::with`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence(BTreeMap<String, String>);

/// Why supplied evidence was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "evidence is at most {} entries, keys 1 to {} bytes, values up to {} bytes",
    Evidence::MAX_ENTRIES,
    Evidence::MAX_KEY,
    Evidence::MAX_VALUE
)]
pub struct EvidenceError;

impl Evidence {
    pub const MAX_ENTRIES: usize = 16;
    pub const MAX_KEY: usize = 64;
    pub const MAX_VALUE: usize = 256;

    /// Evidence as supplied by a client or a file, checked against the limits.
    pub fn parse(entries: BTreeMap<String, String>) -> Result<Self, EvidenceError> {
        let fits = |(k, v): (&String, &String)| {
            !k.is_empty() && k.len() <= Self::MAX_KEY && v.len() <= Self::MAX_VALUE
        };
        if entries.len() > Self::MAX_ENTRIES || !entries.iter().all(fits) {
            return Err(EvidenceError);
        }
        Ok(Self(entries))
    }

    /// Evidence as read back from the ledger: it was checked when it was recorded, and
    /// the record's hash and signature vouch that it is what was recorded.
    pub fn stored(entries: BTreeMap<String, String>) -> Self {
        Self(entries)
    }

    /// Adds an entry Candor records itself (a signal, an import line number); these
    /// are few, fixed and short, so they come on top of the supplied ones.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// One consent change, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub seq: u64,
    pub subject: SubjectId,
    pub purpose: PurposeId,
    pub status: ConsentStatus,
    pub notice_version: u32,
    pub notice_hash: [u8; 32],
    pub channel: Channel,
    /// When the choice was made.
    pub time_ms: UnixMillis,
    pub evidence: Evidence,
    pub prev_hash: [u8; 32],
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

impl LedgerEntry {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(self.subject.as_bytes());
        put_bytes(&mut out, self.purpose.as_str().as_bytes());
        out.push(self.status.code());
        out.extend_from_slice(&self.notice_version.to_be_bytes());
        out.extend_from_slice(&self.notice_hash);
        out.push(self.channel.code());
        out.extend_from_slice(&self.time_ms.0.to_be_bytes());
        out.extend_from_slice(&(self.evidence.0.len() as u32).to_be_bytes());
        for (k, v) in &self.evidence.0 {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v.as_bytes());
        }
        out.extend_from_slice(&self.prev_hash);
        out
    }

    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// Hashes and signs the entry.
    pub fn seal(self, key: &SigningKey) -> SealedEntry {
        let hash = self.hash();
        let signature = key.sign(&hash).to_bytes();
        SealedEntry {
            entry: self,
            hash,
            signature,
        }
    }
}

/// A ledger entry with its hash and the operator's signature over that hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedEntry {
    pub entry: LedgerEntry,
    pub hash: [u8; 32],
    pub signature: [u8; 64],
}

impl SealedEntry {
    /// True when the content hashes to the stored hash and the signature is the key's.
    pub fn is_authentic(&self, key: &VerifyingKey) -> bool {
        self.entry.hash() == self.hash
            && key
                .verify(&self.hash, &Signature::from_bytes(&self.signature))
                .is_ok()
    }
}

/// What the verifier found, naming the first record at fault by its sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainFault {
    /// The record's content no longer matches its hash or signature.
    Edited { seq: u64 },
    /// One or more records before this one are missing.
    Dropped { before_seq: u64 },
    /// Records at the end, after the recorded head, are missing.
    TruncatedAfter { seq: u64, head_seq: u64 },
    /// This record does not belong to the chain: removing it restores the chain.
    Inserted { seq: u64 },
    /// This record is out of its original order.
    Reordered { seq: u64 },
}

impl fmt::Display for ChainFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainFault::Edited { seq } => {
                write!(f, "record {seq} was edited: its content does not match its hash or signature")
            }
            ChainFault::Dropped { before_seq } => {
                write!(f, "records were dropped before record {before_seq}: its previous-hash link is to no record present")
            }
            ChainFault::TruncatedAfter { seq, head_seq } => write!(
                f,
                "records after {seq} were dropped: the ledger head says the last record is {head_seq}"
            ),
            ChainFault::Inserted { seq } => {
                write!(f, "record {seq} was inserted: the chain is whole without it")
            }
            ChainFault::Reordered { seq } => {
                write!(f, "record {seq} is out of order: it links to a record that is not its predecessor")
            }
        }
    }
}

/// The chain's head as recorded beside it: last sequence number and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
}

/// Verifies records in the order the store holds them (ascending stored `seq`).
/// Returns the number of records checked, or the first fault found.
pub fn verify_chain(
    records: &[SealedEntry],
    head: Option<Head>,
    key: &VerifyingKey,
) -> Result<u64, ChainFault> {
    let by_hash: HashMap<[u8; 32], usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.hash, i))
        .collect();
    let mut expected_prev = GENESIS;
    let mut expected_seq = 1u64;
    for (i, r) in records.iter().enumerate() {
        let seq = r.entry.seq;
        let link_ok = r.entry.prev_hash == expected_prev;
        let content_ok = r.is_authentic(key);
        let seq_ok = seq == expected_seq;
        if link_ok && content_ok && seq_ok {
            expected_prev = r.hash;
            expected_seq = seq + 1;
            continue;
        }
        let later = |h: &[u8; 32]| by_hash.get(h).map(|j| *j > i);
        if content_ok {
            // An authentic record out of place was moved, or its predecessors removed,
            // or it is a replayed copy of a record that is also in its right place.
            return Err(match later(&r.entry.prev_hash) {
                _ if link_ok => ChainFault::Dropped { before_seq: seq },
                Some(true) => ChainFault::Reordered { seq },
                Some(false) => ChainFault::Inserted { seq },
                None => ChainFault::Dropped { before_seq: seq },
            });
        }
        if !link_ok && later(&r.entry.prev_hash) == Some(true) {
            // It links to a record that comes after it: moved (even if renumbered).
            return Err(ChainFault::Reordered { seq });
        }
        // Does the chain continue as if this record were not there?
        let skipping_restores = match records.get(i + 1) {
            Some(next) => next.entry.prev_hash == expected_prev,
            None => head.is_some_and(|h| h.hash == expected_prev && seq > h.seq),
        };
        return Err(if skipping_restores {
            ChainFault::Inserted { seq }
        } else if link_ok {
            ChainFault::Edited { seq }
        } else {
            match later(&r.entry.prev_hash) {
                Some(true) => ChainFault::Reordered { seq },
                None => ChainFault::Dropped { before_seq: seq },
                Some(false) => ChainFault::Edited { seq },
            }
        });
    }
    if let Some(h) = head {
        let last = records.last();
        let (last_seq, last_hash) = last.map_or((0, GENESIS), |r| (r.entry.seq, r.hash));
        if h.seq > last_seq {
            return Err(ChainFault::TruncatedAfter {
                seq: last_seq,
                head_seq: h.seq,
            });
        }
        if h.seq < last_seq || h.hash != last_hash {
            return Err(ChainFault::Inserted { seq: last_seq });
        }
    }
    Ok(records.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64, key: &SigningKey) -> Vec<SealedEntry> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let e = LedgerEntry {
                    seq,
                    subject: SubjectId::from_bytes([seq as u8; 16]),
                    purpose: PurposeId::parse("analytics").unwrap(),
                    status: ConsentStatus::Given,
                    notice_version: 1,
                    notice_hash: [7; 32],
                    channel: Channel::Prompt,
                    time_ms: UnixMillis(1_700_000_000_000 + seq as i64),
                    evidence: Evidence::default().with("prompt", "banner"),
                    prev_hash: prev,
                }
                .seal(key);
                prev = e.hash;
                e
            })
            .collect()
    }

    fn head(c: &[SealedEntry]) -> Option<Head> {
        c.last().map(|r| Head {
            seq: r.entry.seq,
            hash: r.hash,
        })
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    #[test]
    fn intact_chain_verifies() {
        let k = key();
        let c = chain(10, &k);
        assert_eq!(verify_chain(&c, head(&c), &k.verifying_key()), Ok(10));
        assert_eq!(verify_chain(&[], None, &k.verifying_key()), Ok(0));
    }

    #[test]
    fn finds_edit() {
        let k = key();
        let mut c = chain(10, &k);
        let h = head(&c);
        c[4].entry.status = ConsentStatus::Refused;
        assert_eq!(
            verify_chain(&c, h, &k.verifying_key()),
            Err(ChainFault::Edited { seq: 5 })
        );
        // Even with the hash recomputed, the signature gives it away.
        c[4].hash = c[4].entry.hash();
        let r = verify_chain(&c, h, &k.verifying_key());
        assert!(matches!(r, Err(ChainFault::Edited { seq: 5 })), "{r:?}");
    }

    #[test]
    fn finds_drop() {
        let k = key();
        let mut c = chain(10, &k);
        let h = head(&c);
        c.remove(4);
        assert_eq!(
            verify_chain(&c, h, &k.verifying_key()),
            Err(ChainFault::Dropped { before_seq: 6 })
        );
        let mut t = chain(10, &k);
        t.pop();
        assert_eq!(
            verify_chain(&t, h, &k.verifying_key()),
            Err(ChainFault::TruncatedAfter {
                seq: 9,
                head_seq: 10
            })
        );
    }

    #[test]
    fn finds_insert() {
        let k = key();
        let mut c = chain(10, &k);
        let h = head(&c);
        let mut forged = c[3].clone();
        forged.entry.seq = 5;
        forged.entry.status = ConsentStatus::Refused;
        c.insert(4, forged);
        for r in c.iter_mut().skip(5) {
            r.entry.seq += 1;
        }
        let r = verify_chain(&c, h, &k.verifying_key());
        assert_eq!(r, Err(ChainFault::Inserted { seq: 5 }));
        // Appended after the head, with a valid link but forged signature.
        let mut c = chain(10, &k);
        let mut extra = chain(11, &SigningKey::from_bytes(&[1; 32])).pop().unwrap();
        extra.entry.prev_hash = c[9].hash;
        c.push(extra);
        assert_eq!(
            verify_chain(&c, h, &k.verifying_key()),
            Err(ChainFault::Inserted { seq: 11 })
        );
    }

    #[test]
    fn finds_reorder_with_renumbering() {
        let k = key();
        let mut c = chain(10, &k);
        let h = head(&c);
        c.swap(4, 5);
        c[4].entry.seq = 5;
        c[5].entry.seq = 6;
        let r = verify_chain(&c, h, &k.verifying_key());
        assert!(matches!(r, Err(ChainFault::Reordered { seq: 5 })), "{r:?}");
    }

    #[test]
    fn finds_reorder() {
        let k = key();
        let mut c = chain(10, &k);
        let h = head(&c);
        c.swap(4, 5);
        let r = verify_chain(&c, h, &k.verifying_key());
        assert!(matches!(r, Err(ChainFault::Reordered { seq: 6 })), "{r:?}");
    }

    #[test]
    fn canonical_bytes_are_stable() {
        // A change to the layout would silently invalidate every ledger: pin it.
        let k = key();
        let c = chain(1, &k);
        assert_eq!(hex::encode(c[0].hash), hex::encode(c[0].entry.hash()),);
        assert_eq!(
            c[0].entry.canonical_bytes().len(),
            17 + 8 + 16 + 4 + 9 + 1 + 4 + 32 + 1 + 8 + 4 + 4 + 6 + 4 + 6 + 32
        );
    }
}

#[cfg(test)]
mod evidence_tests {
    use super::*;

    #[test]
    fn evidence_limits_are_checked_on_parse() {
        let map = |n: usize, k: &str, v: &str| -> BTreeMap<String, String> {
            (0..n).map(|i| (format!("{k}{i}"), v.to_owned())).collect()
        };
        assert!(Evidence::parse(map(16, "k", &"v".repeat(256))).is_ok());
        assert_eq!(Evidence::parse(map(17, "k", "v")), Err(EvidenceError));
        assert_eq!(
            Evidence::parse(map(1, "k", &"v".repeat(257))),
            Err(EvidenceError)
        );
        assert_eq!(
            Evidence::parse(map(1, &"k".repeat(64), "v")),
            Err(EvidenceError)
        );
        assert!(Evidence::parse(map(1, &"k".repeat(63), "v")).is_ok());
        assert_eq!(
            Evidence::parse(BTreeMap::from([(String::new(), "v".into())])),
            Err(EvidenceError)
        );
    }
}
