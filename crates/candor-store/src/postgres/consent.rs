//! Consent changes on PostgreSQL: the same semantics as the SQLite writer's `consent()`
//! (resolve or create the subject, link identities, one state transition and one
//! ledger record per changed purpose, a purpose floor per withdrawal), in a group
//! transaction shared by every consent job queued on this node.
//!
//! **One chain across nodes.** The transaction's first statement locks the single
//! `ledger_head` row (`FOR UPDATE`); `seq` and `prev_hash` of every record are computed
//! from that locked head, and the head is rewritten before commit. A consent
//! transaction on another node blocks on the same row until this one commits, then
//! reads the new head. Consent changes are therefore serialized globally, which a
//! single hash chain requires anyway; group commit keeps that from costing a WAL flush
//! per change.
//!
//! **Withdrawals and ingestion.** A group that may withdraw (any `withdraw` or `refuse`
//! action) also takes the gate lock exclusively, right after the ledger lock and before
//! writing anything, so in-flight ingest transactions (which hold it shared) finish
//! first and later ones re-read consent after this commits. The floor's `upto_id` is
//! then every event id handed out so far (see `ingest`). Both locks are taken before
//! any row lock, so a withdrawal cannot deadlock with ingestion. (Two transactions
//! linking the same *new* identifiers in opposite orders can still deadlock, and so can a
//! withdrawal deleting feature rows a retention pass is deleting; PostgreSQL then aborts
//! one, nothing of it is applied, and the group runs again: `writer::retrying`.)
//!
//! **Insights.** A change that moves the insights purpose (either way) deletes the
//! subject's feature rows in the same transaction; a withdrawal does so under the
//! exclusive gate, so no ingest transaction can be writing features for it meanwhile.

use super::{cache, locks, sql, writer, Shared};
use crate::types::*;
use crate::StoreError;
use candor_core::consent::{self, Action, ConsentStatus, Current};
use candor_core::crypto::{LookupHash, SubjectKey};
use candor_core::idhash::{IdMap, IdSet};
use candor_core::ledger::{Head, SealedEntry};
use candor_core::{PurposeId, PurposeSet, SubjectId};
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use tokio::sync::oneshot;

pub(crate) struct Job {
    pub cmds: Vec<ConsentCommand>,
    pub reply: oneshot::Sender<Result<Vec<ConsentOutcome>, StoreError>>,
}

/// Cache changes staged by a job, published after commit.
#[derive(Default)]
pub(crate) struct Staged {
    pub ids: IdMap<LookupHash, SubjectId>,
    pub keys: IdMap<SubjectId, SubjectKey>,
    /// Granted set and its version (highest ledger seq) per subject.
    pub granted: IdMap<SubjectId, (PurposeSet, u64)>,
    /// Subjects other nodes must reload.
    pub changed: IdSet<SubjectId>,
    pub floored: bool,
}

impl Staged {
    fn absorb(&mut self, other: Staged) {
        self.ids.extend(other.ids);
        self.keys.extend(other.keys);
        self.granted.extend(other.granted);
        self.changed.extend(other.changed);
        self.floored |= other.floored;
    }

    /// Publishes to the caches. Call only after COMMIT returned.
    pub fn publish(self, shared: &Shared) {
        shared.ids.write().extend(self.ids);
        shared.keys.write().extend(self.keys);
        for (s, (g, v)) in self.granted {
            shared.publish_granted(s, g, v);
        }
        if self.floored {
            shared.sweep_wake.notify_one();
        }
    }
}

type Outcomes = Vec<Result<Vec<ConsentOutcome>, StoreError>>;

pub(crate) async fn commit_group(shared: &Shared, jobs: Vec<Job>) {
    let (cmds, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.cmds, j.reply)).unzip();
    match writer::retrying("consent", || run(shared, &cmds)).await {
        Ok((outcomes, staged)) => {
            // Durable now: publish to the caches, then answer.
            staged.publish(shared);
            for (reply, res) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(res);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "consent group commit failed");
            for reply in replies {
                let _ = reply.send(Err(writer::copy_err(&e)));
            }
        }
    }
}

async fn run(
    shared: &Shared,
    jobs: &[Vec<ConsentCommand>],
) -> Result<(Outcomes, Staged), StoreError> {
    let mut client = shared.pool.get().await?;
    let mut tx = client.transaction().await?;
    let row = sql::query_opt(
        &tx,
        "SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("the ledger_head row is missing".into()))?;
    let mut head = Head {
        seq: row.get::<_, i64>(0) as u64,
        hash: row
            .get::<_, &[u8]>(1)
            .try_into()
            .map_err(|_| StoreError::Corrupt("ledger head hash".into()))?,
    };
    let start = head;
    let may_withdraw = jobs
        .iter()
        .flatten()
        .flat_map(|c| &c.changes)
        .any(|ch| ch.action != Action::Grant);
    let mut gate = false;
    if may_withdraw {
        lock_gate(&tx).await?;
        gate = true;
    }
    let mut staged = Staged::default();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for cmds in jobs {
        let job_head = head;
        let mut job = Staged::default();
        let sp = tx.savepoint("job").await?;
        let mut res = Ok(Vec::with_capacity(cmds.len()));
        for c in cmds {
            let mut ctx = Ctx {
                shared,
                tx: &sp,
                group: &staged,
                job: &mut job,
                head: &mut head,
                gate: &mut gate,
            };
            match ctx.consent(c).await {
                Ok(o) => {
                    if let Ok(v) = res.as_mut() {
                        v.push(o);
                    }
                }
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        match res {
            Ok(outs) => {
                sp.commit().await?;
                staged.absorb(job);
                outcomes.push(Ok(outs));
            }
            // A deadlock victim is the whole group's business: its other jobs' locks
            // are part of the cycle too. Roll everything back and run it again.
            Err(e @ StoreError::Contention(_)) => return Err(e),
            Err(e) => {
                sp.rollback().await?;
                head = job_head;
                outcomes.push(Err(e));
            }
        }
    }
    if head != start {
        sql::execute(
            &tx,
            "UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1",
            &[&(head.seq as i64), &&head.hash[..]],
        )
        .await?;
    }
    let changed: Vec<SubjectId> = staged.changed.iter().copied().collect();
    super::listen::notify(&tx, &changed).await?;
    tx.commit().await?;
    Ok((outcomes, staged))
}

pub(crate) async fn lock_gate(tx: &Transaction<'_>) -> Result<(), StoreError> {
    sql::execute(
        tx,
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&locks::CLASS, &locks::GATE],
    )
    .await?;
    Ok(())
}

struct Ctx<'a, 't> {
    shared: &'a Shared,
    tx: &'a Transaction<'t>,
    group: &'a Staged,
    job: &'a mut Staged,
    head: &'a mut Head,
    gate: &'a mut bool,
}

impl Ctx<'_, '_> {
    /// The subject an identifier resolves to: staged, cached, or in the database (another
    /// node may have linked it moments ago, before its notification arrived here).
    async fn lookup(&mut self, h: &LookupHash) -> Result<Option<SubjectId>, StoreError> {
        let cached = self
            .job
            .ids
            .get(h)
            .or_else(|| self.group.ids.get(h))
            .copied()
            .or_else(|| self.shared.ids.read().get(h).copied());
        if cached.is_some() {
            return Ok(cached);
        }
        let row = sql::query_opt(
            self.tx,
            "SELECT subject_id FROM identity_lookup WHERE lookup_hash = $1",
            &[&&h.0[..]],
        )
        .await?;
        match row {
            Some(r) => {
                let s = cache::subject(r.get(0))?;
                self.job.ids.insert(*h, s);
                Ok(Some(s))
            }
            None => Ok(None),
        }
    }

    async fn key(&mut self, s: SubjectId) -> Result<SubjectKey, StoreError> {
        if let Some(k) = self.job.keys.get(&s).or_else(|| self.group.keys.get(&s)) {
            return Ok(k.clone());
        }
        if let Some(k) = self.shared.keys.read().get(&s) {
            return Ok(k.clone());
        }
        let k = super::read::subject_key(self.tx, &self.shared.master, s)
            .await?
            .ok_or(StoreError::UnknownSubject)?;
        self.job.keys.insert(s, k.clone());
        Ok(k)
    }

    /// Claims `ident` for `subject` unless some subject already has it. Returns the
    /// subject that owns it afterwards.
    async fn claim(
        &mut self,
        subject: SubjectId,
        ident: &Identity,
        now_ms: i64,
    ) -> Result<SubjectId, StoreError> {
        let claimed = sql::query_opt(
            self.tx,
            "INSERT INTO identity_lookup (lookup_hash, subject_id) VALUES ($1, $2)
             ON CONFLICT (lookup_hash) DO NOTHING RETURNING subject_id",
            &[&&ident.hash.0[..], &&subject.as_bytes()[..]],
        )
        .await?;
        if claimed.is_none() {
            // Linked meanwhile (by another node, or to another subject: identities are
            // never merged silently, since that would move one person's consent onto
            // another). The conflict waited for that transaction, so the row is visible.
            let owner = sql::query_opt(
                self.tx,
                "SELECT subject_id FROM identity_lookup WHERE lookup_hash = $1",
                &[&&ident.hash.0[..]],
            )
            .await?
            .ok_or_else(|| StoreError::Database("identity link vanished".into()))?;
            let owner = cache::subject(owner.get(0))?;
            self.job.ids.insert(ident.hash, owner);
            return Ok(owner);
        }
        let key = self.key(subject).await?;
        let sealed = key.seal(&ident.hash.0, ident.value.expose().as_bytes());
        sql::execute(
            self.tx,
            "INSERT INTO identities (subject_id, lookup_hash, kind, sealed_value, created_ms)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &&subject.as_bytes()[..],
                &&ident.hash.0[..],
                &i16::from(ident.kind.code()),
                &sealed,
                &now_ms,
            ],
        )
        .await?;
        self.job.ids.insert(ident.hash, subject);
        self.job.changed.insert(subject);
        Ok(subject)
    }

    async fn consent(&mut self, cmd: &ConsentCommand) -> Result<ConsentOutcome, StoreError> {
        let mut found = None;
        for i in &cmd.identities {
            if let Some(s) = self.lookup(&i.hash).await? {
                found = Some(s);
                break;
            }
        }
        let (subject, created) = match found {
            Some(s) => (s, false),
            None if cmd.create => self.create(cmd).await?,
            None => return Err(StoreError::UnknownSubject),
        };
        for ident in &cmd.identities {
            if self.lookup(&ident.hash).await?.is_none() {
                self.claim(subject, ident, cmd.time_ms).await?;
            }
        }
        let mut current: HashMap<String, Current> = HashMap::new();
        let mut version = 0u64;
        for r in sql::query(
            self.tx,
            "SELECT purpose_id, status, notice_version, seq FROM consent_state WHERE subject_id = $1",
            &[&&subject.as_bytes()[..]],
        )
        .await?
        {
            version = version.max(u64::try_from(r.get::<_, i64>(3)).unwrap_or(0));
            let status: &str = r.get(1);
            let status = ConsentStatus::parse(status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?;
            current.insert(
                r.get(0),
                Current {
                    status,
                    notice_version: u32::try_from(r.get::<_, i64>(2))
                        .map_err(|_| StoreError::Corrupt("notice version".into()))?,
                },
            );
        }
        let before = self.shared.granted_of(
            current
                .iter()
                .filter(|(_, c)| c.status.grants())
                .map(|(p, _)| p.as_str()),
        );
        let mut granted = before;
        let mut records = Vec::new();
        for ch in &cmd.changes {
            let cur = current.get(ch.purpose.as_str()).copied();
            let next = consent::transition(cur, ch.action, ch.notice_version).map_err(|_| {
                StoreError::NotGiven {
                    purpose: ch.purpose.to_string(),
                }
            })?;
            let Some(status) = next else { continue };
            let sealed = self.append(subject, &ch.purpose, status, ch, cmd).await?;
            sql::execute(
                self.tx,
                "INSERT INTO consent_state (subject_id, purpose_id, status, notice_version, seq, time_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (subject_id, purpose_id) DO UPDATE SET
                   status = excluded.status, notice_version = excluded.notice_version,
                   seq = excluded.seq, time_ms = excluded.time_ms",
                &[
                    &&subject.as_bytes()[..],
                    &ch.purpose.as_str(),
                    &status.as_str(),
                    &i64::from(ch.notice_version),
                    &(sealed.entry.seq as i64),
                    &cmd.time_ms,
                ],
            )
            .await?;
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
                self.floor(subject, ch.bit).await?;
            }
            version = version.max(sealed.entry.seq);
            records.push(sealed);
        }
        if let Some(ins) = &self.shared.insights {
            // Features exist only while the insights purpose is granted (see
            // `crate::insights`): a transition either way clears them. Publishing the
            // new granted set drops the subject from every node's feature index.
            if before.contains(ins.bit) != granted.contains(ins.bit) {
                super::insights::delete_features(self.tx, subject).await?;
            }
        }
        self.job.granted.insert(subject, (granted, version));
        self.job.changed.insert(subject);
        Ok(ConsentOutcome {
            subject,
            created,
            records,
            granted,
        })
    }

    /// Creates a subject for `cmd`, claiming its first identifier first: when two nodes
    /// create a subject for the same new identifier at once, the one that loses the
    /// claim uses the winner's subject instead of making a second person.
    async fn create(&mut self, cmd: &ConsentCommand) -> Result<(SubjectId, bool), StoreError> {
        let s = SubjectId::random();
        let key = SubjectKey::generate();
        if let Some(first) = cmd.identities.first() {
            let claimed = sql::query_opt(
                self.tx,
                "INSERT INTO identity_lookup (lookup_hash, subject_id) VALUES ($1, $2)
                 ON CONFLICT (lookup_hash) DO NOTHING RETURNING subject_id",
                &[&&first.hash.0[..], &&s.as_bytes()[..]],
            )
            .await?;
            if claimed.is_none() {
                let owner = self
                    .lookup(&first.hash)
                    .await?
                    .ok_or_else(|| StoreError::Database("identity link vanished".into()))?;
                return Ok((owner, false));
            }
        }
        sql::execute(
            self.tx,
            "INSERT INTO subjects (subject_id, wrapped_key, created_ms) VALUES ($1, $2, $3)",
            &[
                &&s.as_bytes()[..],
                &self.shared.master.wrap(&s, &key),
                &cmd.time_ms,
            ],
        )
        .await?;
        if let Some(first) = cmd.identities.first() {
            let sealed = key.seal(&first.hash.0, first.value.expose().as_bytes());
            sql::execute(
                self.tx,
                "INSERT INTO identities (subject_id, lookup_hash, kind, sealed_value, created_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &&s.as_bytes()[..],
                    &&first.hash.0[..],
                    &i16::from(first.kind.code()),
                    &sealed,
                    &cmd.time_ms,
                ],
            )
            .await?;
            self.job.ids.insert(first.hash, s);
        }
        self.job.keys.insert(s, key);
        self.job.changed.insert(s);
        Ok((s, true))
    }

    /// Records that the subject's events stored so far no longer carry `bit`, in the
    /// same transaction as the withdrawal. "So far" is every id the sequence has handed
    /// out: with the gate held exclusively no ingest transaction is in flight, so all of
    /// them are committed (or rolled back), and every later event gets a larger id.
    async fn floor(&mut self, subject: SubjectId, bit: u8) -> Result<(), StoreError> {
        if !*self.gate {
            // Unreachable by construction (only withdraw/refuse withdraw), kept so a
            // future action cannot silently skip the lock.
            lock_gate(self.tx).await?;
            *self.gate = true;
        }
        sql::execute(
            self.tx,
            "INSERT INTO purpose_floors (subject_id, bit, upto_id)
             SELECT $1, $2, CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq
             ON CONFLICT (subject_id, bit) DO UPDATE SET upto_id = excluded.upto_id",
            &[&&subject.as_bytes()[..], &i16::from(bit)],
        )
        .await?;
        self.job.floored = true;
        Ok(())
    }

    async fn append(
        &mut self,
        subject: SubjectId,
        purpose: &PurposeId,
        status: ConsentStatus,
        ch: &PurposeChange,
        cmd: &ConsentCommand,
    ) -> Result<SealedEntry, StoreError> {
        let sealed = cmd
            .entry(*self.head, subject, ch, status)
            .seal(self.shared.signer.signing_key());
        let evidence = crate::types::evidence_json(&sealed.entry.evidence)?;
        sql::execute(
            self.tx,
            "INSERT INTO ledger (seq, subject_id, purpose_id, status, notice_version, notice_hash,
               channel, time_ms, evidence, prev_hash, hash, signature)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &(sealed.entry.seq as i64),
                &&subject.as_bytes()[..],
                &purpose.as_str(),
                &status.as_str(),
                &i64::from(ch.notice_version),
                &&ch.notice_hash[..],
                &cmd.channel.as_str(),
                &cmd.time_ms,
                &evidence,
                &&sealed.entry.prev_hash[..],
                &&sealed.hash[..],
                &&sealed.signature[..],
            ],
        )
        .await?;
        *self.head = Head {
            seq: sealed.entry.seq,
            hash: sealed.hash,
        };
        Ok(sealed)
    }
}
