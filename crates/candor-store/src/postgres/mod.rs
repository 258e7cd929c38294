//! The scale-out store: PostgreSQL, shared by several stateless Candor nodes.
//!
//! Same observable behaviour as the SQLite store (the conformance suite in
//! `tests/store` runs against both), with the database as the serialization point
//! instead of a single writer thread. What a write does is decided in `crate::plan`;
//! this module carries it out:
//!
//! - [`writer`]: one task per node groups queued jobs (group commit): consent jobs of a
//!   group share one transaction, ingest jobs another.
//! - [`consent`]: consent changes. The ledger stays one chain across nodes because every
//!   consent transaction first locks the `ledger_head` row (`FOR UPDATE`) and computes
//!   `seq`/`prev_hash` from it.
//! - [`ingest`]: event batches, re-checked against the consent state *in the database*
//!   under a shared advisory lock that withdrawals take exclusively, so no event carrying
//!   a withdrawn purpose can commit after the withdrawal, whichever node took it.
//!   De-duplication is a unique key in the database, so it holds across nodes.
//! - [`derive`]: insight features, derived from the event log after commit by one node
//!   at a time, with a persisted watermark; [`features`] writes them and keeps each
//!   node's feature index in step with every node's writes.
//! - [`listen`]: keeps this node's caches (consent index, identity map) in step with
//!   changes committed by any node (`LISTEN candor_changes` + periodic full resync).
//! - [`erase`]: erasure in one transaction, then every node's caches forget the subject.
//! - [`sweep`], [`retention`], [`partitions`]: background rewriting of withdrawn
//!   purposes, retention (dropping whole day partitions), on-demand day partitions.
//! - [`schema`]: versioned migrations and the Citus distribution table.
//! - [`read`] and [`advertisers`]: queries on the pool; advertisers and budget charges.
//!
//! **Architecture invariant:** `synchronous_commit` is forced `on` for every session
//! this store opens, so a method that returns `Ok` has committed durably.

mod advertisers;
mod cache;
mod connect;
mod consent;
mod derive;
mod email;
mod erase;
mod features;
mod fields;
mod ingest;
mod keys;
mod listen;
mod loyalty;
mod partitions;
mod person;
mod prompt;
pub mod provision;
mod read;
mod retention;
pub mod schema;
mod sql;
mod sweep;
mod writer;

use crate::caches::Caches;
use crate::engine::{Backend, Engine};
use crate::front::Front;
use crate::types::*;
use crate::{InsightsOptions, PromptCount, StoreError, StoredVariant};
use async_trait::async_trait;
use candor_core::crypto::{MasterKey, SubjectKey};
use candor_core::idhash::IdMap;
use candor_core::ledger::RingKey;
use candor_core::ledger::{Head, SealedEntry};
use candor_core::receipt::ReceiptSigner;
use candor_core::{PurposeId, SubjectId, UnixMillis};
use deadpool_postgres::Pool;
use ed25519_dalek::VerifyingKey;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
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
    /// How often this node derives insight features from the event log (when no other
    /// node is doing it).
    pub derive_interval: Duration,
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
            derive_interval: Duration::from_secs(1),
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
    /// Taken shared by every ingest transaction and by the deriver, exclusively by
    /// consent transactions that may withdraw (see `ingest`) and by the deriver for
    /// the moment it reads how far event ids have gone (see `derive`).
    pub const GATE: i32 = 2;
    /// Creating and dropping partitions.
    pub const PARTITIONS: i32 = 3;
    /// One sweeper at a time across nodes (sweeping twice is safe, just wasted work).
    pub const SWEEP: i32 = 4;
    /// Taken shared by every report transaction before it takes a report id, and
    /// exclusively by a listing across advertisers (see `advertisers::reports`).
    pub const REPORTS: i32 = 5;
    /// One feature deriver at a time across nodes.
    pub const DERIVE: i32 = 6;
    /// Taken exclusively by a report transaction charged against the operator's cap
    /// across advertisers, so two advertisers' charges cannot both fit a cap that has
    /// room for one (each advertiser's own row lock orders only its own charges).
    pub const TOTAL_BUDGET: i32 = 7;

    /// How an advisory lock is held.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Hold {
        Exclusive,
        Shared,
    }

    /// Takes advisory lock `key` (under [`CLASS`]) until the transaction ends.
    pub async fn take<C: deadpool_postgres::GenericClient>(
        c: &C,
        key: i32,
        hold: Hold,
    ) -> Result<(), tokio_postgres::Error> {
        let sql = match hold {
            Hold::Exclusive => "SELECT pg_advisory_xact_lock($1, $2)",
            Hold::Shared => "SELECT pg_advisory_xact_lock_shared($1, $2)",
        };
        super::sql::execute(c, sql, &[&CLASS, &key])
            .await
            .map(|_| ())
    }
}

/// State shared by the store handle and its background tasks.
pub(crate) struct Shared {
    pub caches: Arc<Caches>,
    pub pool: Pool,
    pub partitions: partitions::Known,
    /// Wakes the background sweeper after a withdrawal on this node.
    pub sweep_wake: tokio::sync::Notify,
    /// Orders this node's feature index updates (see `features`).
    pub feature_sync: tokio::sync::Mutex<features::FeatureSync>,
    /// Insight subject numbers known to be committed (they never change once assigned).
    pub dense: Mutex<IdMap<SubjectId, u32>>,
    /// The sweeper, shared by the background task and `Store::sweep`.
    pub sweeper: tokio::sync::Mutex<sweep::Sweeper>,
}

impl std::ops::Deref for Shared {
    type Target = Caches;
    fn deref(&self) -> &Caches {
        &self.caches
    }
}

/// The PostgreSQL store. Several instances (one per Candor node) may share one
/// database; see the module documentation for how they stay consistent.
pub type PostgresStore = Engine<Postgres>;

/// The PostgreSQL backend: the pool, the caches and the tasks beside the writer.
pub struct Postgres {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Engine<Postgres> {
    /// Connects to `url` (`postgres://user@host:port/dbname`), migrates the schema,
    /// assigns stable bits to `purposes`, loads the caches and starts the writer,
    /// the LISTEN task, the sweeper and the feature deriver, with default
    /// [`PostgresOptions`]. Must be called inside a Tokio runtime.
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
        keys::setup(
            &mut client,
            &master,
            &signer.verifying_key(),
            crate::now_ms(),
        )
        .await?;
        let (insights, features) = crate::features::resolve(options.insights.take(), &bits)?;
        let shared = Arc::new(Shared {
            caches: Arc::new(Caches::new(bits, master, signer, insights, features)),
            pool,
            partitions: partitions::Known::default(),
            sweep_wake: tokio::sync::Notify::new(),
            feature_sync: tokio::sync::Mutex::new(features::FeatureSync::default()),
            dense: Mutex::new(IdMap::default()),
            sweeper: tokio::sync::Mutex::new(sweep::Sweeper::default()),
        });
        cache::full_resync(&shared, &client).await?;
        drop(client);
        // After the consent state: apply what the event log holds past the features'
        // watermark, then load every feature row of subjects that grant the insights
        // purpose, with the version check of any refresh.
        derive::catch_up(&shared).await?;
        features::refresh(&shared).await?;
        let (stop, stop_rx) = watch::channel(false);
        let (front, rx) = Front::new();
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
                options.sweep_interval,
                stop_rx.clone(),
            )),
            tokio::spawn(derive::background(
                shared.clone(),
                options.derive_interval,
                stop_rx,
            )),
        ];
        let backend = Postgres {
            shared,
            stop,
            tasks: Mutex::new(tasks),
        };
        Ok(Engine::new(backend, front))
    }
}

impl Postgres {
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.shared.pool.get().await?)
    }
}

#[async_trait]
impl Backend for Postgres {
    fn caches(&self) -> &Caches {
        &self.shared.caches
    }

    async fn load_key(&self, subject: SubjectId) -> Result<Option<SubjectKey>, StoreError> {
        read::subject_key(&self.client().await?, &self.shared.master, subject).await
    }

    async fn consent_state(&self, subject: SubjectId) -> Result<Vec<StateRow>, StoreError> {
        read::consent_state(&self.client().await?, subject).await
    }

    async fn fields(&self, subject: SubjectId) -> Result<Vec<crate::seal::FieldRow>, StoreError> {
        read::all(
            &self.client().await?,
            crate::statements::FIELDS,
            &[&&subject.as_bytes()[..]],
            crate::rows::field_row,
        )
        .await
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

    async fn events_page(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        read::events_page(&mut self.client().await?, after, limit, None).await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        read::stats(&self.client().await?).await
    }

    async fn advertiser(&self, id: &str) -> Result<Option<Advertiser>, StoreError> {
        advertisers::advertiser(&self.client().await?, id).await
    }

    async fn advertiser_by_key(
        &self,
        key_hash: &[u8; 32],
    ) -> Result<Option<Advertiser>, StoreError> {
        advertisers::advertiser_by_key(&self.client().await?, key_hash).await
    }

    async fn advertisers(&self) -> Result<Vec<Advertiser>, StoreError> {
        advertisers::advertisers(&self.client().await?).await
    }

    async fn reports(
        &self,
        advertiser: Option<&str>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ReportRecord>, StoreError> {
        advertisers::reports(&self.shared, advertiser, after_id, limit).await
    }

    async fn report(&self, id: i64) -> Result<Option<ReportRecord>, StoreError> {
        advertisers::report(&self.client().await?, id).await
    }

    async fn spent(&self, scope: SpendScope) -> Result<Spend, StoreError> {
        advertisers::spent(&self.client().await?, &scope).await
    }

    async fn subject_reports(&self, subject: SubjectId) -> Result<Vec<ReportRecord>, StoreError> {
        advertisers::subject_reports(&self.client().await?, subject).await
    }

    async fn add_prompt_counts(&self, counts: Vec<PromptCount>) -> Result<(), StoreError> {
        prompt::add_counts(self.client().await?, counts).await
    }

    async fn prompt_counts(
        &self,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<PromptCount>, StoreError> {
        prompt::counts(&self.client().await?, from_day, to_day).await
    }

    async fn save_prompt_variant(&self, v: StoredVariant) -> Result<(), StoreError> {
        prompt::save_variant(&self.client().await?, v).await
    }

    async fn prompt_variants(&self) -> Result<Vec<StoredVariant>, StoreError> {
        prompt::variants(&self.client().await?).await
    }

    async fn signing_keys(&self) -> Result<Vec<RingKey>, StoreError> {
        keys::ring(&self.client().await?).await
    }

    async fn record_admin_action(&self, a: AdminAction) -> Result<(), StoreError> {
        keys::record_admin_action(&self.client().await?, &a).await
    }

    async fn subject_events_page(
        &self,
        subject: SubjectId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        read::events_page(&mut self.client().await?, after, limit, Some(subject)).await
    }

    async fn sealed_identities(
        &self,
        subject: SubjectId,
    ) -> Result<Vec<crate::seal::SealedIdentity>, StoreError> {
        let id = &subject.as_bytes()[..];
        read::all(
            &self.client().await?,
            crate::statements::IDENTITIES_OF,
            &[&id],
            crate::rows::sealed_identity,
        )
        .await
    }

    async fn record_access(&self, a: Access) -> Result<(), StoreError> {
        person::record_access(&self.client().await?, &a).await
    }

    async fn access_log(
        &self,
        subject: SubjectId,
        limit: usize,
    ) -> Result<Vec<Access>, StoreError> {
        person::access_log(&self.client().await?, subject, limit).await
    }

    async fn open_request(
        &self,
        subject: SubjectId,
        kind: RequestKind,
        channel: &str,
        at: UnixMillis,
    ) -> Result<i64, StoreError> {
        person::open_request(&self.client().await?, subject, kind, channel, at).await
    }

    async fn close_request(
        &self,
        id: i64,
        at: UnixMillis,
        outcome: &str,
    ) -> Result<(), StoreError> {
        person::close_request(&self.client().await?, id, at, outcome).await
    }

    async fn requests(&self, after: i64, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        person::requests(&self.client().await?, after, limit).await
    }

    async fn spend_link(
        &self,
        nonce: [u8; 16],
        expires: UnixMillis,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        person::spend_link(&self.client().await?, &nonce, expires, now).await
    }

    async fn admin_actions(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AdminActionRecord>, StoreError> {
        keys::admin_actions(&self.client().await?, after, limit).await
    }

    async fn claim_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        keys::claim_meta(&self.client().await?, key, value).await
    }

    async fn rotate_signing_key(&self, next: VerifyingKey) -> Result<RingKey, StoreError> {
        keys::rotate(
            self.client().await?,
            &self.shared.signer,
            next,
            crate::now_ms(),
        )
        .await
    }

    async fn fields_after(
        &self,
        after: (SubjectId, String),
        limit: usize,
    ) -> Result<Vec<(SubjectId, crate::seal::FieldRow)>, StoreError> {
        read::all(
            &self.client().await?,
            crate::statements::FIELDS_AFTER,
            &[&&after.0.as_bytes()[..], &after.1, &(limit as i64)],
            crate::rows::subject_field_row,
        )
        .await
    }

    async fn settled_event_id(&self, after: i64) -> Result<i64, StoreError> {
        if derive::handed_out(&self.shared).await? <= after {
            return Ok(after);
        }
        derive::settled(&self.shared).await
    }

    async fn loyalty_account(
        &self,
        subject: SubjectId,
    ) -> Result<Option<crate::loyalty::Account>, StoreError> {
        loyalty::side::account(&self.client().await?, subject).await
    }

    async fn loyalty_history(
        &self,
        subject: SubjectId,
        before: i64,
        limit: usize,
    ) -> Result<Vec<crate::loyalty::Txn>, StoreError> {
        loyalty::side::history(&self.client().await?, subject, before, limit).await
    }

    async fn loyalty_totals(&self) -> Result<crate::loyalty::ProgramTotals, StoreError> {
        loyalty::side::totals(&self.client().await?).await
    }

    async fn accounts_with_points(
        &self,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Result<Vec<SubjectId>, StoreError> {
        loyalty::side::with_points(&self.client().await?, after, limit).await
    }

    async fn reward_stocks(&self) -> Result<Vec<crate::loyalty::RewardStock>, StoreError> {
        loyalty::side::stocks(&self.client().await?).await
    }

    async fn set_reward_stock(
        &self,
        reward: String,
        stock: Option<i64>,
        only_if_absent: bool,
    ) -> Result<(), StoreError> {
        let at = crate::now_ms();
        crate::retry::retrying("reward stock", || async {
            let mut c = self.client().await?;
            loyalty::side::set_stock(&mut c, &reward, stock, only_if_absent, at).await
        })
        .await
    }

    async fn segments(&self) -> Result<Vec<crate::loyalty::SegmentRecord>, StoreError> {
        loyalty::side::segments(&self.client().await?).await
    }

    async fn put_segment(&self, s: crate::loyalty::SegmentRecord) -> Result<(), StoreError> {
        loyalty::side::put_segment(&self.client().await?, &s).await
    }

    async fn delete_segment(&self, name: String) -> Result<bool, StoreError> {
        loyalty::side::delete_segment(&mut self.client().await?, &name).await
    }

    async fn record_segment_sizes(
        &self,
        day: i32,
        sizes: Vec<(String, i64)>,
    ) -> Result<(), StoreError> {
        crate::retry::retrying("segment sizes", || async {
            loyalty::side::put_sizes(&mut self.client().await?, day, &sizes).await
        })
        .await
    }

    async fn segment_sizes(
        &self,
        from_day: i32,
    ) -> Result<Vec<crate::loyalty::SegmentSize>, StoreError> {
        loyalty::side::sizes(&self.client().await?, from_day).await
    }

    async fn stop(&self) {
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
    use crate::features::{IndexOp, Insights};
    use candor_core::idhash::IdSet;
    use candor_core::PurposeSet;
    use candor_insights::FeatureIndex;

    /// Caches with insights on (bit 0); only the cache logic is exercised.
    fn caches() -> Caches {
        Caches::new(
            std::collections::HashMap::new(),
            MasterKey::from_bytes(&[1; 32]),
            Arc::new(ReceiptSigner::from_bytes(&[2; 32])),
            Some(Insights {
                bit: 0,
                purpose: PurposeId::parse("insights").unwrap(),
            }),
            Arc::new(FeatureIndex::new(candor_insights::Schema::default()).unwrap()),
        )
    }

    #[tokio::test]
    async fn a_stale_snapshot_cannot_undo_a_newer_commit() {
        let sh = caches();
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
        let sh = caches();
        let s = SubjectId::random();
        let op = |count| IndexOp::Activity {
            subject: s,
            dense: 1,
            feature: games(count),
        };
        let mut retry = IdSet::default();
        // Granted (bit 0) at seq 5; features read as of consent version 5 apply.
        sh.publish_granted(s, PurposeSet::single(0), 5);
        sh.publish_features([(op(2), 5)], &mut retry);
        assert_eq!(sh.features.features_of(&s).len(), 1);
        // A withdrawal at seq 6 (deleting the rows) removes the subject...
        sh.publish_granted(s, PurposeSet::EMPTY, 6);
        assert!(sh.features.features_of(&s).is_empty());
        // ...and an update read before it (version 5), published after it, is not
        // applied: the subject is re-read at the next refresh instead.
        sh.publish_features([(op(3), 5)], &mut retry);
        assert!(sh.features.features_of(&s).is_empty());
        assert!(retry.contains(&s));
        // After a new grant (seq 7), features read as of it apply, and a late copy of
        // the old withdrawal (a resync snapshot from before the grant) removes nothing.
        sh.publish_granted(s, PurposeSet::single(0), 7);
        sh.publish_features([(op(1), 7)], &mut retry);
        sh.publish_granted(s, PurposeSet::EMPTY, 6);
        assert_eq!(sh.features.features_of(&s)[0].count, 1);
    }
}
