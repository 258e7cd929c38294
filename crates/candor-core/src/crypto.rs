//! Per-subject encryption, so that erasure is real (invariant 6).
//!
//! Every identifier and personal field is sealed with XChaCha20-Poly1305 under a data
//! key that belongs to one subject. Data keys are stored only wrapped by a key derived
//! from the operator's master key, which lives outside the database (data directory
//! file or environment). Erasing a subject deletes its wrapped key: every ciphertext of
//! theirs, in the database, its WAL and its backups, becomes noise.
//!
//! Identifiers are found again through a keyed hash (HMAC-SHA256 under another derived
//! key), so the database holds no plaintext id even in its indexes, and nobody without
//! the master key can test a guessed email against it.
//!
//! XChaCha20's 192-bit nonces are drawn at random for every seal; at that size random
//! nonces do not collide in any realistic lifetime (unlike AES-GCM's 96 bits). They come
//! from `rand`'s thread-local CSPRNG (ChaCha12, reseeded from the OS), which avoids a
//! system call per event on the ingestion path; keys still come straight from the OS.

use crate::ids::SubjectId;
use crate::sensitive::Sensitive;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

const NONCE: usize = 24;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("master key must be 32 bytes, given as 64 hex characters")]
    BadMasterKey,
    #[error("ciphertext failed authentication (wrong key, or tampered)")]
    Unauthentic,
}

fn derive(master: &[u8; 32], label: &[u8]) -> [u8; 32] {
    // HMAC as a PRF is a standard KDF for a uniformly random input key (HKDF-Expand
    // with a single block is exactly this).
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(label);
    mac.update(&[1]);
    mac.finalize().into_bytes().into()
}

/// The operator's root secret. Never stored in the database.
#[derive(Clone)]
pub struct MasterKey {
    lookup: Sensitive<[u8; 32]>,
    wrap: Sensitive<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(**redacted**)")
    }
}

impl MasterKey {
    pub fn generate() -> [u8; 32] {
        let mut b = [0u8; 32];
        OsRng.fill_bytes(&mut b);
        b
    }

    pub fn from_bytes(master: &[u8; 32]) -> Self {
        Self {
            lookup: Sensitive::new(derive(master, b"candor lookup hash")),
            wrap: Sensitive::new(derive(master, b"candor key wrap")),
        }
    }

    pub fn from_hex(s: &str) -> Result<Self, CryptoError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self::from_bytes(&b))
    }

    /// Keyed hash of an identifier, used to find a subject without storing the id.
    pub fn lookup_hash(&self, kind: IdKind, value: &str) -> LookupHash {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(self.lookup.expose()).expect("any key length");
        mac.update(&[kind.code()]);
        mac.update(value.as_bytes());
        LookupHash(mac.finalize().into_bytes().into())
    }

    /// A check value the database records at first start, so a node that opens it with
    /// another (or a freshly generated) master key is refused instead of silently
    /// writing data nobody can read back. One-way: it reveals nothing of the key.
    pub fn check_value(&self) -> [u8; 32] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(self.lookup.expose()).expect("any key length");
        mac.update(b"candor master key check v1");
        mac.finalize().into_bytes().into()
    }

    /// A MAC key for one named use (e.g. signing a person's sign-in links and
    /// sessions): derived, so every node holding the master key agrees on it, nothing
    /// new is stored, and it reveals nothing of the master key or of other uses' keys.
    pub fn derive_key(&self, label: &str) -> Sensitive<[u8; 32]> {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(self.lookup.expose()).expect("any key length");
        mac.update(b"candor derived key v1\0");
        mac.update(label.as_bytes());
        Sensitive::new(mac.finalize().into_bytes().into())
    }

    /// Keyed 128-bit digest for de-duplication keys (message ids).
    pub fn dedup_key(&self, scope: &str, value: &str) -> [u8; 16] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(self.lookup.expose()).expect("any key length");
        mac.update(b"dedup\0");
        mac.update(&(scope.len() as u32).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(value.as_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// Wraps a subject's data key for storage; bound to the subject by the AEAD's
    /// associated data, so a wrapped key moved to another subject fails to open.
    pub fn wrap(&self, subject: &SubjectId, key: &SubjectKey) -> Vec<u8> {
        seal_raw(self.wrap.expose(), subject.as_bytes(), key.0.expose())
    }

    pub fn unwrap_key(
        &self,
        subject: &SubjectId,
        wrapped: &[u8],
    ) -> Result<SubjectKey, CryptoError> {
        let raw = open_raw(self.wrap.expose(), subject.as_bytes(), wrapped)?;
        let arr: [u8; 32] = raw.try_into().map_err(|_| CryptoError::Unauthentic)?;
        Ok(SubjectKey(Sensitive::new(arr)))
    }
}

/// The kinds of identifier that resolve to a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdKind {
    UserId,
    AnonymousId,
    Email,
    DeviceId,
}

impl IdKind {
    pub fn code(self) -> u8 {
        match self {
            IdKind::UserId => 1,
            IdKind::AnonymousId => 2,
            IdKind::Email => 3,
            IdKind::DeviceId => 4,
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        [
            IdKind::UserId,
            IdKind::AnonymousId,
            IdKind::Email,
            IdKind::DeviceId,
        ]
        .into_iter()
        .find(|k| k.code() == c)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::UserId => "userId",
            IdKind::AnonymousId => "anonymousId",
            IdKind::Email => "email",
            IdKind::DeviceId => "deviceId",
        }
    }
}

/// HMAC of an identifier: what the database indexes instead of the identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct LookupHash(pub [u8; 32]);

/// One subject's data key.
#[derive(Clone)]
pub struct SubjectKey(Sensitive<[u8; 32]>);

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(**redacted**)")
    }
}

impl SubjectKey {
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        OsRng.fill_bytes(&mut b);
        Self(Sensitive::new(b))
    }

    /// Seals personal bytes. `aad` binds the ciphertext to where it is stored.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_raw(self.0.expose(), aad, plaintext)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_raw(self.0.expose(), aad, sealed)
    }

    /// A keyed digest of personal bytes, for a record that outlives erasure (the ledger)
    /// and must still name them without holding them: while the subject exists, the
    /// sealed bytes can be shown to match it; once its key is destroyed, nobody can test
    /// a guess against it. `label` keeps digests of different things apart.
    pub fn digest(&self, label: &str, data: &[u8]) -> [u8; 32] {
        let mut sub = <HmacSha256 as Mac>::new_from_slice(self.0.expose())
            .expect("HMAC takes any key length");
        sub.update(b"candor/subject-digest/");
        sub.update(label.as_bytes());
        let derived = sub.finalize().into_bytes();
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&derived).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

fn seal_raw(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE];
    rand::thread_rng().fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    let mut out = Vec::with_capacity(NONCE + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open_raw(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE + 16 {
        return Err(CryptoError::Unauthentic);
    }
    let (nonce, ct) = sealed.split_at(NONCE);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| CryptoError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let k = SubjectKey::generate();
        let c = k.seal(b"row1", b"alice@example.com");
        assert!(!c.windows(5).any(|w| w == b"alice"));
        assert_eq!(k.open(b"row1", &c).unwrap(), b"alice@example.com");
        assert_eq!(k.open(b"row2", &c), Err(CryptoError::Unauthentic));
        assert_eq!(
            SubjectKey::generate().open(b"row1", &c),
            Err(CryptoError::Unauthentic)
        );
        assert_eq!(k.open(b"row1", &c[..10]), Err(CryptoError::Unauthentic));
    }

    #[test]
    fn wrap_is_bound_to_subject() {
        let m = MasterKey::from_bytes(&[3; 32]);
        let (a, b) = (SubjectId::random(), SubjectId::random());
        let k = SubjectKey::generate();
        let w = m.wrap(&a, &k);
        assert!(m.unwrap_key(&a, &w).is_ok());
        assert!(m.unwrap_key(&b, &w).is_err());
        assert!(MasterKey::from_bytes(&[4; 32]).unwrap_key(&a, &w).is_err());
    }

    #[test]
    fn lookup_hash_is_keyed_and_kind_separated() {
        let m = MasterKey::from_bytes(&[3; 32]);
        let n = MasterKey::from_bytes(&[4; 32]);
        assert_eq!(
            m.lookup_hash(IdKind::UserId, "u1"),
            m.lookup_hash(IdKind::UserId, "u1")
        );
        assert_ne!(
            m.lookup_hash(IdKind::UserId, "u1"),
            m.lookup_hash(IdKind::AnonymousId, "u1")
        );
        assert_ne!(
            m.lookup_hash(IdKind::UserId, "u1"),
            n.lookup_hash(IdKind::UserId, "u1")
        );
        assert!(MasterKey::from_hex("zz").is_err());
        assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
    }
}
