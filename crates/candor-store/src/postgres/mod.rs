//! The scale-out store: PostgreSQL, shared by several stateless Candor nodes.
//!
//! Same observable behaviour as the SQLite store (the conformance suite in
//! `tests/store` runs against both), with the database as the serialization point
//! instead of a single writer thread:
//!
//! - [`writer`]: one task per node groups queued jobs (group commit). Consent jobs of a
//!   group share one transaction, each in a savepoint; ingest jobs share another, with
//!   one multi-row `INSERT ... SELECT FROM unnest(...)` for all their rows.
//! - [`consent`]: consent changes. The ledger stays one chain across nodes because every
//!   consent transaction first locks the `ledger_head` row (`FOR UPDATE`) and computes
//!   `seq`/`prev_hash` from it.
//! - [`ingest`]: event batches, re-checked against the consent state *in the database*
//!   under a shared advisory lock that withdrawals take exclusively, so no event carrying
//!   a withdrawn purpose can commit after the withdrawal, whichever node took it.
//!   De-duplication is a unique key in the database, so it holds across nodes.
//! - [`listen`]: keeps this node's caches (consent index, identity map) in step with
//!   changes committed by any node (`LISTEN candor_changes` + periodic full resync).
//! - [`sweep`], [`retention`], [`partitions`]: background rewriting of withdrawn
//!   purposes, retention (dropping whole day partitions), on-demand day partitions.
//! - [`schema`]: versioned migrations and the Citus distribution table.
//! - [`read`]: queries on the pool.
//! - [`insights`]: feature rows (written by ingest groups), the feature index kept in
//!   step with every node's writes, advertisers and budget charges.
//!
//! **Architecture invariant:** `synchronous_commit` is forced `on` for every session
//! this store opens, so a method that returns `Ok` has committed durably.

mod cache;
mod connect;
mod consent;
mod ingest;
mod insights;
mod listen;
mod partitions;
mod read;
mod retention;
pub mod schema;
mod sql;
mod sweep;
mod writer;

use crate::insights::{IndexOp, Insights, PutMode};
use crate::types::*;
use crate::{InsightsOptions, Store, StoreError};
use async_trait::async_trait;
use candor_core::crypto::{LookupHash, MasterKey, SubjectKey};
use candor_core::idhash::{IdMap, IdSet};
use candor_core::index::ConsentIndex;
use candor_core::ledger::{Head, SealedEntry};
use candor_core::receipt::ReceiptSigner;
use candor_core::{PurposeId, PurposeSet, SubjectId};
use candor_insights::FeatureIndex;
use deadpool_postgres::Pool;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub(crate) use connect::describe_error;
pub use schema::SUPPORTED_VERSION;

/// Tuning knobs, with defaults fit for a small deployment.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections in the pool (reads, the writer, the sweeper). The LISTEN connection
    /// is separate.
    pub pool_size: usize,
    /// `statement_timeout` for every session: a stuck statement fails instead of
    /// holding locks (and the ledger) forever.
    pub statement_timeout: Duration,
    /// How long to wait for a connection to open.
    pub connect_timeout: Duration,
    /// Full cache resync period: the fallback for a missed notification.
    pub resync_interval: Duration,
    /// How often the background sweeper looks for withdrawals to apply (it is also
    /// woken at once by withdrawals taken on this node).
    pub sweep_interval: Duration,
    /// Audience insights (off when `None`).
    pub insights: Option<InsightsOptions>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            resync_interval: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(5),
            insights: None,
        }
    }
}

/// Advisory lock keys, all under one class id so they cannot collide with another
/// application's locks in the same database.
pub(crate) mod locks {
    /// "CAND" in ASCII.
    pub const CLASS: i32 = 0x4341_4E44;
    /// Migrations and purpose bit assignment at open.
    pub const MIGRATE: i32 = 1;
    /// Taken shared by every ingest transaction and exclusively by consent
    /// transactions that may withdraw (see `ingest`).
    pub const GATE: i32 = 2;
    /// Creating and dropping partitions.
    pub const PARTITIONS: i32 = 3;
    /// One sweeper at a time across nodes (sweeping twice is safe, just wasted work).
    pub const SWEEP: i32 = 4;
    /// Taken shared by every report transaction before it takes a report id, and
    /// exclusively by a listing across advertisers (see `insights::reports`).
    pub const REPORTS: i32 = 5;
}

/// State shared by the store handle and its background tasks.
pub(crate) struct Shared {
    pub index: ConsentIndex,
    /// The version of each subject's index entry: the ledger sequence number of the
    /// latest consent change it reflects. Ledger numbers are global and increase across
    /// nodes (the head is locked), so an update carrying an older version than the one
    /// published is stale and dropped. Without this, a resync that read its snapshot
    /// before a local commit, and published after it, would undo that commit's grant.
    versions: Mutex<IdMap<SubjectId, u64>>,
    pub ids: RwLock<IdMap<LookupHash, SubjectId>>,
    pub keys: RwLock<IdMap<SubjectId, SubjectKey>>,
    pub bits: HashMap<PurposeId, u8>,
    pub master: MasterKey,
    pub signer: Arc<ReceiptSigner>,
    pub pool: Pool,
    pub partitions: partitions::Known,
    /// Wakes the background sweeper after a withdrawal on this node.
    pub sweep_wake: tokio::sync::Notify,
    /// The insights purpose, when insights are configured.
    pub insights: Option<Insights>,
    pub features: Arc<FeatureIndex>,
    /// Orders this node's feature index updates (see `insights`).
    pub feature_sync: tokio::sync::Mutex<insights::FeatureSync>,
    /// Insight subject numbers known to be committed (they never change once assigned),
    /// so a featured ingest group needs no round trip to find them.
    pub dense: Mutex<IdMap<SubjectId, u32>>,
}

impl Shared {
    /// Publishes a subject's granted set as of `version`, unless a newer one is already
    /// published. A newer set without the insights purpose also drops the subject from
    /// the feature index (its rows were deleted in the same transaction), whichever node
    /// took the withdrawal.
    pub fn publish_granted(&self, s: SubjectId, granted: PurposeSet, version: u64) {
        let mut versions = self.versions.lock();
        let known = versions.entry(s).or_insert(0);
        if version >= *known {
            let newer = version > *known;
            *known = version;
            self.index.set(s, granted);
            if let Some(ins) = &self.insights {
                if newer && !granted.contains(ins.bit) {
                    self.features.remove_subject(&s);
                }
            }
        }
    }

    /// Applies feature index updates, each read together with its subject's consent
    /// version; an update older than the consent change this node has published is not
    /// applied (the change may be a withdrawal that already removed the subject) and the
    /// subject goes to `retry`, to be re-read whole. Under the same lock as
    /// [`Shared::publish_granted`], so the two cannot interleave.
    pub fn publish_features(
        &self,
        ops: impl IntoIterator<Item = (IndexOp, u64)>,
        retry: &mut IdSet<SubjectId>,
        raise: bool,
    ) {
        let versions = self.versions.lock();
        for (op, read) in ops {
            let s = op.subject();
            if versions.get(&s).copied().unwrap_or(0) <= read {
                op.apply_as(&self.features, raise);
            } else {
                retry.insert(s);
            }
        }
    }

    /// Publishes a full snapshot. Subjects absent from it have no consent rows at all,
    /// so their entries (all newer than the snapshot) are kept.
    pub fn publish_all_granted(&self, all: IdMap<SubjectId, (PurposeSet, u64)>) {
        for (s, (g, v)) in all {
            self.publish_granted(s, g, v);
        }
    }

    /// The granted set from a subject's `given` purposes (unconfigured ones grant
    /// nothing: fail closed).
    pub fn granted_of<'a>(&self, given: impl IntoIterator<Item = &'a str>) -> PurposeSet {
        let mut set = PurposeSet::EMPTY;
        for p in given {
            if let Some(bit) = PurposeId::parse(p).ok().and_then(|p| self.bits.get(&p)) {
                set.insert(*bit);
            }
        }
        set
    }
}

/// The PostgreSQL [`Store`]. Several instances (one per Candor node) may share one
/// database; see the module documentation for how they stay consistent.
pub struct PostgresStore {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<writer::Job>,
    sweeper: Arc<tokio::sync::Mutex<sweep::Sweeper>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/dbname`), migrates the schema,
    /// assigns stable bits to `purposes`, loads the caches and starts the writer,
    /// the LISTEN task and the sweeper, with default [`PostgresOptions`]. Must be
    /// called inside a Tokio runtime.
    pub async fn open(
        url: &str,
        purposes: &[PurposeId],
        master: MasterKey,
        signer: Arc<ReceiptSigner>,
    ) -> Result<Self, StoreError> {
        Self::open_with(url, purposes, master, signer, PostgresOptions::default()).await
    }

    /// [`PostgresStore::open`] with explicit options.
    pub async fn open_with(
        url: &str,
        purposes: &[PurposeId],
        master: MasterKey,
        signer: Arc<ReceiptSigner>,
        mut options: PostgresOptions,
    ) -> Result<Self, StoreError> {
        let config = connect::config(url, &options)?;
        let pool = connect::pool(&config, &options)?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| connect::unreachable(&config, e))?;
        let bits = schema::migrate(&mut client, purposes).await?;
        let (insights, features) = crate::insights::resolve(options.insights.take(), &bits)?;
        let shared = Arc::new(Shared {
            index: ConsentIndex::new(),
            versions: Mutex::new(IdMap::default()),
            ids: RwLock::new(IdMap::default()),
            keys: RwLock::new(IdMap::default()),
            bits,
            master,
            signer,
            pool,
            partitions: partitions::Known::default(),
            sweep_wake: tokio::sync::Notify::new(),
            insights,
            features,
            feature_sync: tokio::sync::Mutex::new(insights::FeatureSync::default()),
            dense: Mutex::new(IdMap::default()),
        });
        cache::full_resync(&shared, &client).await?;
        drop(client);
        // After the consent state: the load reads every feature row of subjects that
        // grant the insights purpose, with the version check of any refresh.
        insights::refresh(&shared).await?;
        let (stop, stop_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel(4096);
        let sweeper = Arc::new(tokio::sync::Mutex::new(sweep::Sweeper::default()));
        let tasks = vec![
            tokio::spawn(writer::run(shared.clone(), rx)),
            tokio::spawn(listen::run(
                shared.clone(),
                config,
                options.resync_interval,
                stop_rx.clone(),
            )),
            tokio::spawn(sweep::background(
                shared.clone(),
                sweeper.clone(),
                options.sweep_interval,
                stop_rx,
            )),
        ];
        Ok(Self {
            shared,
            jobs: tx,
            sweeper,
            stop,
            tasks: Mutex::new(tasks),
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

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.shared.pool.get().await?)
    }
}

#[async_trait]
impl Store for PostgresStore {
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
        let client = self.client().await?;
        let key = read::subject_key(&client, &self.shared.master, subject).await?;
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
        read::consent_state(&self.client().await?, subject).await
    }

    async fn consent_history(&self, subject: SubjectId) -> Result<Vec<SealedEntry>, StoreError> {
        read::history(&self.client().await?, subject).await
    }

    async fn ledger_page(&self, after: u64, limit: usize) -> Result<Vec<SealedEntry>, StoreError> {
        read::ledger_page(&self.client().await?, after, limit).await
    }

    async fn ledger_head(&self) -> Result<Option<Head>, StoreError> {
        read::head(&self.client().await?).await
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        let mut sweeper = self.sweeper.lock().await;
        while sweeper.step(&self.shared).await? {}
        Ok(())
    }

    async fn events_page(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut client = self.client().await?;
        read::events_page(&mut client, after, limit).await
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
        writer::retrying("retention", || {
            retention::run(&self.shared, now_ms, &tiers, features)
        })
        .await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        read::stats(&self.client().await?).await
    }

    fn features(&self) -> &FeatureIndex {
        &self.shared.features
    }

    async fn refresh_features(&self) -> Result<(), StoreError> {
        insights::refresh(&self.shared).await
    }

    async fn upsert_advertiser(&self, a: Advertiser) -> Result<(), StoreError> {
        insights::put_advertiser(&self.client().await?, &a, PutMode::Upsert).await
    }

    async fn create_advertiser(&self, a: Advertiser) -> Result<(), StoreError> {
        insights::put_advertiser(&self.client().await?, &a, PutMode::Create).await
    }

    async fn replace_advertiser(
        &self,
        a: Advertiser,
        expected_updated_ms: i64,
    ) -> Result<(), StoreError> {
        let mode = PutMode::Replace(expected_updated_ms);
        insights::put_advertiser(&self.client().await?, &a, mode).await
    }

    async fn advertiser(&self, id: &str) -> Result<Option<Advertiser>, StoreError> {
        insights::advertiser(&self.client().await?, id).await
    }

    async fn advertiser_by_key(
        &self,
        key_hash: &[u8; 32],
    ) -> Result<Option<Advertiser>, StoreError> {
        insights::advertiser_by_key(&self.client().await?, key_hash).await
    }

    async fn advertisers(&self) -> Result<Vec<Advertiser>, StoreError> {
        insights::advertisers(&self.client().await?).await
    }

    async fn record_report(&self, r: NewReport) -> Result<ReportRecord, StoreError> {
        insights::record_report(&self.shared, &r).await
    }

    async fn reports(
        &self,
        advertiser: Option<&str>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ReportRecord>, StoreError> {
        insights::reports(&self.shared, advertiser, after_id, limit).await
    }

    async fn report(&self, id: i64) -> Result<Option<ReportRecord>, StoreError> {
        insights::report(&self.client().await?, id).await
    }

    async fn spent(&self, advertiser: &str, period: &str) -> Result<Spend, StoreError> {
        insights::spent(&self.client().await?, advertiser, period).await
    }

    async fn subject_reports(&self, subject: SubjectId) -> Result<Vec<ReportRecord>, StoreError> {
        insights::subject_reports(&self.client().await?, subject).await
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
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
        self.shared.pool.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Shared` with a pool that never connects (only the cache logic is exercised).
    fn shared() -> Shared {
        let options = PostgresOptions::default();
        let config = connect::config("postgres://nobody@127.0.0.1:1/none", &options).unwrap();
        Shared {
            index: ConsentIndex::new(),
            versions: Mutex::new(IdMap::default()),
            ids: RwLock::new(IdMap::default()),
            keys: RwLock::new(IdMap::default()),
            bits: HashMap::new(),
            master: MasterKey::from_bytes(&[1; 32]),
            signer: Arc::new(ReceiptSigner::from_bytes(&[2; 32])),
            pool: connect::pool(&config, &options).unwrap(),
            partitions: partitions::Known::default(),
            sweep_wake: tokio::sync::Notify::new(),
            insights: Some(Insights {
                bit: 0,
                purpose: PurposeId::parse("insights").unwrap(),
            }),
            features: Arc::new(FeatureIndex::new(candor_insights::Schema::default()).unwrap()),
            feature_sync: tokio::sync::Mutex::new(insights::FeatureSync::default()),
            dense: Mutex::new(IdMap::default()),
        }
    }

    #[tokio::test]
    async fn a_stale_snapshot_cannot_undo_a_newer_commit() {
        let sh = shared();
        let s = SubjectId::random();
        // A resync read its snapshot (s: nothing granted, as of ledger seq 4)...
        let mut stale = IdMap::default();
        stale.insert(s, (PurposeSet::EMPTY, 4));
        // ...meanwhile this node committed a grant recorded at seq 5 and published it...
        sh.publish_granted(s, PurposeSet::from_bits(1), 5);
        // ...and only then does the resync publish: the grant must survive.
        sh.publish_all_granted(stale);
        assert_eq!(sh.index.granted(&s).bits(), 1);
        // A genuinely newer change (a withdrawal at seq 6, from another node) applies.
        sh.publish_granted(s, PurposeSet::EMPTY, 6);
        assert!(sh.index.granted(&s).is_empty());
    }

    fn games(count: u32) -> candor_insights::DailyFeature {
        candor_insights::DailyFeature {
            day: candor_insights::Day::from_days(20_000).unwrap(),
            kind: candor_insights::FeatureKind::AppUsed,
            category: candor_insights::Category::parse("games").unwrap(),
            count,
        }
    }

    #[tokio::test]
    async fn a_feature_update_cannot_outlive_a_newer_withdrawal() {
        let sh = shared();
        let s = SubjectId::random();
        let op = |count| IndexOp::Activity {
            subject: s,
            dense: 1,
            feature: games(count),
        };
        let mut retry = IdSet::default();
        // Granted (bit 0) at seq 5; features read as of consent version 5 apply.
        sh.publish_granted(s, PurposeSet::single(0), 5);
        sh.publish_features([(op(2), 5)], &mut retry, false);
        assert_eq!(sh.features.features_of(&s).len(), 1);
        // A withdrawal at seq 6 (deleting the rows) removes the subject...
        sh.publish_granted(s, PurposeSet::EMPTY, 6);
        assert!(sh.features.features_of(&s).is_empty());
        // ...and an update read before it (version 5), published after it, is not
        // applied: the subject is re-read at the next refresh instead.
        sh.publish_features([(op(3), 5)], &mut retry, false);
        assert!(sh.features.features_of(&s).is_empty());
        assert!(retry.contains(&s));
        // After a new grant (seq 7), features read as of it apply, and a late copy of
        // the old withdrawal (a resync snapshot from before the grant) removes nothing.
        sh.publish_granted(s, PurposeSet::single(0), 7);
        sh.publish_features([(op(1), 7)], &mut retry, false);
        sh.publish_granted(s, PurposeSet::EMPTY, 6);
        assert_eq!(sh.features.features_of(&s)[0].count, 1);
    }
}
