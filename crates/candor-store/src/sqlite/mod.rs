//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through a single writer thread ([`writer`]) that commits whatever has
//! queued up as one transaction (group commit) with `synchronous=FULL`, so each
//! acknowledged write is on disk while the fsync cost is shared by everything in the
//! group. Reads use a small pool of separate connections, which WAL lets run beside
//! the writer. Insights (features, advertisers, reports) are in [`insights`].

mod insights;
mod read;
mod retention;
mod schema;
mod sweep;
mod writer;

use crate::insights::{Insights, PutMode};
use crate::types::*;
use crate::{InsightsOptions, Store, StoreError};
use async_trait::async_trait;
use candor_core::crypto::{LookupHash, MasterKey, SubjectKey};
use candor_core::idhash::IdMap;
use candor_core::index::ConsentIndex;
use candor_core::ledger::{Head, SealedEntry};
use candor_core::receipt::ReceiptSigner;
use candor_core::{PurposeId, PurposeSet, SubjectId};
use candor_insights::FeatureIndex;
use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub use schema::SUPPORTED_VERSION;
pub(crate) use sweep::mask as floor_mask;

/// How long a `messageId` is remembered for de-duplication (Segment's window).
pub const DEDUP_WINDOW_MS: i64 = 24 * 3_600_000;

/// State shared by the writer thread and the request handlers.
pub(crate) struct Shared {
    pub index: ConsentIndex,
    pub ids: RwLock<IdMap<LookupHash, SubjectId>>,
    pub keys: RwLock<IdMap<SubjectId, SubjectKey>>,
    pub bits: HashMap<PurposeId, u8>,
    pub master: MasterKey,
    pub signer: Arc<ReceiptSigner>,
    /// The insights purpose, when insights are configured.
    pub insights: Option<Insights>,
    /// Written only by the writer thread, after commit.
    pub features: Arc<FeatureIndex>,
}

pub struct SqliteStore {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<writer::Job>,
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
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
    Ok(conn)
}

impl SqliteStore {
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
    /// insights purpose are written and mirrored into `insights.index`, which is loaded
    /// from the stored features now.
    pub fn open_with_insights(
        path: &Path,
        purposes: &[PurposeId],
        master: MasterKey,
        signer: Arc<ReceiptSigner>,
        insights: Option<InsightsOptions>,
    ) -> Result<Self, StoreError> {
        let mut conn = open_conn(path, true)?;
        schema::migrate(&mut conn)?;
        let bits = assign_bits(&mut conn, purposes)?;
        let (insights, features) = crate::insights::resolve(insights, &bits)?;
        let shared = Arc::new(Shared {
            index: ConsentIndex::new(),
            ids: RwLock::new(IdMap::default()),
            keys: RwLock::new(IdMap::default()),
            bits,
            master,
            signer,
            insights,
            features,
        });
        load_caches(&conn, &shared)?;
        if let Some(ins) = &shared.insights {
            insights::load(&conn, ins, &shared.index, &shared.features)?;
        }
        let head = read::head(&conn)?;
        let dedup = read::dedup_window(&conn, DEDUP_WINDOW_MS)?;
        let next_dense = insights::next_dense(&conn)?;
        let (tx, rx) = mpsc::channel(4096);
        let w_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("candor-sqlite-writer".into())
            .spawn(move || writer::run(conn, w_shared, head, dedup, next_dense, rx))
            .map_err(|e| StoreError::Database(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            shared,
            jobs: tx,
            path: path.to_owned(),
            readers: Mutex::new(Vec::new()),
            writer_thread: Mutex::new(Some(handle)),
        })
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> writer::Job,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

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
        if pool.len() < 8 {
            pool.push(conn);
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

fn load_caches(conn: &Connection, shared: &Shared) -> Result<(), StoreError> {
    let mut ids = shared.ids.write();
    let mut st = conn.prepare("SELECT lookup_hash, subject_id FROM identities")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        ids.insert(
            LookupHash(blob32(r, 0)?),
            SubjectId::from_bytes(blob16(r, 1)?),
        );
    }
    let mut st =
        conn.prepare("SELECT subject_id, purpose_id FROM consent_state WHERE status = 'given'")?;
    let mut rows = st.query([])?;
    let mut granted: HashMap<SubjectId, PurposeSet> = HashMap::new();
    while let Some(r) = rows.next()? {
        let purpose: String = r.get(1)?;
        let bit = PurposeId::parse(&purpose)
            .ok()
            .and_then(|p| shared.bits.get(&p).copied());
        // A purpose no longer configured grants nothing (fail closed).
        if let Some(bit) = bit {
            granted
                .entry(SubjectId::from_bytes(blob16(r, 0)?))
                .or_default()
                .insert(bit);
        }
    }
    for (s, g) in granted {
        shared.index.set(s, g);
    }
    Ok(())
}

pub(crate) fn blob16(r: &rusqlite::Row<'_>, i: usize) -> Result<[u8; 16], StoreError> {
    let v: Vec<u8> = r.get(i)?;
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("column {i}: expected 16 bytes")))
}

pub(crate) fn blob32(r: &rusqlite::Row<'_>, i: usize) -> Result<[u8; 32], StoreError> {
    let v: Vec<u8> = r.get(i)?;
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("column {i}: expected 32 bytes")))
}

#[async_trait]
impl Store for SqliteStore {
    fn purpose_bits(&self) -> &HashMap<PurposeId, u8> {
        &self.shared.bits
    }

    fn index(&self) -> &ConsentIndex {
        &self.shared.index
    }

    fn resolve(&self, hash: &LookupHash) -> Option<SubjectId> {
        self.shared.ids.read().get(hash).copied()
    }

    async fn subject_key(&self, subject: SubjectId) -> Result<Option<SubjectKey>, StoreError> {
        if let Some(k) = self.shared.keys.read().get(&subject) {
            return Ok(Some(k.clone()));
        }
        let shared = self.shared.clone();
        let key = self
            .read(move |c| read::subject_key(c, &shared.master, subject))
            .await?;
        if let Some(k) = &key {
            self.shared.keys.write().insert(subject, k.clone());
        }
        Ok(key)
    }

    async fn apply_consent(&self, cmd: ConsentCommand) -> Result<ConsentOutcome, StoreError> {
        let mut out = self
            .submit(|tx| writer::Job::Consent {
                cmds: vec![cmd],
                reply: tx,
            })
            .await?;
        out.pop()
            .ok_or_else(|| StoreError::Database("writer returned no outcome".into()))
    }

    async fn apply_consents_atomically(
        &self,
        cmds: Vec<ConsentCommand>,
    ) -> Result<Vec<ConsentOutcome>, StoreError> {
        self.submit(|tx| writer::Job::Consent { cmds, reply: tx })
            .await
    }

    async fn ingest(&self, rows: Vec<IngestRow>) -> Result<Vec<RowOutcome>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(|tx| writer::Job::Ingest { rows, reply: tx })
            .await
    }

    async fn consent_state(&self, subject: SubjectId) -> Result<Vec<StateRow>, StoreError> {
        self.read(move |c| read::consent_state(c, subject)).await
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

    async fn sweep(&self) -> Result<(), StoreError> {
        self.submit(|tx| writer::Job::Sweep { reply: tx }).await
    }

    async fn events_page(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |c| read::events_page(c, after, limit)).await
    }

    async fn retention(
        &self,
        now_ms: i64,
        retention_days: &HashMap<PurposeId, u32>,
    ) -> Result<RetentionReport, StoreError> {
        let tiers = crate::retention::tiers(now_ms, retention_days, &self.shared.bits);
        let features = self
            .shared
            .insights
            .as_ref()
            .map(|i| crate::retention::feature_cutoff(now_ms, retention_days, &i.purpose));
        self.submit(|tx| writer::Job::Retention {
            tiers,
            features,
            reply: tx,
        })
        .await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.read(read::stats).await
    }

    fn features(&self) -> &FeatureIndex {
        &self.shared.features
    }

    async fn refresh_features(&self) -> Result<(), StoreError> {
        // The writer thread is the only writer and updates the index itself.
        Ok(())
    }

    async fn upsert_advertiser(&self, a: Advertiser) -> Result<(), StoreError> {
        self.submit(|tx| writer::Job::Advertiser {
            a,
            mode: PutMode::Upsert,
            reply: tx,
        })
        .await
    }

    async fn create_advertiser(&self, a: Advertiser) -> Result<(), StoreError> {
        self.submit(|tx| writer::Job::Advertiser {
            a,
            mode: PutMode::Create,
            reply: tx,
        })
        .await
    }

    async fn replace_advertiser(
        &self,
        a: Advertiser,
        expected_updated_ms: i64,
    ) -> Result<(), StoreError> {
        self.submit(|tx| writer::Job::Advertiser {
            a,
            mode: PutMode::Replace(expected_updated_ms),
            reply: tx,
        })
        .await
    }

    async fn advertiser(&self, id: &str) -> Result<Option<Advertiser>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| insights::advertiser(c, &id)).await
    }

    async fn advertiser_by_key(
        &self,
        key_hash: &[u8; 32],
    ) -> Result<Option<Advertiser>, StoreError> {
        let key = *key_hash;
        self.read(move |c| insights::advertiser_by_key(c, &key))
            .await
    }

    async fn advertisers(&self) -> Result<Vec<Advertiser>, StoreError> {
        self.read(insights::advertisers).await
    }

    async fn record_report(&self, r: NewReport) -> Result<ReportRecord, StoreError> {
        self.submit(|tx| writer::Job::Report { r, reply: tx }).await
    }

    async fn reports(
        &self,
        advertiser: Option<&str>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ReportRecord>, StoreError> {
        let advertiser = advertiser.map(str::to_owned);
        self.read(move |c| insights::reports(c, advertiser.as_deref(), after_id, limit))
            .await
    }

    async fn report(&self, id: i64) -> Result<Option<ReportRecord>, StoreError> {
        self.read(move |c| insights::report(c, id)).await
    }

    async fn spent(&self, advertiser: &str, period: &str) -> Result<Spend, StoreError> {
        let (advertiser, period) = (advertiser.to_owned(), period.to_owned());
        self.read(move |c| insights::spent(c, &advertiser, &period))
            .await
    }

    async fn subject_reports(&self, subject: SubjectId) -> Result<Vec<ReportRecord>, StoreError> {
        self.read(move |c| insights::subject_reports(c, subject))
            .await
    }

    async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .jobs
            .send(writer::Job::Shutdown { reply: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        let handle = self.writer_thread.lock().take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}
