//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through a single writer thread ([`writer`]) that commits whatever has
//! queued up as one transaction (group commit) with `synchronous=FULL`, so each
//! acknowledged write is on disk while the fsync cost is shared by everything in the
//! group. What a job writes is decided in `crate::plan` and carried out here:
//! [`consent`] and [`ingest`] inside the group transaction, insight features from the
//! event log after commit ([`features`]), advertisers and budget charges
//! ([`advertisers`]). Reads use a small pool of separate connections ([`read`]), which
//! WAL lets run beside the writer.

mod advertisers;
mod consent;
mod email;
mod erase;
mod features;
mod fields;
mod ingest;
mod keys;
mod loyalty;
mod person;
mod prompt;
mod read;
mod retention;
pub(crate) mod schema;
mod sweep;
mod txn;
mod writer;

use crate::caches::Caches;
use crate::engine::{Backend, Engine};
use crate::front::Front;
use crate::types::*;
use crate::{InsightsOptions, PromptCount, StoreError, StoredVariant};
use async_trait::async_trait;
use candor_core::crypto::{LookupHash, MasterKey, SubjectKey};
use candor_core::ledger::RingKey;
use candor_core::ledger::{Head, SealedEntry};
use candor_core::receipt::ReceiptSigner;
use candor_core::{PurposeId, SubjectId, UnixMillis};
use ed25519_dalek::VerifyingKey;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use schema::SUPPORTED_VERSION;

/// How long a `messageId` is remembered for de-duplication (Segment's window).
pub const DEDUP_WINDOW_MS: i64 = 24 * 3_600_000;

/// The SQLite store.
pub type SqliteStore = Engine<Sqlite>;

/// Idle read connections kept for reuse (each has its own page cache).
const READERS_KEPT: usize = 16;
/// Idle side-write connections kept for reuse.
const SIDE_WRITERS_KEPT: usize = 2;

/// The SQLite backend: its caches, its read connections and its writer thread.
pub struct Sqlite {
    caches: Arc<Caches>,
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// Idle side-write connections ([`Sqlite::write`]), kept because opening one parses
    /// the whole schema: the send queue's status changes come many times a second.
    side_writers: Mutex<Vec<Connection>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsynced at every commit, so an acknowledged write survives a
    // crash or power loss. NORMAL would only survive a process crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // A large page cache and memory-mapped reads keep index pages in memory instead of
    // re-reading them through syscalls on every insert.
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "mmap_size", 256i64 << 20)?;
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
    // The writer cycles through more statements than the default cache (16) holds once
    // insights are on; an evicted statement is parsed again on the hot path.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

pub(crate) fn open_conn(path: &Path, write: bool) -> Result<Connection, StoreError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn)?;
    if write {
        // Erasure is real (invariant 6): what a delete frees is overwritten with zeros
        // rather than left in free pages and cells. It costs only where something is
        // freed (erasure, retention, the sweeper's page rewrites); appends free nothing
        // (measured in `docs/erasure.md`). The WAL's older page images are dealt with
        // by the checkpoint after each erasure (`erase`).
        conn.pragma_update(None, "secure_delete", "ON")?;
    }
    Ok(conn)
}

impl Engine<Sqlite> {
    /// Opens (creating and migrating if needed) the database at `path`, assigns stable
    /// bits to `purposes`, loads the caches and starts the writer thread.
    pub fn open(
        path: &Path,
        purposes: &[PurposeId],
        master: MasterKey,
        signer: Arc<ReceiptSigner>,
    ) -> Result<Self, StoreError> {
        Self::open_with_insights(path, purposes, master, signer, None)
    }

    /// [`SqliteStore::open`] with audience insights: features of rows stored under the
    /// insights purpose are derived and mirrored into `insights.index`, which is loaded
    /// from the stored features (and the event log past their watermark) now.
    pub fn open_with_insights(
        path: &Path,
        purposes: &[PurposeId],
        master: MasterKey,
        signer: Arc<ReceiptSigner>,
        insights: Option<InsightsOptions>,
    ) -> Result<Self, StoreError> {
        let mut conn = open_conn(path, true)?;
        schema::migrate(&mut conn)?;
        keys::setup(&mut conn, &master, &signer.verifying_key(), crate::now_ms())?;
        let bits = assign_bits(&mut conn, purposes)?;
        let (insights, features) = crate::features::resolve(insights, &bits)?;
        let caches = Arc::new(Caches::new(bits, master, signer, insights, features));
        load_caches(&conn, &caches)?;
        let log = features::FeatureLog::open(&conn, &caches)?;
        let head = read::head(&conn)?;
        let dedup = read::dedup_window(&conn, DEDUP_WINDOW_MS)?;
        let (front, rx) = Front::new();
        let w_caches = caches.clone();
        let handle = std::thread::Builder::new()
            .name("candor-sqlite-writer".into())
            .spawn(move || writer::run(conn, w_caches, head, dedup, log, rx))
            .map_err(|e| StoreError::Database(format!("cannot start writer thread: {e}")))?;
        let backend = Sqlite {
            caches,
            path: path.to_owned(),
            readers: Mutex::new(Vec::new()),
            side_writers: Mutex::new(Vec::new()),
            writer_thread: Mutex::new(Some(handle)),
        };
        Ok(Engine::new(backend, front))
    }
}

impl Sqlite {
    /// Runs `f` on a pooled read connection, off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = match self.readers.lock().pop() {
            Some(c) => c,
            None => open_conn(&self.path, false)?,
        };
        let (res, conn) = tokio::task::spawn_blocking(move || {
            let r = f(&conn);
            (r, conn)
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?;
        let mut pool = self.readers.lock();
        if pool.len() < READERS_KEPT {
            pool.push(conn);
        }
        res
    }

    /// Runs `f` on a write connection of its own, off the async runtime: for the small,
    /// rare transactions beside the writer (audit log, access log, requests, links),
    /// which wait for the writer's group through the busy timeout.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let mut conn = match self.side_writers.lock().pop() {
            Some(c) => c,
            None => open_conn(&self.path, true)?,
        };
        let (res, conn) = tokio::task::spawn_blocking(move || {
            let r = f(&mut conn);
            (r, conn)
        })
        .await
        .map_err(|e| StoreError::Database(format!("write task failed: {e}")))?;
        // Kept only outside a transaction: one left open by a failed closure would hold
        // the write lock and hand its half-done work to the next caller.
        if conn.is_autocommit() {
            let mut pool = self.side_writers.lock();
            if pool.len() < SIDE_WRITERS_KEPT {
                pool.push(conn);
            }
        }
        res
    }
}

fn assign_bits(
    conn: &mut Connection,
    purposes: &[PurposeId],
) -> Result<HashMap<PurposeId, u8>, StoreError> {
    let tx = conn.transaction()?;
    let mut taken: HashMap<String, u8> = HashMap::new();
    {
        let mut st = tx.prepare("SELECT purpose_id, bit FROM purposes")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u8>(1)?)))?;
        for r in rows {
            let (p, b) = r?;
            taken.insert(p, b);
        }
    }
    let mut out = HashMap::new();
    for p in purposes {
        let bit = match taken.get(p.as_str()) {
            Some(b) => *b,
            None => {
                let used: Vec<u8> = taken.values().copied().collect();
                let free = (0..64u8)
                    .find(|b| !used.contains(b))
                    .ok_or_else(|| StoreError::Corrupt("all 64 purpose bits are in use".into()))?;
                tx.execute(
                    "INSERT INTO purposes (purpose_id, bit) VALUES (?1, ?2)",
                    rusqlite::params![p.as_str(), free],
                )?;
                taken.insert(p.as_str().to_owned(), free);
                free
            }
        };
        out.insert(p.clone(), bit);
    }
    tx.commit()?;
    Ok(out)
}

fn load_caches(conn: &Connection, caches: &Caches) -> Result<(), StoreError> {
    use crate::rows::Col;
    {
        let mut ids = caches.ids.write();
        let mut st = conn.prepare("SELECT lookup_hash, subject_id FROM identities")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            ids.insert(LookupHash(r.blob_n(0, "lookup hash")?), r.subject(1)?);
        }
    }
    let mut st = conn.prepare("SELECT subject_id, purpose_id, status, seq FROM consent_state")?;
    let mut rows = st.query([])?;
    let mut all = Vec::new();
    while let Some(r) = rows.next()? {
        all.push(Ok((r.subject(0)?, r.text(1)?, r.text(2)?, r.int(3)?)));
    }
    caches.publish_state_rows(all)
}

#[async_trait]
impl Backend for Sqlite {
    fn caches(&self) -> &Caches {
        &self.caches
    }

    async fn load_key(&self, subject: SubjectId) -> Result<Option<SubjectKey>, StoreError> {
        let caches = self.caches.clone();
        self.read(move |c| read::subject_key(c, &caches.master, subject))
            .await
    }

    async fn consent_state(&self, subject: SubjectId) -> Result<Vec<StateRow>, StoreError> {
        self.read(move |c| read::consent_state(c, subject)).await
    }

    async fn fields(&self, subject: SubjectId) -> Result<Vec<crate::seal::FieldRow>, StoreError> {
        self.read(move |c| {
            read::all(
                c,
                crate::statements::FIELDS,
                rusqlite::params![&subject.as_bytes()[..]],
                |r| crate::rows::field_row(r),
            )
        })
        .await
    }

    async fn consent_history(&self, subject: SubjectId) -> Result<Vec<SealedEntry>, StoreError> {
        self.read(move |c| read::history(c, subject)).await
    }

    async fn ledger_page(&self, after: u64, limit: usize) -> Result<Vec<SealedEntry>, StoreError> {
        self.read(move |c| read::ledger_page(c, after, limit)).await
    }

    async fn ledger_head(&self) -> Result<Option<Head>, StoreError> {
        self.read(read::head).await
    }

    async fn events_page(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |c| read::events_page(c, after, limit, None))
            .await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.read(read::stats).await
    }

    async fn advertiser(&self, id: &str) -> Result<Option<Advertiser>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| advertisers::advertiser(c, &id)).await
    }

    async fn advertiser_by_key(
        &self,
        key_hash: &[u8; 32],
    ) -> Result<Option<Advertiser>, StoreError> {
        let key = *key_hash;
        self.read(move |c| advertisers::advertiser_by_key(c, &key))
            .await
    }

    async fn advertisers(&self) -> Result<Vec<Advertiser>, StoreError> {
        self.read(advertisers::advertisers).await
    }

    async fn reports(
        &self,
        advertiser: Option<&str>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ReportRecord>, StoreError> {
        let advertiser = advertiser.map(str::to_owned);
        self.read(move |c| advertisers::reports(c, advertiser.as_deref(), after_id, limit))
            .await
    }

    async fn report(&self, id: i64) -> Result<Option<ReportRecord>, StoreError> {
        self.read(move |c| advertisers::report(c, id)).await
    }

    async fn spent(&self, scope: SpendScope) -> Result<Spend, StoreError> {
        self.read(move |c| advertisers::spent(c, &scope)).await
    }

    async fn subject_reports(&self, subject: SubjectId) -> Result<Vec<ReportRecord>, StoreError> {
        self.read(move |c| advertisers::subject_reports(c, subject))
            .await
    }

    async fn add_prompt_counts(&self, counts: Vec<PromptCount>) -> Result<(), StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || prompt::add_counts(&path, counts))
            .await
            .map_err(|e| StoreError::Database(format!("prompt count task failed: {e}")))?
    }

    async fn prompt_counts(
        &self,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<PromptCount>, StoreError> {
        self.read(move |c| prompt::counts(c, from_day, to_day))
            .await
    }

    async fn save_prompt_variant(&self, v: StoredVariant) -> Result<(), StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || prompt::save_variant(&path, v))
            .await
            .map_err(|e| StoreError::Database(format!("prompt variant task failed: {e}")))?
    }

    async fn prompt_variants(&self) -> Result<Vec<StoredVariant>, StoreError> {
        self.read(prompt::variants).await
    }

    async fn signing_keys(&self) -> Result<Vec<RingKey>, StoreError> {
        self.read(keys::ring).await
    }

    async fn record_admin_action(&self, a: AdminAction) -> Result<(), StoreError> {
        self.write(move |c| keys::record_admin_action(c, &a)).await
    }

    async fn admin_actions(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AdminActionRecord>, StoreError> {
        self.read(move |c| keys::admin_actions(c, after, limit))
            .await
    }

    async fn subject_events_page(
        &self,
        subject: SubjectId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |c| read::events_page(c, after, limit, Some(subject)))
            .await
    }

    async fn sealed_identities(
        &self,
        subject: SubjectId,
    ) -> Result<Vec<crate::seal::SealedIdentity>, StoreError> {
        self.read(move |c| {
            read::all(
                c,
                crate::statements::IDENTITIES_OF,
                rusqlite::params![&subject.as_bytes()[..]],
                |r| crate::rows::sealed_identity(r),
            )
        })
        .await
    }

    async fn record_access(&self, a: Access) -> Result<(), StoreError> {
        self.write(move |c| person::record_access(c, &a)).await
    }

    async fn access_log(
        &self,
        subject: SubjectId,
        limit: usize,
    ) -> Result<Vec<Access>, StoreError> {
        self.read(move |c| person::access_log(c, subject, limit))
            .await
    }

    async fn open_request(
        &self,
        subject: SubjectId,
        kind: RequestKind,
        channel: &str,
        at: UnixMillis,
    ) -> Result<i64, StoreError> {
        let channel = channel.to_owned();
        self.write(move |c| person::open_request(c, subject, kind, &channel, at))
            .await
    }

    async fn close_request(
        &self,
        id: i64,
        at: UnixMillis,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let outcome = outcome.to_owned();
        self.write(move |c| person::close_request(c, id, at, &outcome))
            .await
    }

    async fn requests(&self, after: i64, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        self.read(move |c| person::requests(c, after, limit)).await
    }

    async fn spend_link(
        &self,
        nonce: [u8; 16],
        expires: UnixMillis,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        self.write(move |c| person::spend_link(c, &nonce, expires, now))
            .await
    }

    async fn claim_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (path, key, value) = (self.path.clone(), key.to_owned(), value.to_owned());
        tokio::task::spawn_blocking(move || {
            keys::claim_meta(&mut open_conn(&path, true)?, &key, &value)
        })
        .await
        .map_err(|e| StoreError::Database(format!("store meta task failed: {e}")))?
    }

    async fn rotate_signing_key(&self, next: VerifyingKey) -> Result<RingKey, StoreError> {
        let (path, signer) = (self.path.clone(), self.caches.signer.clone());
        tokio::task::spawn_blocking(move || {
            keys::rotate(&mut open_conn(&path, true)?, &signer, next, crate::now_ms())
        })
        .await
        .map_err(|e| StoreError::Database(format!("key rotation task failed: {e}")))?
    }

    async fn fields_after(
        &self,
        after: (SubjectId, String),
        limit: usize,
    ) -> Result<Vec<(SubjectId, crate::seal::FieldRow)>, StoreError> {
        self.read(move |c| {
            read::all(
                c,
                crate::statements::FIELDS_AFTER,
                rusqlite::params![&after.0.as_bytes()[..], after.1, limit as i64],
                |r| crate::rows::subject_field_row(r),
            )
        })
        .await
    }

    async fn settled_event_id(&self, _after: i64) -> Result<i64, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }

    async fn loyalty_account(
        &self,
        subject: SubjectId,
    ) -> Result<Option<crate::loyalty::Account>, StoreError> {
        self.read(move |c| loyalty::side::account(c, subject)).await
    }

    async fn loyalty_history(
        &self,
        subject: SubjectId,
        before: i64,
        limit: usize,
    ) -> Result<Vec<crate::loyalty::Txn>, StoreError> {
        self.read(move |c| loyalty::side::history(c, subject, before, limit))
            .await
    }

    async fn loyalty_totals(&self) -> Result<crate::loyalty::ProgramTotals, StoreError> {
        self.read(loyalty::side::totals).await
    }

    async fn accounts_with_points(
        &self,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Result<Vec<SubjectId>, StoreError> {
        self.read(move |c| loyalty::side::with_points(c, after, limit))
            .await
    }

    async fn reward_stocks(&self) -> Result<Vec<crate::loyalty::RewardStock>, StoreError> {
        self.read(loyalty::side::stocks).await
    }

    async fn set_reward_stock(
        &self,
        reward: String,
        stock: Option<i64>,
        only_if_absent: bool,
    ) -> Result<(), StoreError> {
        let at = crate::now_ms();
        self.write(move |c| loyalty::side::set_stock(c, &reward, stock, only_if_absent, at))
            .await
    }

    async fn segments(&self) -> Result<Vec<crate::loyalty::SegmentRecord>, StoreError> {
        self.read(loyalty::side::segments).await
    }

    async fn put_segment(&self, s: crate::loyalty::SegmentRecord) -> Result<(), StoreError> {
        self.write(move |c| loyalty::side::put_segment(c, &s)).await
    }

    async fn delete_segment(&self, name: String) -> Result<bool, StoreError> {
        self.write(move |c| loyalty::side::delete_segment(c, &name))
            .await
    }

    async fn record_segment_sizes(
        &self,
        day: i32,
        sizes: Vec<(String, i64)>,
    ) -> Result<(), StoreError> {
        self.write(move |c| loyalty::side::put_sizes(c, day, &sizes))
            .await
    }

    async fn segment_sizes(
        &self,
        from_day: i32,
    ) -> Result<Vec<crate::loyalty::SegmentSize>, StoreError> {
        self.read(move |c| loyalty::side::sizes(c, from_day)).await
    }

    async fn stop(&self) {
        let handle = self.writer_thread.lock().take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}
