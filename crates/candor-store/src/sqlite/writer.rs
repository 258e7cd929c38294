//! The single writer: group commit, ledger appends, consent changes and event inserts.
//!
//! Why one thread: SQLite allows one writer at a time anyway, and a single ordered path
//! is what makes consent decisions linearizable. An event batch is re-checked against
//! the consent index *here*, after any withdrawal queued before it has been applied,
//! so no event tagged with a withdrawn purpose can commit after the withdrawal.
//!
//! Each job runs inside a savepoint, so one failing job (a withdrawal of something not
//! given) rolls back alone while the rest of the group commits. Cache updates of a job
//! are staged and published only after the group's COMMIT has returned, so nobody can
//! observe state that might still be rolled back.

use super::Shared;
use crate::types::*;
use crate::StoreError;
use candor_core::consent::{self, ConsentStatus, Current};
use candor_core::crypto::{LookupHash, SubjectKey};
use candor_core::ledger::{Head, LedgerEntry, SealedEntry, GENESIS};
use candor_core::{PurposeId, PurposeSet, SubjectId};
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub(crate) enum Job {
    Consent {
        cmds: Vec<ConsentCommand>,
        reply: oneshot::Sender<Result<Vec<ConsentOutcome>, StoreError>>,
    },
    Ingest {
        rows: Vec<IngestRow>,
        reply: oneshot::Sender<Result<Vec<RowOutcome>, StoreError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Upper bound on events folded into one transaction, to bound commit latency.
const MAX_GROUP_ROWS: usize = 50_000;

/// Cache changes staged by a job, published after commit.
#[derive(Default)]
struct Staged {
    ids: HashMap<LookupHash, SubjectId>,
    keys: HashMap<SubjectId, SubjectKey>,
    granted: HashMap<SubjectId, PurposeSet>,
}

impl Staged {
    fn absorb(&mut self, other: Staged) {
        self.ids.extend(other.ids);
        self.keys.extend(other.keys);
        self.granted.extend(other.granted);
    }
}

enum Reply {
    Consent(
        oneshot::Sender<Result<Vec<ConsentOutcome>, StoreError>>,
        Result<Vec<ConsentOutcome>, StoreError>,
    ),
    Ingest(
        oneshot::Sender<Result<Vec<RowOutcome>, StoreError>>,
        Result<Vec<RowOutcome>, StoreError>,
    ),
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    head: Head,
}

pub(crate) fn run(
    conn: Connection,
    shared: Arc<Shared>,
    head: Option<Head>,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut w = Writer {
        conn,
        shared,
        head: head.unwrap_or(Head {
            seq: 0,
            hash: GENESIS,
        }),
    };
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        let mut rows = 0usize;
        while rows < MAX_GROUP_ROWS {
            match rx.try_recv() {
                Ok(j) => {
                    if let Job::Ingest { rows: r, .. } = &j {
                        rows += r.len();
                    }
                    group.push(j);
                }
                Err(_) => break,
            }
        }
        let mut jobs = Vec::with_capacity(group.len());
        for j in group {
            match j {
                Job::Shutdown { reply } => shutdown = Some(reply),
                other => jobs.push(other),
            }
        }
        if !jobs.is_empty() {
            w.commit_group(jobs);
        }
        if shutdown.is_some() {
            break;
        }
    }
    // Close the queue and fail anything still waiting, rather than leave it hanging.
    rx.close();
    while let Ok(j) = rx.try_recv() {
        match j {
            Job::Consent { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Job::Ingest { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Job::Shutdown { reply } => drop(reply.send(())),
        }
    }
    if let Err(e) = w.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "checkpoint at shutdown failed");
    }
    if let Some(r) = shutdown {
        let _ = r.send(());
    }
}

impl Writer {
    fn commit_group(&mut self, jobs: Vec<Job>) {
        let start_head = self.head;
        let mut staged = Staged::default();
        let mut replies = Vec::with_capacity(jobs.len());
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            for j in jobs {
                fail(j, StoreError::Database(msg.clone()));
            }
            return;
        }
        for job in jobs {
            let job_head = self.head;
            let mut job_staged = Staged::default();
            match job {
                Job::Consent { cmds, reply } => {
                    let res = self.savepoint(|w| {
                        let mut outs = Vec::with_capacity(cmds.len());
                        for c in &cmds {
                            outs.push(w.consent(c, &staged, &mut job_staged)?);
                        }
                        Ok(outs)
                    });
                    if res.is_ok() {
                        staged.absorb(job_staged);
                    } else {
                        self.head = job_head;
                    }
                    replies.push(Reply::Consent(reply, res));
                }
                Job::Ingest { rows, reply } => {
                    let res = self.savepoint(|w| w.ingest(&rows, &staged, &mut job_staged));
                    if res.is_ok() {
                        staged.absorb(job_staged);
                    }
                    replies.push(Reply::Ingest(reply, res));
                }
                Job::Shutdown { reply } => drop(reply.send(())),
            }
        }
        let head_written = if self.head != start_head {
            self.conn
                .execute(
                    "INSERT INTO ledger_head (id, seq, hash) VALUES (1, ?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    params![self.head.seq as i64, &self.head.hash[..]],
                )
                .map(|_| ())
        } else {
            Ok(())
        };
        let committed = head_written.and_then(|_| self.conn.execute_batch("COMMIT"));
        if let Err(e) = committed {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.head = start_head;
            let msg = e.to_string();
            tracing::error!(error = %msg, "group commit failed");
            for r in replies {
                match r {
                    Reply::Consent(tx, _) => drop(tx.send(Err(StoreError::Database(msg.clone())))),
                    Reply::Ingest(tx, _) => drop(tx.send(Err(StoreError::Database(msg.clone())))),
                }
            }
            return;
        }
        // Durable now: publish to the caches, then answer.
        {
            let mut ids = self.shared.ids.write();
            ids.extend(staged.ids);
        }
        {
            let mut keys = self.shared.keys.write();
            keys.extend(staged.keys);
        }
        for (s, g) in staged.granted {
            self.shared.index.set(s, g);
        }
        for r in replies {
            match r {
                Reply::Consent(tx, res) => drop(tx.send(res)),
                Reply::Ingest(tx, res) => drop(tx.send(res)),
            }
        }
    }

    fn savepoint<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.execute_batch("SAVEPOINT job")?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("RELEASE job")?;
                Ok(v)
            }
            Err(e) => {
                self.conn
                    .execute_batch("ROLLBACK TO job; RELEASE job")
                    .map_err(|re| StoreError::Database(format!("{e}; rollback failed: {re}")))?;
                Err(e)
            }
        }
    }

    fn lookup(&self, h: &LookupHash, group: &Staged, job: &Staged) -> Option<SubjectId> {
        job.ids
            .get(h)
            .or_else(|| group.ids.get(h))
            .copied()
            .or_else(|| self.shared.ids.read().get(h).copied())
    }

    fn granted(&self, s: &SubjectId, group: &Staged, job: &Staged) -> PurposeSet {
        job.granted
            .get(s)
            .or_else(|| group.granted.get(s))
            .copied()
            .unwrap_or_else(|| self.shared.index.granted(s))
    }

    fn key(&self, s: SubjectId, group: &Staged, job: &Staged) -> Result<SubjectKey, StoreError> {
        if let Some(k) = job.keys.get(&s).or_else(|| group.keys.get(&s)) {
            return Ok(k.clone());
        }
        if let Some(k) = self.shared.keys.read().get(&s) {
            return Ok(k.clone());
        }
        super::read::subject_key(&self.conn, &self.shared.master, s)?
            .ok_or(StoreError::UnknownSubject)
    }

    fn link(
        &self,
        subject: SubjectId,
        ident: &Identity,
        now_ms: i64,
        group: &Staged,
        job: &mut Staged,
    ) -> Result<(), StoreError> {
        if self.lookup(&ident.hash, group, job).is_some() {
            // Already linked (possibly to another subject: identities are never merged
            // silently, since that would move one person's consent onto another).
            return Ok(());
        }
        let key = self.key(subject, group, job)?;
        let sealed = key.seal(&ident.hash.0, ident.value.expose().as_bytes());
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO identities (lookup_hash, subject_id, kind, sealed_value, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &ident.hash.0[..],
                &subject.as_bytes()[..],
                ident.kind.code(),
                sealed,
                now_ms
            ])?;
        job.ids.insert(ident.hash, subject);
        Ok(())
    }

    fn consent(
        &mut self,
        cmd: &ConsentCommand,
        group: &Staged,
        job: &mut Staged,
    ) -> Result<ConsentOutcome, StoreError> {
        let found = cmd
            .identities
            .iter()
            .find_map(|i| self.lookup(&i.hash, group, job));
        let (subject, created) = match found {
            Some(s) => (s, false),
            None if cmd.create => {
                let s = SubjectId::random();
                let key = SubjectKey::generate();
                self.conn.execute(
                    "INSERT INTO subjects (subject_id, wrapped_key, created_ms) VALUES (?1, ?2, ?3)",
                    params![&s.as_bytes()[..], self.shared.master.wrap(&s, &key), cmd.time_ms],
                )?;
                job.keys.insert(s, key);
                (s, true)
            }
            None => return Err(StoreError::UnknownSubject),
        };
        for ident in &cmd.identities {
            self.link(subject, ident, cmd.time_ms, group, job)?;
        }
        let mut current: HashMap<String, Current> = HashMap::new();
        {
            let mut st = self.conn.prepare_cached(
                "SELECT purpose_id, status, notice_version FROM consent_state WHERE subject_id = ?1",
            )?;
            let mut rows = st.query(params![&subject.as_bytes()[..]])?;
            while let Some(r) = rows.next()? {
                let status: String = r.get(1)?;
                let status = ConsentStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?;
                current.insert(
                    r.get(0)?,
                    Current {
                        status,
                        notice_version: r.get(2)?,
                    },
                );
            }
        }
        let mut granted = self.granted(&subject, group, job);
        let mut records = Vec::new();
        let mut deleted = 0u64;
        for ch in &cmd.changes {
            let cur = current.get(ch.purpose.as_str()).copied();
            let next = consent::transition(cur, ch.action, ch.notice_version).map_err(|_| {
                StoreError::NotGiven {
                    purpose: ch.purpose.to_string(),
                }
            })?;
            let Some(status) = next else { continue };
            let sealed = self.append(subject, &ch.purpose, status, ch, cmd)?;
            self.conn
                .prepare_cached(
                    "INSERT INTO consent_state (subject_id, purpose_id, status, notice_version, seq, time_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (subject_id, purpose_id) DO UPDATE SET
                       status = excluded.status, notice_version = excluded.notice_version,
                       seq = excluded.seq, time_ms = excluded.time_ms",
                )?
                .execute(params![
                    &subject.as_bytes()[..],
                    ch.purpose.as_str(),
                    status.as_str(),
                    ch.notice_version,
                    sealed.entry.seq as i64,
                    cmd.time_ms
                ])?;
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
                deleted += self.strip_purpose(subject, ch.bit)?;
            }
            records.push(sealed);
        }
        job.granted.insert(subject, granted);
        Ok(ConsentOutcome {
            subject,
            created,
            records,
            granted,
            events_deleted: deleted,
        })
    }

    /// Removes a withdrawn purpose from the subject's stored events, and deletes the
    /// events left with no purpose. Runs in the same transaction as the withdrawal,
    /// so no reader ever sees the purpose withdrawn but the data still tagged.
    fn strip_purpose(&self, subject: SubjectId, bit: u8) -> Result<u64, StoreError> {
        let mask = 1i64.wrapping_shl(bit as u32);
        let sid = &subject.as_bytes()[..];
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM events WHERE subject_id = ?1 AND purposes = ?2")?
            .execute(params![sid, mask])?;
        self.conn
            .prepare_cached(
                "UPDATE events SET purposes = purposes & ~?2 WHERE subject_id = ?1 AND (purposes & ?2) <> 0",
            )?
            .execute(params![sid, mask])?;
        Ok(deleted as u64)
    }

    fn append(
        &mut self,
        subject: SubjectId,
        purpose: &PurposeId,
        status: ConsentStatus,
        ch: &PurposeChange,
        cmd: &ConsentCommand,
    ) -> Result<SealedEntry, StoreError> {
        let entry = LedgerEntry {
            seq: self.head.seq + 1,
            subject,
            purpose: purpose.clone(),
            status,
            notice_version: ch.notice_version,
            notice_hash: ch.notice_hash,
            channel: cmd.channel,
            time_ms: cmd.time_ms,
            evidence: cmd.evidence.clone(),
            prev_hash: self.head.hash,
        };
        let sealed = entry.seal(self.shared.signer.signing_key());
        let evidence = serde_json::to_string(&sealed.entry.evidence)
            .map_err(|e| StoreError::Database(e.to_string()))?;
        self.conn
            .prepare_cached(
                "INSERT INTO ledger (seq, subject_id, purpose_id, status, notice_version, notice_hash,
                   channel, time_ms, evidence, prev_hash, hash, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                sealed.entry.seq as i64,
                &subject.as_bytes()[..],
                purpose.as_str(),
                status.as_str(),
                ch.notice_version,
                &ch.notice_hash[..],
                cmd.channel.as_str(),
                cmd.time_ms,
                evidence,
                &sealed.entry.prev_hash[..],
                &sealed.hash[..],
                &sealed.signature[..]
            ])?;
        self.head = Head {
            seq: sealed.entry.seq,
            hash: sealed.hash,
        };
        Ok(sealed)
    }

    fn ingest(
        &mut self,
        rows: &[IngestRow],
        group: &Staged,
        job: &mut Staged,
    ) -> Result<Vec<RowOutcome>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let allowed = row
                .purposes
                .intersect(self.granted(&row.subject, group, job));
            if allowed.is_empty() {
                out.push(RowOutcome::ConsentChanged);
                continue;
            }
            let inserted = self
                .conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (subject_id, source_id, dedup_key, kind, category,
                       purposes, event_ms, received_ms, day, sealed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![
                    &row.subject.as_bytes()[..],
                    row.source,
                    &row.dedup_key[..],
                    row.kind.as_str(),
                    row.category.as_str(),
                    allowed.bits() as i64,
                    row.event_ms,
                    row.received_ms,
                    row.event_ms.div_euclid(86_400_000),
                    row.sealed_payload
                ])?;
            if inserted == 0 {
                out.push(RowOutcome::Duplicate);
                continue;
            }
            for ident in &row.link {
                self.link(row.subject, ident, row.received_ms, group, job)?;
            }
            out.push(RowOutcome::Stored);
        }
        Ok(out)
    }
}

fn fail(job: Job, e: StoreError) {
    match job {
        Job::Consent { reply, .. } => drop(reply.send(Err(e))),
        Job::Ingest { reply, .. } => drop(reply.send(Err(e))),
        Job::Shutdown { reply } => drop(reply.send(())),
    }
}
