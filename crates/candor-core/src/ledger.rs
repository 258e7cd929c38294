//! The consent ledger's records, their canonical bytes, hash chaining and the verifier.
//!
//! Each record commits to the previous record's hash, and is signed with the operator's
//! Ed25519 key (the same signature the subject's receipt carries). The chain alone finds
//! edits, drops and reorders; the signature also finds a forged record whose hashes were
//! recomputed, which a bare hash chain cannot. A separately stored head (last sequence
//! number and hash, written in the same transaction) finds a truncated tail.
//!
//! Canonical bytes are a fixed, length-prefixed binary layout (not JSON), so that no
//! serializer's whims can change a hash. Never change the layout of a version; add a
//! new domain tag instead.
//!
//! - Format 1 (`candor-ledger-v1`): the consent change itself.
//! - Format 2 (`candor-ledger-v2`, issue 11): also who acted ([`Actor`]: the write key's
//!   source, a subject token, the admin, an import) and the id of the key that signs
//!   it ([`KeyId`]), so a rotated signing key is named inside the signed bytes. Records
//!   written before format 2 keep their format-1 bytes and still verify; a record's
//!   format is whether it carries an [`Attribution`].
//!
//! - Erasure records (no new format): a subject's erasure is a format-2 record with
//!   status [`ConsentStatus::Erased`] (byte 5, a value older records never hold, so
//!   their bytes and hashes are unchanged) under the marker purpose
//!   [`ERASURE_PURPOSE`], notice version 0 and an all-zero notice hash, signed like any
//!   other: the chain keeps verifying after an erasure and proves it took place, naming
//!   only the pseudonym and who asked ([`LedgerEntry::erasure`]).
//!
//! Signing keys rotate (`candor keys rotate-signing`): a [`KeyRing`] lists every key
//! with the first sequence number it signs, each after the first certified by its
//! predecessor's signature, so someone who can write the database but holds no
//! signing key cannot slip a key of their own into the ring.

use crate::consent::{Channel, ConsentStatus};
use crate::ids::{PurposeId, SourceId, SubjectId};
use crate::time::UnixMillis;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

pub const GENESIS: [u8; 32] = [0u8; 32];
const DOMAIN_V1: &[u8] = b"candor-ledger-v1\0";
const DOMAIN_V2: &[u8] = b"candor-ledger-v2\0";
const ROTATION_DOMAIN: &[u8] = b"candor-key-rotation-v1\0";

/// The purpose an erasure record is filed under. It is a marker, not a configured
/// purpose: the record's status ([`ConsentStatus::Erased`]) is what says "erased", so an
/// operator's purpose that happened to share the name could not be confused with it.
pub const ERASURE_PURPOSE: &str = "erasure";

/// The purpose a mailing list's records are filed under (issue 16): `given` when a
/// person confirms a subscription (double opt-in), `withdrawn` when they leave it, with
/// the list in the evidence (`list`). A marker like [`ERASURE_PURPOSE`]: it is never a
/// purpose's state, so leaving one list leaves the purpose (and every other list) as
/// it was. Configuration refuses a purpose of this name.
pub const LIST_PURPOSE: &str = "email_list";

/// Which credential made a consent change (format 2 on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A write key, by its source id (browser or server).
    Source(SourceId),
    /// A subject token (the person, through the operator's login).
    SubjectToken,
    /// The operator's admin token.
    Admin,
    /// `candor import consents`.
    Import,
    /// The person, through a link mailed to their address (a double opt-in
    /// confirmation, an unsubscribe link): holding the mailbox is the credential.
    EmailLink,
    /// Candor itself, applying a retention rule: the address of a request to join a
    /// list that expired unconfirmed, forgotten with the subject made for it.
    Retention,
}

impl Actor {
    /// The stable text form, as stored and as it enters the signed bytes:
    /// `source:<id>`, `subject-token`, `admin` or `import`.
    pub fn to_text(&self) -> String {
        match self {
            Actor::Source(s) => format!("source:{s}"),
            Actor::SubjectToken => "subject-token".into(),
            Actor::Admin => "admin".into(),
            Actor::Import => "import".into(),
            Actor::EmailLink => "email-link".into(),
            Actor::Retention => "retention".into(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "subject-token" => Some(Actor::SubjectToken),
            "admin" => Some(Actor::Admin),
            "import" => Some(Actor::Import),
            "email-link" => Some(Actor::EmailLink),
            "retention" => Some(Actor::Retention),
            _ => s
                .strip_prefix("source:")
                .and_then(|id| SourceId::parse(id).ok())
                .map(Actor::Source),
        }
    }
}

/// A signing key's short id: the first 8 bytes of its public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key.as_bytes()[..8]);
        Self(b)
    }

    pub fn parse_hex(s: &str) -> Option<Self> {
        let mut b = [0u8; 8];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(Self(b))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Who acted and which key signs: present from format 2 on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    pub actor: Actor,
    pub key_id: KeyId,
}

/// Non-personal facts about how a choice was captured (prompt id, variant, layer, the
/// CMP it came from), kept in the ledger, which outlives erasure. Sorted, so its
/// canonical form is unique.
///
/// What a client or an import file may supply is checked in one place,
/// [`Evidence::parse`], against a documented allow-list ([`Evidence::ALLOWED_KEYS`]):
/// at most [`Evidence::MAX_ENTRIES`] entries, each value 1 to [`Evidence::MAX_VALUE`]
/// bytes of letters, digits and `.`, `_`, `-`, `:`. Personal data cannot pass: no `@`
/// (an email address), no space (a name), no free text, and keys outside the list are
/// refused rather than stored. Candor adds a few entries of its own on top
/// ([`Evidence::with`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence(BTreeMap<String, String>);

/// Why supplied evidence was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvidenceError {
    #[error("evidence has at most {} entries", Evidence::MAX_ENTRIES)]
    TooMany,
    #[error("evidence key {0:?} is not one of {keys}", keys = Evidence::ALLOWED_KEYS.join(", "))]
    UnknownKey(String),
    #[error("evidence {0:?} must be 1 to {max} letters, digits, '.', '_', '-' or ':' (evidence outlives erasure, so it may not hold personal data)", max = Evidence::MAX_VALUE)]
    BadValue(String),
}

impl Evidence {
    pub const MAX_ENTRIES: usize = 8;
    pub const MAX_VALUE: usize = 64;
    /// The evidence a client may supply: `prompt` (the prompt's id or version),
    /// `variant` and `layer` (which design and which of its layers the choice was made
    /// on), `cmp` and `cmpId` (the consent manager an import came from), `locale`,
    /// `form` and `campaign` (the operator's ids of the page form or email campaign),
    /// `confirmation` (the id of a double opt-in confirmation message).
    pub const ALLOWED_KEYS: &'static [&'static str] = &[
        "campaign",
        "cmp",
        "cmpId",
        "confirmation",
        "form",
        "layer",
        "locale",
        "prompt",
        "variant",
    ];

    /// Evidence as supplied by a client or a file, checked against the allow-list.
    pub fn parse(entries: BTreeMap<String, String>) -> Result<Self, EvidenceError> {
        if entries.len() > Self::MAX_ENTRIES {
            return Err(EvidenceError::TooMany);
        }
        for (k, v) in &entries {
            if !Self::ALLOWED_KEYS.contains(&k.as_str()) {
                return Err(EvidenceError::UnknownKey(k.chars().take(64).collect()));
            }
            let token = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
            if v.is_empty() || v.len() > Self::MAX_VALUE || !v.chars().all(token) {
                return Err(EvidenceError::BadValue(k.clone()));
            }
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
    /// Who acted and which key signs (format 2); `None` for format-1 records.
    pub attribution: Option<Attribution>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

impl LedgerEntry {
    /// The record of `subject`'s erasure, chained after `prev`: pseudonymous (the
    /// subject id, who asked, the channel and the time; no identifier, no evidence).
    pub fn erasure(
        seq: u64,
        prev_hash: [u8; 32],
        subject: SubjectId,
        channel: Channel,
        time_ms: UnixMillis,
        attribution: Attribution,
    ) -> Self {
        Self {
            seq,
            subject,
            purpose: PurposeId::parse(ERASURE_PURPOSE).unwrap_or_else(|_| unreachable!()),
            status: ConsentStatus::Erased,
            notice_version: 0,
            notice_hash: [0; 32],
            channel,
            time_ms,
            evidence: Evidence::default(),
            prev_hash,
            attribution: Some(attribution),
        }
    }

    /// Whether this record is a subject's erasure.
    pub fn is_erasure(&self) -> bool {
        self.status == ConsentStatus::Erased
    }

    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        out.extend_from_slice(match self.attribution {
            None => DOMAIN_V1,
            Some(_) => DOMAIN_V2,
        });
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
        if let Some(a) = &self.attribution {
            put_bytes(&mut out, a.actor.to_text().as_bytes());
            out.extend_from_slice(&a.key_id.0);
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
    /// True when the content hashes to the stored hash and the signature is that of the
    /// key the ring says was current for the record's sequence number (and, from format
    /// 2 on, the key the record names). Strict Ed25519 verification: no malleable or
    /// small-order signatures.
    pub fn is_authentic(&self, ring: &KeyRing) -> bool {
        let Some(key) = ring.key_for(self.entry.seq) else {
            return false;
        };
        let names_it = self
            .entry
            .attribution
            .as_ref()
            .is_none_or(|a| a.key_id == KeyId::of(key));
        names_it
            && self.entry.hash() == self.hash
            && key
                .verify_strict(&self.hash, &Signature::from_bytes(&self.signature))
                .is_ok()
    }
}

/// One signing key of the ring: it signs records from `from_seq` until the next key's
/// `from_seq`. Every key after the first carries its predecessor's signature over
/// [`rotation_message`] (`certificate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingKey {
    pub key: VerifyingKey,
    pub from_seq: u64,
    pub certificate: Option<[u8; 64]>,
}

/// What a signing key signs to hand over to its successor from `from_seq` on.
pub fn rotation_message(next: &VerifyingKey, from_seq: u64) -> Vec<u8> {
    let mut m = ROTATION_DOMAIN.to_vec();
    m.extend_from_slice(next.as_bytes());
    m.extend_from_slice(&from_seq.to_be_bytes());
    m
}

/// Why a key ring is not to be trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingFault {
    #[error("the key ring is empty")]
    Empty,
    #[error("key {key} is not certified by the key before it")]
    Uncertified { key: KeyId },
    #[error("the keys' starting records are not in order at key {key}")]
    Disordered { key: KeyId },
    #[error("the ring ends with key {last}, not the current signing key {current}")]
    NotCurrent { last: KeyId, current: KeyId },
}

/// Every signing key the ledger has used, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl KeyRing {
    /// A ring of one key that signs everything.
    pub fn single(key: VerifyingKey) -> Self {
        Self {
            keys: vec![RingKey {
                key,
                from_seq: 1,
                certificate: None,
            }],
        }
    }

    /// A ring as recorded; check it with [`KeyRing::check`] before trusting it.
    pub fn new(keys: Vec<RingKey>) -> Self {
        Self { keys }
    }

    pub fn keys(&self) -> &[RingKey] {
        &self.keys
    }

    /// The key current for record `seq`.
    pub fn key_for(&self, seq: u64) -> Option<&VerifyingKey> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.from_seq <= seq)
            .map(|k| &k.key)
    }

    /// Checks the ring: each key after the first is certified by its predecessor, the
    /// starting records increase, and the last key is `current` (the key the verifier
    /// holds or was given), which is what anchors every older key.
    pub fn check(&self, current: &VerifyingKey) -> Result<(), RingFault> {
        let last = self.keys.last().ok_or(RingFault::Empty)?;
        for w in self.keys.windows(2) {
            let (prev, next) = (&w[0], &w[1]);
            if next.from_seq <= prev.from_seq {
                return Err(RingFault::Disordered {
                    key: KeyId::of(&next.key),
                });
            }
            let certified = next.certificate.is_some_and(|c| {
                prev.key
                    .verify_strict(
                        &rotation_message(&next.key, next.from_seq),
                        &Signature::from_bytes(&c),
                    )
                    .is_ok()
            });
            if !certified {
                return Err(RingFault::Uncertified {
                    key: KeyId::of(&next.key),
                });
            }
        }
        if &last.key != current {
            return Err(RingFault::NotCurrent {
                last: KeyId::of(&last.key),
                current: KeyId::of(current),
            });
        }
        Ok(())
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

const CHECKPOINT_DOMAIN: &[u8] = b"candor-checkpoint-v1\0";

/// A signed statement of the ledger's head (issue 11, part 5): "at `time_ms` the ledger
/// had `seq` records and the last one hashed to `head`". Kept outside the database (by
/// the operator, an auditor, a transparency log), it anchors the ledger: someone who can
/// write the database but not sign cannot truncate or rewrite what a checkpoint covers
/// without the next `ledger verify --checkpoint` saying so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub head: [u8; 32],
    pub time_ms: UnixMillis,
    /// The key that signs it.
    pub key_id: KeyId,
}

impl Checkpoint {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = CHECKPOINT_DOMAIN.to_vec();
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.time_ms.0.to_be_bytes());
        out.extend_from_slice(&self.key_id.0);
        out
    }

    pub fn sign(self, key: &SigningKey) -> SignedCheckpoint {
        let signature = key.sign(&self.canonical_bytes()).to_bytes();
        SignedCheckpoint {
            checkpoint: self,
            signature,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signature: [u8; 64],
}

/// Why a ledger does not extend a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointFault {
    #[error("the checkpoint's signature does not verify under the key ring's key {key}")]
    BadSignature { key: KeyId },
    #[error(
        "the ledger was truncated: it has {have} records, the checkpoint of {time} ms says {seq}"
    )]
    Truncated { have: u64, seq: u64, time: i64 },
    #[error("the ledger was rewritten: record {seq} is not the one the checkpoint covers")]
    Rewritten { seq: u64 },
}

impl SignedCheckpoint {
    /// Checks the signature under the ring's key with the checkpoint's key id.
    pub fn verify(&self, ring: &KeyRing) -> Result<(), CheckpointFault> {
        let c = &self.checkpoint;
        let key = ring
            .keys()
            .iter()
            .map(|k| &k.key)
            .find(|k| KeyId::of(k) == c.key_id)
            .ok_or(CheckpointFault::BadSignature { key: c.key_id })?;
        key.verify_strict(
            &c.canonical_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| CheckpointFault::BadSignature { key: c.key_id })
    }

    /// Whether `records` (the whole ledger in order, already verified as a chain)
    /// still contain the checkpoint's head at its place.
    pub fn extended_by(&self, records: &[SealedEntry]) -> Result<(), CheckpointFault> {
        let c = &self.checkpoint;
        if c.seq == 0 {
            return Ok(());
        }
        let have = records.last().map_or(0, |r| r.entry.seq);
        match records.iter().find(|r| r.entry.seq == c.seq) {
            Some(r) if r.hash == c.head => Ok(()),
            Some(_) => Err(CheckpointFault::Rewritten { seq: c.seq }),
            None if have < c.seq => Err(CheckpointFault::Truncated {
                have,
                seq: c.seq,
                time: c.time_ms.0,
            }),
            None => Err(CheckpointFault::Rewritten { seq: c.seq }),
        }
    }
}

/// Verifies records in the order the store holds them (ascending stored `seq`).
/// Returns the number of records checked, or the first fault found.
pub fn verify_chain(
    records: &[SealedEntry],
    head: Option<Head>,
    ring: &KeyRing,
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
        let content_ok = r.is_authentic(ring);
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
                    attribution: None,
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
        assert_eq!(
            verify_chain(&c, head(&c), &KeyRing::single(k.verifying_key())),
            Ok(10)
        );
        assert_eq!(
            verify_chain(&[], None, &KeyRing::single(k.verifying_key())),
            Ok(0)
        );
    }

    #[test]
    fn an_erasure_record_chains_verifies_and_is_tamper_evident() {
        let k = key();
        let mut c = chain(3, &k);
        let last = c[2].clone();
        let erased = LedgerEntry::erasure(
            4,
            last.hash,
            SubjectId::from_bytes([2; 16]),
            Channel::Api,
            UnixMillis(1_700_000_000_100),
            Attribution {
                actor: Actor::Admin,
                key_id: KeyId::of(&k.verifying_key()),
            },
        );
        assert!(erased.is_erasure() && !c[0].entry.is_erasure());
        // Status byte 5, the marker purpose, and the actor inside the signed bytes.
        let bytes = erased.canonical_bytes();
        assert!(bytes.windows(7).any(|w| w == b"erasure"));
        assert!(bytes.windows(5).any(|w| w == b"admin"));
        c.push(erased.seal(&k));
        let ring = KeyRing::single(k.verifying_key());
        assert_eq!(verify_chain(&c, head(&c), &ring), Ok(4));
        // Changing who asked is found like any edit.
        let h = head(&c);
        if let Some(a) = c[3].entry.attribution.as_mut() {
            a.actor = Actor::Import;
        }
        assert_eq!(
            verify_chain(&c, h, &ring),
            Err(ChainFault::Edited { seq: 4 })
        );
    }

    #[test]
    fn finds_edit() {
        let k = key();
        let mut c = chain(10, &k);
        let h = head(&c);
        c[4].entry.status = ConsentStatus::Refused;
        assert_eq!(
            verify_chain(&c, h, &KeyRing::single(k.verifying_key())),
            Err(ChainFault::Edited { seq: 5 })
        );
        // Even with the hash recomputed, the signature gives it away.
        c[4].hash = c[4].entry.hash();
        let r = verify_chain(&c, h, &KeyRing::single(k.verifying_key()));
        assert!(matches!(r, Err(ChainFault::Edited { seq: 5 })), "{r:?}");
    }

    #[test]
    fn finds_drop() {
        let k = key();
        let mut c = chain(10, &k);
        let h = head(&c);
        c.remove(4);
        assert_eq!(
            verify_chain(&c, h, &KeyRing::single(k.verifying_key())),
            Err(ChainFault::Dropped { before_seq: 6 })
        );
        let mut t = chain(10, &k);
        t.pop();
        assert_eq!(
            verify_chain(&t, h, &KeyRing::single(k.verifying_key())),
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
        let r = verify_chain(&c, h, &KeyRing::single(k.verifying_key()));
        assert_eq!(r, Err(ChainFault::Inserted { seq: 5 }));
        // Appended after the head, with a valid link but forged signature.
        let mut c = chain(10, &k);
        let mut extra = chain(11, &SigningKey::from_bytes(&[1; 32])).pop().unwrap();
        extra.entry.prev_hash = c[9].hash;
        c.push(extra);
        assert_eq!(
            verify_chain(&c, h, &KeyRing::single(k.verifying_key())),
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
        let r = verify_chain(&c, h, &KeyRing::single(k.verifying_key()));
        assert!(matches!(r, Err(ChainFault::Reordered { seq: 5 })), "{r:?}");
    }

    #[test]
    fn finds_reorder() {
        let k = key();
        let mut c = chain(10, &k);
        let h = head(&c);
        c.swap(4, 5);
        let r = verify_chain(&c, h, &KeyRing::single(k.verifying_key()));
        assert!(matches!(r, Err(ChainFault::Reordered { seq: 6 })), "{r:?}");
    }

    #[test]
    fn format_2_names_the_actor_and_the_key_and_format_1_still_verifies() {
        let k = key();
        let ring = KeyRing::single(k.verifying_key());
        let mut c = chain(3, &k);
        // A format-2 record after format-1 ones.
        let v2 = LedgerEntry {
            seq: 4,
            attribution: Some(Attribution {
                actor: Actor::Source(SourceId::parse("web").unwrap()),
                key_id: KeyId::of(&k.verifying_key()),
            }),
            prev_hash: c[2].hash,
            ..c[2].entry.clone()
        };
        let v1_bytes = LedgerEntry {
            attribution: None,
            ..v2.clone()
        }
        .canonical_bytes();
        assert!(v2.canonical_bytes().starts_with(DOMAIN_V2));
        assert!(v1_bytes.starts_with(DOMAIN_V1));
        c.push(v2.clone().seal(&k));
        assert_eq!(verify_chain(&c, head(&c), &ring), Ok(4));
        // The actor is signed: changing it is an edit.
        let mut forged = c.clone();
        forged[3].entry.attribution.as_mut().unwrap().actor = Actor::Admin;
        assert_eq!(
            verify_chain(&forged, head(&c), &ring),
            Err(ChainFault::Edited { seq: 4 })
        );
        // A record naming another key than the one current for it is not authentic.
        let mut other = v2;
        other.attribution.as_mut().unwrap().key_id = KeyId([0; 8]);
        assert!(!other.seal(&k).is_authentic(&ring));
        for a in [
            Actor::Admin,
            Actor::Import,
            Actor::SubjectToken,
            Actor::Source(SourceId::parse("web").unwrap()),
            Actor::EmailLink,
            Actor::Retention,
        ] {
            assert_eq!(Actor::parse(&a.to_text()), Some(a));
        }
    }

    #[test]
    fn rotation_keeps_old_records_verifiable_and_the_ring_must_be_certified() {
        let k1 = key();
        let k2 = SigningKey::from_bytes(&[5; 32]);
        let mut c = chain(2, &k1);
        let cert = k1
            .sign(&rotation_message(&k2.verifying_key(), 3))
            .to_bytes();
        let ring = KeyRing::new(vec![
            RingKey {
                key: k1.verifying_key(),
                from_seq: 1,
                certificate: None,
            },
            RingKey {
                key: k2.verifying_key(),
                from_seq: 3,
                certificate: Some(cert),
            },
        ]);
        assert_eq!(ring.check(&k2.verifying_key()), Ok(()));
        let next = LedgerEntry {
            seq: 3,
            prev_hash: c[1].hash,
            attribution: Some(Attribution {
                actor: Actor::Admin,
                key_id: KeyId::of(&k2.verifying_key()),
            }),
            ..c[1].entry.clone()
        };
        c.push(next.clone().seal(&k2));
        assert_eq!(verify_chain(&c, head(&c), &ring), Ok(3));
        // Signed with the old key after the rotation: not authentic.
        let mut stale = c.clone();
        stale[2] = LedgerEntry {
            attribution: Some(Attribution {
                actor: Actor::Admin,
                key_id: KeyId::of(&k1.verifying_key()),
            }),
            ..next
        }
        .seal(&k1);
        assert!(verify_chain(&stale, head(&stale), &ring).is_err());
        // The ring must end at the current key, and a key slipped in without its
        // predecessor's certificate is refused.
        assert!(matches!(
            ring.check(&k1.verifying_key()),
            Err(RingFault::NotCurrent { .. })
        ));
        let mallory = SigningKey::from_bytes(&[6; 32]);
        let mut keys = ring.keys().to_vec();
        keys.push(RingKey {
            key: mallory.verifying_key(),
            from_seq: 4,
            certificate: Some(mallory.sign(b"anything").to_bytes()),
        });
        assert!(matches!(
            KeyRing::new(keys).check(&mallory.verifying_key()),
            Err(RingFault::Uncertified { .. })
        ));
    }

    #[test]
    fn checkpoints_find_truncation_and_rewrite() {
        let k = key();
        let ring = KeyRing::single(k.verifying_key());
        let c = chain(10, &k);
        let cp = Checkpoint {
            seq: 8,
            head: c[7].hash,
            time_ms: UnixMillis(5),
            key_id: KeyId::of(&k.verifying_key()),
        }
        .sign(&k);
        assert_eq!(cp.verify(&ring), Ok(()));
        assert_eq!(cp.extended_by(&c), Ok(()));
        // Truncated to a valid shorter chain: the chain alone cannot tell.
        let short = &c[..6];
        assert_eq!(verify_chain(short, head(short), &ring), Ok(6));
        assert!(matches!(
            cp.extended_by(short),
            Err(CheckpointFault::Truncated {
                have: 6,
                seq: 8,
                ..
            })
        ));
        // Another history (a restored backup that went on): same numbers, other records.
        let mut other = c.clone();
        other[7].entry.time_ms = UnixMillis(99);
        other[7] = other[7].entry.clone().seal(&k);
        assert_eq!(
            cp.extended_by(&other),
            Err(CheckpointFault::Rewritten { seq: 8 })
        );
        // A forged or altered checkpoint.
        let mut bad = cp.clone();
        bad.checkpoint.seq = 9;
        assert!(bad.verify(&ring).is_err());
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
    fn evidence_is_an_allow_list_of_short_tokens() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(Evidence::parse(one("prompt", "banner-v2")).is_ok());
        assert!(Evidence::parse(one("cmpId", "999")).is_ok());
        assert!(Evidence::parse(one("locale", &"x".repeat(64))).is_ok());
        assert!(matches!(
            Evidence::parse(one("email", "a")),
            Err(EvidenceError::UnknownKey(_))
        ));
        // Personal data does not fit a token.
        for v in [
            "ann@example.com",
            "Ann Smith",
            "",
            &"x".repeat(65),
            "<script>",
        ] {
            assert!(
                matches!(
                    Evidence::parse(one("form", v)),
                    Err(EvidenceError::BadValue(_))
                ),
                "{v}"
            );
        }
        let many: BTreeMap<String, String> = Evidence::ALLOWED_KEYS
            .iter()
            .map(|k| ((*k).to_owned(), "x".to_owned()))
            .collect();
        assert_eq!(Evidence::parse(many), Err(EvidenceError::TooMany));
    }
}
