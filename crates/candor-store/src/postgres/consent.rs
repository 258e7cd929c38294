//! Consent changes on PostgreSQL: resolve (or create) the subject and link its
//! identifiers, then carry out what `plan::consent::plan` decided (ledger records, state
//! rows, floors, deleting insight features on a flip), in a group transaction shared by
//! every consent job queued on this node.
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
//! one, nothing of it is applied, and the group runs again: `retry::retrying`.)
//!
//! **Insights.** A change that moves the insights purpose (either way) deletes the
//! subject's feature rows in the same transaction; a withdrawal does so under the
//! exclusive gate, so the feature deriver (which holds it shared) cannot be writing
//! features for it meanwhile.

use super::locks::{self, Hold};
use super::{sql, Shared};
use crate::caches::Staged;
use crate::email::{ListAction, ListChange, SuppressReason};
use crate::front::Reply;
use crate::plan::consent::{self, SubjectConsent};
use crate::plan::email::{self, ListPlan, SuppressionChange};
use crate::retry::{copy_err, retrying};
use crate::rows::{self, Col};
use crate::types::*;
use crate::{seal, statements as q, StoreError};
use candor_core::consent::Action;
use candor_core::crypto::{LookupHash, SubjectKey};
use candor_core::ledger::{Head, SealedEntry};
use candor_core::SubjectId;
use deadpool_postgres::Transaction;

type Outcomes = Vec<Result<Vec<ConsentOutcome>, StoreError>>;

pub(super) async fn commit_group(
    shared: &Shared,
    jobs: Vec<(Vec<ConsentCommand>, Reply<Vec<ConsentOutcome>>)>,
) {
    let (cmds, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
    match retrying("consent", || run(shared, &cmds)).await {
        Ok((outcomes, mut staged)) => {
            // Durable now: publish to the caches, then answer.
            staged.publish(shared);
            if staged.floored {
                shared.sweep_wake.notify_one();
            }
            for (reply, res) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(res);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "consent group commit failed");
            for reply in replies {
                let _ = reply.send(Err(copy_err(&e)));
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
        seq: row.int(0)? as u64,
        hash: row.blob_n(1, "ledger head hash")?,
    };
    let start = head;
    let may_withdraw = jobs
        .iter()
        .flatten()
        .flat_map(|c| &c.changes)
        .any(|ch| ch.action != Action::Grant);
    if may_withdraw {
        lock_gate(&tx).await?;
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
                gate: may_withdraw,
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

pub(super) async fn lock_gate(tx: &Transaction<'_>) -> Result<(), StoreError> {
    Ok(locks::take(tx, locks::GATE, Hold::Exclusive).await?)
}

struct Ctx<'a, 't> {
    shared: &'a Shared,
    tx: &'a Transaction<'t>,
    group: &'a Staged,
    job: &'a mut Staged,
    head: &'a mut Head,
    /// The gate is held exclusively (the group may withdraw).
    gate: bool,
}

impl Ctx<'_, '_> {
    /// The subject an identifier resolves to: staged, cached, or in the database (another
    /// node may have linked it moments ago, before its notification arrived here).
    async fn lookup(&mut self, h: &LookupHash) -> Result<Option<SubjectId>, StoreError> {
        let cached = self
            .job
            .resolve(h)
            .or_else(|| self.group.resolve(h))
            .or_else(|| self.shared.resolve(h));
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
                let s = r.subject(0)?;
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
        if let Some(k) = self.shared.key(&s) {
            return Ok(k);
        }
        let k = super::read::subject_key(self.tx, &self.shared.master, s)
            .await?
            .ok_or(StoreError::UnknownSubject)?;
        self.job.keys.insert(s, k.clone());
        Ok(k)
    }

    /// Claims `ident` for `subject` in `identity_lookup` (first claim wins, across
    /// nodes); returns whether it did. The conflict waits for a concurrent claimer to
    /// commit, so a lost claim's owner is visible to the lookup that follows.
    async fn claim(&mut self, subject: SubjectId, ident: &Identity) -> Result<bool, StoreError> {
        Ok(sql::query_opt(
            self.tx,
            "INSERT INTO identity_lookup (lookup_hash, subject_id) VALUES ($1, $2)
             ON CONFLICT (lookup_hash) DO NOTHING RETURNING subject_id",
            &[&&ident.hash.0[..], &&subject.as_bytes()[..]],
        )
        .await?
        .is_some())
    }

    /// Stores `ident`'s sealed value for `subject` (after a won claim).
    async fn store_identity(
        &mut self,
        subject: SubjectId,
        key: &SubjectKey,
        ident: &Identity,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sealed = seal::identity(key, ident);
        sql::execute(
            self.tx,
            "INSERT INTO identities (subject_id, lookup_hash, kind, sealed_value, created_ms)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &&subject.as_bytes()[..],
                &&sealed.hash.0[..],
                &i16::from(sealed.kind.code()),
                &sealed.sealed,
                &now_ms,
            ],
        )
        .await?;
        self.job.ids.insert(ident.hash, subject);
        self.job.changed.insert(subject);
        Ok(())
    }

    async fn consent(&mut self, cmd: &ConsentCommand) -> Result<ConsentOutcome, StoreError> {
        let mut found = None;
        for i in &cmd.identities {
            if let Some(s) = self.lookup(&i.hash).await? {
                found = Some(s);
                break;
            }
        }
        // This node may not have heard yet that another erased the subject its cache
        // resolves to. Erasures lock the ledger head too, so one committed before this
        // transaction is visible here: forget the subject and resolve again, so the
        // person who came back becomes a new subject (`plan::erase`).
        if let Some(s) = found.filter(|s| !self.job.keys.contains_key(s)) {
            let exists = sql::query_opt(
                self.tx,
                "SELECT 1 FROM subjects WHERE subject_id = $1",
                &[&&s.as_bytes()[..]],
            )
            .await?
            .is_some();
            if !exists {
                self.shared.forget(s);
                found = None;
                for i in &cmd.identities {
                    if let Some(s) = self.lookup(&i.hash).await? {
                        found = Some(s);
                        break;
                    }
                }
            }
        }
        let (subject, created) = match found {
            Some(s) => (s, false),
            None if cmd.create => self.create(cmd).await?,
            None => return Err(StoreError::UnknownSubject),
        };
        if let (Authority::Named { owner }, false) = (&cmd.authority, created) {
            let held = sql::query_opt(self.tx, q::COUNT_IDENTITIES, &[&&subject.as_bytes()[..]])
                .await?
                .map_or(Ok(0), |r| r.int(0))?;
            let mut named = 0;
            for i in &cmd.identities {
                if self.lookup(&i.hash).await? == Some(subject) {
                    named += 1;
                }
            }
            let owner_subject = match owner {
                Some(h) => self.lookup(h).await?,
                None => None,
            };
            cmd.may_reach(subject, owner_subject, held, named)?;
        }
        for ident in &cmd.identities {
            if self.lookup(&ident.hash).await?.is_some() {
                continue;
            }
            if self.claim(subject, ident).await? {
                let key = self.key(subject).await?;
                self.store_identity(subject, &key, ident, cmd.time_ms.0)
                    .await?;
            } else {
                // Linked meanwhile (by another node, or to another subject: identities
                // are never merged silently, since that would move one person's consent
                // onto another).
                self.lookup(&ident.hash).await?;
            }
        }
        let sid = &subject.as_bytes()[..];
        let rows = sql::query(self.tx, &q::consent_state(), &[&sid]).await?;
        let state = SubjectConsent::from_rows(
            rows.iter()
                .map(rows::state_row)
                .collect::<Result<Vec<_>, _>>()?,
        );
        let plan = consent::plan(
            cmd,
            subject,
            &state,
            &self.shared.bits,
            *self.head,
            &self.shared.signer,
            self.shared.insights_bit(),
        )?;
        let list = match &cmd.list {
            None => None,
            Some(change) => Some(self.plan_list(cmd, change, subject, plan.head).await?),
        };
        for rec in &plan.records {
            self.append(sid, rec).await?;
            let e = &rec.entry;
            sql::execute(
                self.tx,
                q::UPSERT_STATE,
                &[
                    &sid,
                    &e.purpose.as_str(),
                    &e.status.as_str(),
                    &i64::from(e.notice_version),
                    &(e.seq as i64),
                    &e.time_ms.0,
                ],
            )
            .await?;
        }
        let mut head = plan.head;
        if let Some(lp) = &list {
            self.write_list(cmd, sid, lp).await?;
            head = lp.head;
        }
        for bit in &plan.floors {
            self.floor(subject, *bit).await?;
        }
        if plan.insights_flip.is_some() {
            // Publishing the new granted set drops the subject from every node's index.
            sql::execute(self.tx, q::DELETE_FEATURES, &[&sid]).await?;
            sql::execute(self.tx, q::DELETE_DECLARED, &[&sid]).await?;
        }
        *self.head = head;
        self.job
            .granted
            .insert(subject, (plan.granted, plan.version));
        self.job.changed.insert(subject);
        Ok(ConsentOutcome {
            subject,
            created,
            records: plan.records,
            granted: plan.granted,
            list: list.map(|l| l.outcome),
        })
    }

    /// Appends one ledger record.
    async fn append(&mut self, sid: &[u8], rec: &SealedEntry) -> Result<(), StoreError> {
        append(self.tx, sid, rec).await
    }

    /// Reads the subscription `change` is about (on the subject's shard) and decides it
    /// (`plan::email`), chained after the command's own records.
    async fn plan_list(
        &mut self,
        cmd: &ConsentCommand,
        change: &ListChange,
        subject: SubjectId,
        head: Head,
    ) -> Result<ListPlan, StoreError> {
        let current = sql::query_opt(
            self.tx,
            &q::subscription(),
            &[&&subject.as_bytes()[..], &change.list],
        )
        .await?
        .map(|r| rows::subscription(&r))
        .transpose()?;
        let (sealed, digest) = match &change.action {
            ListAction::Confirm {
                origin: Some(o), ..
            } => {
                let key = self.key(subject).await?;
                let (s, d) = seal::origin(&key, subject, &change.list, o);
                (Some(s), Some(d))
            }
            _ => (None, None),
        };
        email::plan(
            cmd,
            change,
            subject,
            current.as_ref(),
            head,
            &self.shared.signer,
            sealed,
            digest,
        )
    }

    /// Writes what `plan::email` decided: the marker record, the row, the suppression.
    async fn write_list(
        &mut self,
        cmd: &ConsentCommand,
        sid: &[u8],
        lp: &ListPlan,
    ) -> Result<(), StoreError> {
        if let Some(rec) = &lp.record {
            self.append(sid, rec).await?;
        }
        if let Some(r) = &lp.row {
            sql::execute(
                self.tx,
                q::PUT_SUBSCRIPTION,
                &[
                    &sid,
                    &r.list,
                    &r.status.as_str(),
                    &r.created_ms,
                    &r.updated_ms,
                    &r.confirmed_ms,
                    &i64::from(r.sends),
                    &r.window_ms,
                    &r.origin,
                ],
            )
            .await?;
        }
        if let Some(c) = lp.left_campaign {
            sql::execute(self.tx, q::MARK_LEFT, &[&cmd.time_ms.0, &c, &sid]).await?;
        }
        if let (Some(change), Some(address)) = (lp.suppression, cmd.email_hash()) {
            let list = lp.row.as_ref().map_or("", |r| r.list.as_str());
            let hash = &address.0[..];
            match change {
                SuppressionChange::Add => {
                    sql::execute(
                        self.tx,
                        q::SUPPRESS,
                        &[
                            &hash,
                            &list,
                            &SuppressReason::Unsubscribe.as_str(),
                            &cmd.time_ms.0,
                        ],
                    )
                    .await?;
                }
                SuppressionChange::Lift => {
                    sql::execute(self.tx, q::LIFT_UNSUBSCRIBE, &[&hash, &list]).await?;
                }
            }
        }
        Ok(())
    }

    /// Creates a subject for `cmd`, claiming its first identifier first: when two nodes
    /// create a subject for the same new identifier at once, the one that loses the
    /// claim uses the winner's subject instead of making a second person.
    async fn create(&mut self, cmd: &ConsentCommand) -> Result<(SubjectId, bool), StoreError> {
        let s = SubjectId::random();
        let key = SubjectKey::generate();
        if let Some(first) = cmd.identities.first() {
            if !self.claim(s, first).await? {
                let owner = self
                    .lookup(&first.hash)
                    .await?
                    .ok_or_else(|| StoreError::Database("identity link vanished".into()))?;
                return Ok((owner, false));
            }
        }
        sql::execute(
            self.tx,
            q::INSERT_SUBJECT,
            &[
                &&s.as_bytes()[..],
                &self.shared.master.wrap(&s, &key),
                &cmd.time_ms.0,
            ],
        )
        .await?;
        if let Some(first) = cmd.identities.first() {
            self.store_identity(s, &key, first, cmd.time_ms.0).await?;
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
        if !self.gate {
            // Unreachable by construction (only withdraw/refuse withdraw), kept so a
            // future action cannot silently skip the lock.
            lock_gate(self.tx).await?;
            self.gate = true;
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
}

/// Appends one ledger record (a consent command's, or an erasure's) in `tx`.
pub(super) async fn append(
    tx: &Transaction<'_>,
    sid: &[u8],
    rec: &SealedEntry,
) -> Result<(), StoreError> {
    let e = &rec.entry;
    let seq = e.seq as i64;
    let notice_version = i64::from(e.notice_version);
    let evidence = evidence_json(&e.evidence)?;
    let (actor, key_id) = rows::attribution_cols(e);
    sql::execute(
        tx,
        q::INSERT_LEDGER,
        &[
            &seq,
            &sid,
            &e.purpose.as_str(),
            &e.status.as_str(),
            &notice_version,
            &&e.notice_hash[..],
            &e.channel.as_str(),
            &e.time_ms.0,
            &evidence,
            &&e.prev_hash[..],
            &&rec.hash[..],
            &&rec.signature[..],
            &actor,
            &key_id,
        ],
    )
    .await?;
    Ok(())
}
