//! Sealing: the one place personal data is encrypted under a subject's key, and opened
//! again. Invariant 6 rests on it: an event's payload, its feature deltas and every
//! identifier are stored only sealed (XChaCha20-Poly1305 under the subject's own data
//! key), so destroying the key leaves nothing readable.
//!
//! Each kind of sealed value has its own associated data, so a sealed value cannot be
//! moved into another column or another subject's row and still open: payloads are bound
//! to their row's place (issue 11, part 8: subject, de-duplication key, kind, data
//! category and event time, so rows cannot be swapped or re-labelled in the database
//! without failing to open), feature log entries to the subject and their column,
//! identifiers to their lookup hash, volunteered field values to their subject, field
//! and provenance.
//!
//! Payloads sealed before that binding (associated data: the subject alone) still
//! open, through a fallback that only such rows can pass: a row sealed with the full
//! binding never opens under the subject alone. Those older rows keep the older,
//! weaker binding (they can be swapped among one subject's rows).
//!
//! Ingestion is a pipeline of stages (the server's HTTP source → gate → this → the
//! writer): [`row`] turns a gated [`IngestRow`], which holds the message in plain text,
//! into the [`SealedRow`] the writers take, so no writer can be handed plain text.

use crate::plan::features;
use crate::types::{FieldWrite, Identity, IngestRow, StoredField};
use crate::StoreError;
use candor_core::crypto::{CryptoError, IdKind, LookupHash, SubjectKey};
use candor_core::event::EventKind;
use candor_core::field::{FieldName, Provenance};
use candor_core::{CategoryId, PurposeSet, Sensitive, SubjectId, UnixMillis};
use candor_insights::FeatureDelta;

/// An identifier with its value sealed, ready to link (or as read back).
#[derive(Clone, Debug)]
pub struct SealedIdentity {
    pub kind: IdKind,
    pub hash: LookupHash,
    pub sealed: Vec<u8>,
}

/// An event as the writers take it: gated, every personal field sealed.
#[derive(Clone, Debug)]
pub(crate) struct SealedRow {
    pub subject: SubjectId,
    pub link: Vec<SealedIdentity>,
    pub source: String,
    pub dedup_key: [u8; 16],
    pub kind: EventKind,
    pub category: CategoryId,
    pub purposes: PurposeSet,
    pub event_ms: UnixMillis,
    pub received_ms: UnixMillis,
    pub payload: Vec<u8>,
    /// The feature log entry (sealed deltas), when the row has deltas and the gate
    /// allowed it for the insights purpose.
    pub features: Option<Vec<u8>>,
    /// The same deltas in the clear, for a writer that applies what it commits at once
    /// (SQLite's); never written.
    pub deltas: Vec<FeatureDelta>,
}

/// Seals a gated row under its subject's key. `insights_bit` is the insights purpose's
/// bit when insights are on: deltas of a row the gate did not allow for it are dropped
/// here (they could never count).
pub(crate) fn row(key: &SubjectKey, row: IngestRow, insights_bit: Option<u8>) -> SealedRow {
    let deltas = if features::feeds(insights_bit, row.purposes, !row.features.is_empty()) {
        row.features
    } else {
        Vec::new()
    };
    let subject = row.subject;
    let place = Place {
        subject,
        dedup_key: &row.dedup_key,
        kind: row.kind.as_str(),
        category: row.category.as_str(),
        event_ms: row.event_ms,
    };
    SealedRow {
        link: row.link.iter().map(|i| identity(key, i)).collect(),
        payload: key.seal(&payload_aad(&place), row.payload.expose()),
        features: (!deltas.is_empty())
            .then(|| key.seal(&features_aad(subject), &features::encode(&deltas))),
        deltas,
        subject,
        source: row.source,
        dedup_key: row.dedup_key,
        kind: row.kind,
        category: row.category,
        purposes: row.purposes,
        event_ms: row.event_ms,
        received_ms: row.received_ms,
    }
}

/// Seals an identifier's value, bound to its lookup hash.
pub(crate) fn identity(key: &SubjectKey, ident: &Identity) -> SealedIdentity {
    SealedIdentity {
        kind: ident.kind,
        hash: ident.hash,
        sealed: key.seal(&ident.hash.0, ident.value.expose().as_bytes()),
    }
}

/// Opens an identifier's value sealed by [`identity`] (the person's own view and
/// export): only under the lookup hash it was sealed for.
pub(crate) fn open_identity(
    key: &SubjectKey,
    hash: &LookupHash,
    sealed: &[u8],
) -> Result<Sensitive<String>, CryptoError> {
    let bytes = key.open(&hash.0, sealed)?;
    String::from_utf8(bytes)
        .map(Sensitive::new)
        .map_err(|_| CryptoError::Unauthentic)
}

/// Where a payload sits: what its associated data binds it to.
pub struct Place<'a> {
    pub subject: SubjectId,
    pub dedup_key: &'a [u8; 16],
    pub kind: &'a str,
    pub category: &'a str,
    pub event_ms: UnixMillis,
}

fn payload_aad(p: &Place<'_>) -> Vec<u8> {
    let mut aad = b"candor/payload/v2\0".to_vec();
    aad.extend_from_slice(p.subject.as_bytes());
    aad.extend_from_slice(p.dedup_key);
    for s in [p.kind, p.category] {
        aad.extend_from_slice(&(s.len() as u32).to_be_bytes());
        aad.extend_from_slice(s.as_bytes());
    }
    aad.extend_from_slice(&p.event_ms.0.to_be_bytes());
    aad
}

/// Opens a stored event's payload (export, and the person's own data). It opens only
/// in the row it was sealed for: moved to another row, or with the row's subject,
/// kind, category, time or key changed, it fails (`CryptoError::Unauthentic`).
pub fn open_payload(key: &SubjectKey, e: &crate::StoredEvent) -> Result<Vec<u8>, CryptoError> {
    let place = Place {
        subject: e.subject,
        dedup_key: &e.dedup_key,
        kind: &e.kind,
        category: &e.category,
        event_ms: e.event_ms,
    };
    key.open(&payload_aad(&place), &e.sealed_payload)
        // A row sealed before the full binding (see the module's note).
        .or_else(|_| key.open(e.subject.as_bytes(), &e.sealed_payload))
}

/// Opens a stored event's feature log entry.
pub(crate) fn open_features(
    key: &SubjectKey,
    subject: SubjectId,
    sealed: &[u8],
) -> Result<Vec<FeatureDelta>, StoreError> {
    let plain = key
        .open(&features_aad(subject), sealed)
        .map_err(|e| StoreError::Corrupt(format!("an event's feature log entry: {e}")))?;
    features::decode(&plain)
}

fn features_aad(subject: SubjectId) -> Vec<u8> {
    let mut aad = b"candor/features/".to_vec();
    aad.extend_from_slice(subject.as_bytes());
    aad
}

/// A volunteered field's value, sealed, as the writers take it.
#[derive(Clone, Debug)]
pub(crate) struct SealedField {
    pub subject: SubjectId,
    pub field: String,
    pub sealed: Vec<u8>,
    pub provenance: &'static str,
    pub time_ms: i64,
}

/// A volunteered field's row as stored, still sealed.
#[derive(Clone, Debug)]
pub struct FieldRow {
    pub field: String,
    pub sealed: Vec<u8>,
    pub provenance: String,
    pub updated_ms: i64,
}

/// Seals a field's value under its subject's key, bound to (subject, field, provenance):
/// moved to another subject or field, or relabelled with another provenance in the
/// database, it no longer opens.
pub(crate) fn field(key: &SubjectKey, w: &FieldWrite) -> SealedField {
    SealedField {
        subject: w.subject,
        field: w.field.as_str().to_owned(),
        sealed: key.seal(
            &field_aad(w.subject, w.field.as_str(), w.provenance),
            w.value.expose().as_bytes(),
        ),
        provenance: w.provenance.as_str(),
        time_ms: w.time_ms.0,
    }
}

/// Opens a stored field row.
pub(crate) fn open_field(
    key: &SubjectKey,
    subject: SubjectId,
    row: FieldRow,
) -> Result<StoredField, StoreError> {
    let corrupt = |m: String| StoreError::Corrupt(format!("a volunteered field: {m}"));
    let field = FieldName::parse(&row.field).map_err(|e| corrupt(e.to_string()))?;
    let provenance = Provenance::parse(&row.provenance)
        .ok_or_else(|| corrupt(format!("unknown provenance {:?}", row.provenance)))?;
    let plain = key
        .open(&field_aad(subject, &row.field, provenance), &row.sealed)
        .map_err(|e| corrupt(e.to_string()))?;
    let value = String::from_utf8(plain).map_err(|_| corrupt("not UTF-8".into()))?;
    Ok(StoredField {
        field,
        value: Sensitive::new(value),
        provenance,
        updated_ms: UnixMillis(row.updated_ms),
    })
}

fn field_aad(subject: SubjectId, field: &str, provenance: Provenance) -> Vec<u8> {
    let mut aad = b"candor/field/v1\0".to_vec();
    aad.extend_from_slice(subject.as_bytes());
    for s in [field, provenance.as_str()] {
        aad.extend_from_slice(&(s.len() as u32).to_be_bytes());
        aad.extend_from_slice(s.as_bytes());
    }
    aad
}

/// Where a confirmation's origin is bound: its subject and list.
fn origin_aad(subject: SubjectId, list: &str) -> Vec<u8> {
    let mut aad = b"email-origin\0".to_vec();
    aad.extend_from_slice(subject.as_bytes());
    aad.extend_from_slice(list.as_bytes());
    aad
}

/// A double opt-in confirmation's origin (IP address and user agent, issue 16): sealed
/// under the subject's key beside the subscription (erased with the person), and its
/// keyed digest, which the ledger record carries instead (the ledger outlives erasure;
/// once the key is gone nobody can test a guess against the digest).
pub(crate) fn origin(
    key: &SubjectKey,
    subject: SubjectId,
    list: &str,
    origin: &[u8],
) -> (Vec<u8>, String) {
    let sealed = key.seal(&origin_aad(subject, list), origin);
    let digest = key.digest("email-origin", origin);
    (sealed, hex::encode(&digest[..16]))
}

/// Opens what [`origin`] sealed (the person's own view and export).
pub fn open_origin(
    key: &SubjectKey,
    subject: SubjectId,
    list: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    key.open(&origin_aad(subject, list), sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::crypto::MasterKey;
    use candor_core::Sensitive;
    use candor_insights::{Category, DailyFeature, Day, FeatureKind};

    fn gated(subject: SubjectId, purposes: PurposeSet) -> IngestRow {
        let master = MasterKey::from_bytes(&[1; 32]);
        IngestRow {
            subject,
            link: vec![Identity {
                kind: IdKind::Email,
                hash: master.lookup_hash(IdKind::Email, "ann@example.com"),
                value: Sensitive::new("ann@example.com".into()),
            }],
            source: "web".into(),
            dedup_key: [3; 16],
            kind: EventKind::Track,
            category: CategoryId::parse("app_usage").unwrap(),
            purposes,
            event_ms: UnixMillis(1),
            received_ms: UnixMillis(2),
            payload: Sensitive::new(br#"{"secret":"games"}"#.to_vec()),
            features: vec![FeatureDelta::Activity(DailyFeature {
                day: Day::from_days(20_000).unwrap(),
                kind: FeatureKind::AppUsed,
                category: Category::parse("games").unwrap(),
                count: 1,
            })],
        }
    }

    #[test]
    fn nothing_personal_leaves_in_the_clear_and_nothing_opens_elsewhere() {
        let key = SubjectKey::generate();
        let s = SubjectId::random();
        let sealed = row(&key, gated(s, PurposeSet::from_bits(0b11)), Some(1));
        let all = [
            &sealed.payload[..],
            sealed.features.as_deref().unwrap(),
            &sealed.link[0].sealed[..],
        ];
        for b in all {
            for needle in [&b"games"[..], b"secret", b"ann@"] {
                assert!(!b.windows(needle.len()).any(|w| w == needle));
            }
        }
        let stored = |r: &SealedRow| crate::StoredEvent {
            id: 1,
            subject: r.subject,
            source: r.source.clone(),
            kind: r.kind.as_str().to_owned(),
            category: r.category.as_str().to_owned(),
            purposes: r.purposes,
            event_ms: r.event_ms,
            received_ms: r.received_ms,
            dedup_key: r.dedup_key,
            sealed_payload: r.payload.clone(),
        };
        let e = stored(&sealed);
        assert_eq!(open_payload(&key, &e).unwrap(), br#"{"secret":"games"}"#);
        // Bound to its row: another kind, category, time or key, and it does not open.
        for changed in [
            crate::StoredEvent {
                kind: "page".into(),
                ..e.clone()
            },
            crate::StoredEvent {
                category: "contact".into(),
                ..e.clone()
            },
            crate::StoredEvent {
                event_ms: UnixMillis(2),
                ..e.clone()
            },
            crate::StoredEvent {
                dedup_key: [4; 16],
                ..e.clone()
            },
        ] {
            assert!(open_payload(&key, &changed).is_err());
        }
        assert_eq!(
            open_features(&key, s, sealed.features.as_deref().unwrap()).unwrap(),
            sealed.deltas
        );
        // Bound to their place: another subject, or the other column, does not open.
        let other = SubjectId::random();
        assert!(open_payload(
            &key,
            &crate::StoredEvent {
                subject: other,
                ..e.clone()
            }
        )
        .is_err());
        assert!(open_features(&key, other, sealed.features.as_deref().unwrap()).is_err());
        assert!(open_features(&key, s, &sealed.payload).is_err());
        assert!(open_payload(
            &key,
            &crate::StoredEvent {
                sealed_payload: sealed.features.clone().unwrap(),
                ..e
            }
        )
        .is_err());
    }

    #[test]
    fn deltas_the_gate_did_not_allow_for_insights_are_dropped() {
        let key = SubjectKey::generate();
        let s = SubjectId::random();
        let r = row(&key, gated(s, PurposeSet::single(0)), Some(1));
        assert!(r.features.is_none() && r.deltas.is_empty());
        let r = row(&key, gated(s, PurposeSet::single(1)), None);
        assert!(r.features.is_none() && r.deltas.is_empty());
    }

    #[test]
    fn a_field_opens_only_where_it_was_sealed() {
        let key = SubjectKey::generate();
        let s = SubjectId::random();
        let w = FieldWrite {
            subject: s,
            field: FieldName::parse("shoe_size").unwrap(),
            value: Sensitive::new("a-distinctive-size".into()),
            provenance: Provenance::Volunteered,
            time_ms: UnixMillis(5),
        };
        let sealed = field(&key, &w);
        assert!(!sealed.sealed.windows(11).any(|x| x == b"distinctive"));
        let row = |field: &str, provenance: &str| FieldRow {
            field: field.into(),
            sealed: sealed.sealed.clone(),
            provenance: provenance.into(),
            updated_ms: 5,
        };
        let opened = open_field(&key, s, row("shoe_size", "volunteered")).unwrap();
        assert_eq!(opened.value.expose(), "a-distinctive-size");
        assert_eq!(opened.provenance, Provenance::Volunteered);
        assert!(open_field(&key, s, row("birthday_month", "volunteered")).is_err());
        assert!(open_field(&key, s, row("shoe_size", "observed")).is_err());
        assert!(open_field(&key, SubjectId::random(), row("shoe_size", "volunteered")).is_err());
        assert!(open_field(&SubjectKey::generate(), s, row("shoe_size", "volunteered")).is_err());
    }
}
