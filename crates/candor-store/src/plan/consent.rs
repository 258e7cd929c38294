//! One consent command, decided: the ledger records it appends, the subject's granted
//! set afterwards, the purpose floors it sets and whether the insights purpose flipped.
//!
//! Both backends read the subject's current `consent_state` rows and the ledger head,
//! call [`plan`], and write what it returns: each record into the ledger and as the
//! purpose's new `consent_state`, each floor, and (on a flip) the deletion of the
//! subject's insight features. Nothing here touches storage, so a refused withdrawal
//! (`NotGiven`) is refused before anything is written.

use crate::types::{ConsentCommand, PurposeChange, StateRow};
use crate::StoreError;
use candor_core::consent::{self, ConsentStatus, Current};
use candor_core::ledger::{Attribution, Head, KeyId, LedgerEntry, SealedEntry};
use candor_core::receipt::ReceiptSigner;
use candor_core::{PurposeId, PurposeSet, SubjectId};
use std::collections::HashMap;

/// A subject's consent as stored: status per purpose and the version (highest ledger
/// `seq` among its rows), which orders cache updates across nodes.
#[derive(Clone, Debug, Default)]
pub struct SubjectConsent {
    pub current: HashMap<String, Current>,
    pub version: u64,
}

impl SubjectConsent {
    /// From the subject's `consent_state` rows.
    pub fn from_rows(rows: impl IntoIterator<Item = StateRow>) -> Self {
        let mut out = Self::default();
        for r in rows {
            out.version = out.version.max(r.seq);
            out.current.insert(
                r.purpose.as_str().to_owned(),
                Current {
                    status: r.status,
                    notice_version: r.notice_version,
                },
            );
        }
        out
    }

    /// The purposes this state grants, as bits. A purpose that is no longer configured
    /// grants nothing (fail closed).
    pub fn granted(&self, bits: &HashMap<PurposeId, u8>) -> PurposeSet {
        granted_of(
            self.current
                .iter()
                .filter(|(_, c)| c.status.grants())
                .map(|(p, _)| p.as_str()),
            bits,
        )
    }
}

/// The granted set of purposes named as given (unconfigured names grant nothing).
pub fn granted_of<'a>(
    given: impl IntoIterator<Item = &'a str>,
    bits: &HashMap<PurposeId, u8>,
) -> PurposeSet {
    let mut set = PurposeSet::EMPTY;
    for p in given {
        if let Some(bit) = PurposeId::parse(p).ok().and_then(|p| bits.get(&p)) {
            set.insert(*bit);
        }
    }
    set
}

/// What applying one command does.
#[derive(Clone, Debug)]
pub struct ConsentPlan {
    /// Ledger records to append, in order. Each is also its purpose's new
    /// `consent_state` (status, notice version, seq, time).
    pub records: Vec<SealedEntry>,
    /// Granted purposes before and after.
    pub before: PurposeSet,
    pub granted: PurposeSet,
    /// Bits that were granted and no longer are: each gets a purpose floor, so the
    /// subject's stored events stop carrying it at once.
    pub floors: Vec<u8>,
    /// `Some(granted now)` when the insights purpose moved either way: the subject's
    /// insight features are deleted in the same transaction. A grant clears them too, so
    /// rows left from a time insights were not configured never come back.
    pub insights_flip: Option<bool>,
    /// The ledger head after the records.
    pub head: Head,
    /// The subject's consent version after the change.
    pub version: u64,
}

/// Decides `cmd` for `subject`, whose stored consent is `state`, with the ledger at
/// `head`. `NotGiven` when a withdrawal names a purpose not currently given (the whole
/// command is then refused).
pub fn plan(
    cmd: &ConsentCommand,
    subject: SubjectId,
    state: &SubjectConsent,
    bits: &HashMap<PurposeId, u8>,
    head: Head,
    signer: &ReceiptSigner,
    insights_bit: Option<u8>,
) -> Result<ConsentPlan, StoreError> {
    let mut current = state.current.clone();
    let before = state.granted(bits);
    let mut granted = before;
    let mut head = head;
    let mut records = Vec::new();
    let mut floors = Vec::new();
    let mut version = state.version;
    for ch in &cmd.changes {
        let cur = current.get(ch.purpose.as_str()).copied();
        let next = consent::transition(cur, ch.action, ch.notice_version).map_err(|_| {
            StoreError::NotGiven {
                purpose: ch.purpose.to_string(),
            }
        })?;
        let Some(status) = next else { continue };
        let sealed = entry(cmd, head, subject, ch, status, signer).seal(signer.signing_key());
        head = Head {
            seq: sealed.entry.seq,
            hash: sealed.hash,
        };
        version = version.max(sealed.entry.seq);
        current.insert(
            ch.purpose.as_str().to_owned(),
            Current {
                status,
                notice_version: ch.notice_version,
            },
        );
        if status.grants() {
            granted.insert(ch.bit);
        } else if granted.contains(ch.bit) {
            granted.remove(ch.bit);
            if !floors.contains(&ch.bit) {
                floors.push(ch.bit);
            }
        }
        records.push(sealed);
    }
    let insights_flip = insights_bit
        .filter(|b| before.contains(*b) != granted.contains(*b))
        .map(|b| granted.contains(b));
    Ok(ConsentPlan {
        records,
        before,
        granted,
        floors,
        insights_flip,
        head,
        version,
    })
}

/// The ledger entry recording `status` for one change of `cmd`, chained after `head`.
fn entry(
    cmd: &ConsentCommand,
    head: Head,
    subject: SubjectId,
    change: &PurposeChange,
    status: ConsentStatus,
    signer: &ReceiptSigner,
) -> LedgerEntry {
    LedgerEntry {
        seq: head.seq + 1,
        subject,
        purpose: change.purpose.clone(),
        status,
        notice_version: change.notice_version,
        notice_hash: change.notice_hash,
        channel: cmd.channel,
        time_ms: cmd.time_ms,
        evidence: cmd.evidence.clone(),
        prev_hash: head.hash,
        // Format 2: who acted, and the key that signs (issue 11).
        attribution: Some(Attribution {
            actor: cmd.actor.clone(),
            key_id: KeyId::of(&signer.verifying_key()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::consent::{Action, Channel};
    use candor_core::ledger::{Evidence, GENESIS};

    fn bits() -> HashMap<PurposeId, u8> {
        HashMap::from([
            (PurposeId::parse("analytics").unwrap(), 0),
            (PurposeId::parse("insights").unwrap(), 1),
        ])
    }

    fn cmd(changes: &[(&str, Action)]) -> ConsentCommand {
        ConsentCommand {
            identities: vec![],
            authority: crate::types::Authority::Any,
            actor: candor_core::ledger::Actor::Admin,
            create: true,
            changes: changes
                .iter()
                .map(|(p, a)| PurposeChange {
                    purpose: PurposeId::parse(p).unwrap(),
                    bit: bits()[&PurposeId::parse(p).unwrap()],
                    action: *a,
                    notice_version: 1,
                    notice_hash: [7; 32],
                })
                .collect(),
            channel: Channel::Api,
            evidence: Evidence::default(),
            time_ms: candor_core::UnixMillis(1000),
            list: None,
        }
    }

    fn state(given: &[&str], version: u64) -> SubjectConsent {
        SubjectConsent {
            current: given
                .iter()
                .map(|p| {
                    (
                        (*p).to_owned(),
                        Current {
                            status: ConsentStatus::Given,
                            notice_version: 1,
                        },
                    )
                })
                .collect(),
            version,
        }
    }

    const GEN: Head = Head {
        seq: 0,
        hash: GENESIS,
    };

    #[test]
    fn a_withdrawal_floors_and_flips_insights_and_chains_records() {
        let signer = ReceiptSigner::from_bytes(&[1; 32]);
        let s = SubjectId::random();
        let p = plan(
            &cmd(&[
                ("analytics", Action::Withdraw),
                ("insights", Action::Withdraw),
            ]),
            s,
            &state(&["analytics", "insights"], 4),
            &bits(),
            Head {
                seq: 9,
                hash: [3; 32],
            },
            &signer,
            Some(1),
        )
        .unwrap();
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.records[0].entry.seq, 10);
        assert_eq!(p.records[0].entry.prev_hash, [3; 32]);
        assert_eq!(p.records[1].entry.prev_hash, p.records[0].hash);
        assert_eq!(p.head.seq, 11);
        assert_eq!(p.version, 11);
        assert_eq!(p.floors, vec![0, 1]);
        assert_eq!(p.insights_flip, Some(false));
        assert!(p.granted.is_empty());
        assert_eq!(p.before.bits(), 0b11);
    }

    #[test]
    fn a_grant_flips_insights_and_floors_nothing() {
        let signer = ReceiptSigner::from_bytes(&[1; 32]);
        let p = plan(
            &cmd(&[("insights", Action::Grant), ("analytics", Action::Grant)]),
            SubjectId::random(),
            &state(&["analytics"], 2),
            &bits(),
            GEN,
            &signer,
            Some(1),
        )
        .unwrap();
        // analytics was already given: one record only.
        assert_eq!(p.records.len(), 1);
        assert!(p.floors.is_empty());
        assert_eq!(p.insights_flip, Some(true));
        assert_eq!(p.granted.bits(), 0b11);
        // Without insights configured nothing flips.
        let p = plan(
            &cmd(&[("insights", Action::Grant)]),
            SubjectId::random(),
            &state(&[], 0),
            &bits(),
            GEN,
            &signer,
            None,
        )
        .unwrap();
        assert_eq!(p.insights_flip, None);
    }

    #[test]
    fn withdrawing_what_was_not_given_refuses_the_whole_command() {
        let signer = ReceiptSigner::from_bytes(&[1; 32]);
        let err = plan(
            &cmd(&[("analytics", Action::Grant), ("insights", Action::Withdraw)]),
            SubjectId::random(),
            &state(&[], 0),
            &bits(),
            GEN,
            &signer,
            Some(1),
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::NotGiven { purpose } if purpose == "insights"));
    }

    #[test]
    fn refusing_from_undecided_records_but_floors_nothing() {
        let signer = ReceiptSigner::from_bytes(&[1; 32]);
        let p = plan(
            &cmd(&[("analytics", Action::Refuse)]),
            SubjectId::random(),
            &state(&[], 0),
            &bits(),
            GEN,
            &signer,
            Some(1),
        )
        .unwrap();
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.records[0].entry.status, ConsentStatus::Refused);
        assert!(p.floors.is_empty());
        assert_eq!(p.insights_flip, None);
    }
}
