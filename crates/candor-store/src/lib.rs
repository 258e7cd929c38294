//! Candor's storage: the [`Store`] interface every backend implements, the embedded
//! SQLite backend ([`sqlite::SqliteStore`]) and the scale-out PostgreSQL backend
//! ([`postgres::PostgresStore`]), which several Candor nodes can share.
//!
//! A store is more than tables: it owns the *serialization point* of Candor. Consent
//! changes, ledger appends and event writes go through one ordered path (a writer
//! thread on SQLite, transactions with row locks on PostgreSQL), which is what lets
//! a withdrawal take effect "at once": an event batch committed after a withdrawal
//! is re-checked against the updated consent index inside the same ordered path.
//!
//! The store also owns the in-memory caches that must stay consistent with what is
//! committed: the consent index and the identity map (lookup hash → subject). They are
//! updated only after the transaction that changed them is durable.
//!
//! **Architecture invariant:** a method that returns `Ok` has committed durably
//! (`synchronous=FULL` on SQLite, `synchronous_commit=on` on PostgreSQL). Callers
//! acknowledge to clients only after that.
//!
//! The store also keeps audience insights (issue 5): per-subject daily features derived
//! from the event log after commit and mirrored into an in-memory
//! [`candor_insights::FeatureIndex`], advertisers, and the reports charged against their
//! privacy budgets (one transaction per charge, serialized per advertiser).
//!
//! Layout (`ARCHITECTURE.md` has the map): `lib.rs` (the trait) and `types.rs` (what
//! crosses it); [`plan`] (what a write means, decided once, no I/O); `engine.rs` (the
//! one `Store` implementation), `front.rs` (jobs and their queue), `seal.rs` (the sealing
//! stage), `caches.rs` (what is kept in memory and when it changes), `rows.rs` and
//! `statements.rs` (rows and SQL both backends share), `features.rs`,
//! `advertisers.rs`, `retry.rs`, `dedup.rs`, `prompt.rs` (the consent prompt's variants
//! and anonymous counts); then [`sqlite`] and [`postgres`], which only carry plans out
//! in their SQL.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod advertisers;
mod caches;
pub mod dedup;
pub mod email;
mod engine;
mod error;
mod features;
mod front;
pub mod loyalty;
pub mod plan;
pub mod postgres;
mod prompt;
mod retry;
mod rows;
pub mod seal;
pub mod sqlite;
mod statements;
mod types;

pub use engine::Engine;
pub use error::StoreError;
pub use features::InsightsOptions;
pub use prompt::{PromptCount, StoredVariant};
pub use types::*;

/// Milliseconds since the Unix epoch, for bookkeeping columns (`created_ms`).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

use async_trait::async_trait;
use candor_core::crypto::{LookupHash, SubjectKey};
use candor_core::field::FieldName;
use candor_core::index::ConsentIndex;
use candor_core::ledger::{Head, KeyRing, RingKey, SealedEntry};
use candor_core::{PurposeId, SubjectId, UnixMillis};
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;

/// The storage interface. Both backends run the same test suite against it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stable bit numbers of the configured purposes (assigned once, never reused).
    fn purpose_bits(&self) -> &HashMap<PurposeId, u8>;

    /// The consent index, consistent with committed consent state.
    fn index(&self) -> &ConsentIndex;

    /// The subject an identifier resolves to, if any (in-memory, no I/O).
    fn resolve(&self, hash: &LookupHash) -> Option<SubjectId>;

    /// How many identifiers resolve to `subject` (in-memory, no I/O): what the server
    /// asks `plan::identity::may_act` about before letting a browser key or a subject
    /// token act for it.
    fn held(&self, subject: &SubjectId) -> usize;

    /// The subject's data key, for sealing event payloads before they are written.
    async fn subject_key(&self, subject: SubjectId) -> Result<Option<SubjectKey>, StoreError>;

    /// Applies one subject's consent changes atomically: resolves (or creates) the
    /// subject, appends ledger records, updates state, strips withdrawn purposes from
    /// stored events. Either all changes apply or none do.
    async fn apply_consent(&self, cmd: ConsentCommand) -> Result<ConsentOutcome, StoreError>;

    /// Applies many commands in one transaction: all or nothing.
    async fn apply_consents_atomically(
        &self,
        cmds: Vec<ConsentCommand>,
    ) -> Result<Vec<ConsentOutcome>, StoreError>;

    /// Stores a batch of already consent-gated events, re-checking consent at commit.
    async fn ingest(&self, rows: Vec<IngestRow>) -> Result<Vec<RowOutcome>, StoreError>;

    /// Erases a subject (invariant 6), in one transaction through the writer: its row
    /// and wrapped data key, identifiers and lookup hashes, consent state, purpose
    /// floors, events and their de-duplication keys, insight features, declared fields
    /// and insight number; appends a pseudonymous erasure record to the ledger
    /// (`plan::erase`); after commit drops the subject from every cache (on PostgreSQL,
    /// on every node). On SQLite the erased bytes are overwritten in the file
    /// (`secure_delete`) and the WAL is checkpointed and truncated. `UnknownSubject`
    /// (nothing changed) when no such subject exists, which is also the answer to a
    /// second erasure. Earlier ledger records of the subject stay: pseudonymous, they
    /// now link to no one.
    async fn erase(&self, req: Erasure) -> Result<ErasureOutcome, StoreError>;

    /// Sets one volunteered (zero-party) field of a subject, sealed under the subject's
    /// key, replacing any earlier value and provenance. Goes through the writer, so it is
    /// ordered with consent changes. `UnknownSubject` (and nothing written) for a subject
    /// that does not exist.
    async fn set_field(&self, w: FieldWrite) -> Result<(), StoreError>;

    /// Sets many fields (of one or many subjects) in one write, all or nothing: what
    /// ingestion uses for the identifies of a batch, so a batch costs one commit rather
    /// than one per field. `UnknownSubject` (and nothing written) if any subject does
    /// not exist.
    async fn set_fields(&self, writes: Vec<FieldWrite>) -> Result<(), StoreError>;

    /// Removes one field of a subject; whether there was one.
    async fn remove_field(&self, subject: SubjectId, field: &FieldName)
        -> Result<bool, StoreError>;

    /// The subject's fields, opened, by name (none for an unknown subject).
    async fn fields(&self, subject: SubjectId) -> Result<Vec<StoredField>, StoreError>;

    /// Current recorded status per purpose (purposes never decided are absent).
    async fn consent_state(&self, subject: SubjectId) -> Result<Vec<StateRow>, StoreError>;

    /// Every ledger record of one subject, oldest first.
    async fn consent_history(&self, subject: SubjectId) -> Result<Vec<SealedEntry>, StoreError>;

    /// Ledger records with `seq > after`, at most `limit`, in stored order.
    async fn ledger_page(&self, after: u64, limit: usize) -> Result<Vec<SealedEntry>, StoreError>;

    /// The recorded head of the ledger.
    async fn ledger_head(&self) -> Result<Option<Head>, StoreError>;

    /// Rewrites stored events for every pending withdrawal now (normally done in the
    /// background; reads honour withdrawals either way).
    async fn sweep(&self) -> Result<(), StoreError>;

    /// Stored events with `id > after`, at most `limit`, in id order, with withdrawn
    /// purposes already removed (events left with none are skipped).
    async fn events_page(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Deletes stored events past retention as of `now`: an event is kept as long as
    /// the longest retention (in days since it was received) among its purposes;
    /// purposes missing from `retention_days` keep nothing alive. PostgreSQL drops
    /// whole day partitions when every row in them is past retention.
    ///
    /// When insights are configured, also deletes the feature rows of days older than
    /// the insights purpose's retention (day D is kept while D >= today - retention,
    /// today being `now`'s UTC day; every row when the purpose has no entry) and then
    /// prunes this store's feature index to match. On PostgreSQL other nodes' indexes
    /// keep such features until their own retention pass (hourly on every node).
    async fn retention(
        &self,
        now: UnixMillis,
        retention_days: &HashMap<PurposeId, u32>,
    ) -> Result<RetentionReport, StoreError>;

    /// Counts for health and the demo banner.
    async fn stats(&self) -> Result<Stats, StoreError>;

    /// The insights feature index (empty when insights are not configured).
    fn features(&self) -> &candor_insights::FeatureIndex;

    /// Brings the insight features up to date with every event acknowledged before the
    /// call: derives what the event log holds past the features' watermark and persists
    /// it (features are derived after commit, see `features`), and on PostgreSQL reads
    /// what other nodes wrote into this node's index.
    async fn refresh_features(&self) -> Result<(), StoreError>;

    /// Inserts an advertiser, or replaces every field of the one with the same id.
    async fn upsert_advertiser(&self, a: Advertiser) -> Result<(), StoreError>;

    /// Inserts an advertiser whose id is free; `AdvertiserExists` (and nothing written)
    /// otherwise, so two concurrent creates cannot both succeed with different keys.
    async fn create_advertiser(&self, a: Advertiser) -> Result<(), StoreError>;

    /// Replaces every field of an existing advertiser, but only if its `updated_ms` is
    /// still `expected_updated_ms` (compare-and-set); otherwise, or if it does not exist,
    /// `AdvertiserChanged` and nothing written. Read-modify-write callers retry on that,
    /// so a concurrent change (a key rotation above all) is never overwritten by a
    /// write based on what was there before it.
    async fn replace_advertiser(
        &self,
        a: Advertiser,
        expected_updated_ms: UnixMillis,
    ) -> Result<(), StoreError>;

    async fn advertiser(&self, id: &str) -> Result<Option<Advertiser>, StoreError>;

    async fn advertiser_by_key(
        &self,
        key_hash: &[u8; 32],
    ) -> Result<Option<Advertiser>, StoreError>;

    /// Every advertiser, by id.
    async fn advertisers(&self) -> Result<Vec<Advertiser>, StoreError>;

    /// Charges the report's cost against the advertiser's budget for `period`, its
    /// lifetime cap if it has one and the operator's cap across advertisers if the
    /// report carries one, and records it with its membership, atomically and durably.
    /// Refuses with `Overspend` (charging nothing, naming the budget) when a spend plus
    /// the cost would exceed its budget in ε or δ, and with `UnknownAdvertiser` when the
    /// advertiser is missing or disabled.
    async fn record_report(&self, r: NewReport) -> Result<ReportRecord, StoreError>;

    /// Reports with `id > after_id` (of one advertiser, or all), id ascending, at most
    /// `limit`.
    async fn reports(
        &self,
        advertiser: Option<&str>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ReportRecord>, StoreError>;

    async fn report(&self, id: i64) -> Result<Option<ReportRecord>, StoreError>;

    /// What the reports in `scope` add up to.
    async fn spent(&self, scope: SpendScope) -> Result<Spend, StoreError>;

    /// Reports whose membership includes this subject, newest first.
    async fn subject_reports(&self, subject: SubjectId) -> Result<Vec<ReportRecord>, StoreError>;

    /// Adds anonymous prompt counts to their daily totals, durably, all or none.
    async fn add_prompt_counts(&self, counts: Vec<PromptCount>) -> Result<(), StoreError>;

    /// Prompt totals of days `from_day..=to_day` (days since the epoch), sorted.
    async fn prompt_counts(
        &self,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<PromptCount>, StoreError>;

    /// Inserts a prompt variant, or replaces the one with the same id.
    async fn save_prompt_variant(&self, v: StoredVariant) -> Result<(), StoreError>;

    /// Every saved prompt variant, by id.
    async fn prompt_variants(&self) -> Result<Vec<StoredVariant>, StoreError>;

    /// The receipt-signing keys the ledger has used, oldest first, as recorded (check
    /// it with `KeyRing::check` against the key the verifier holds before trusting it).
    async fn signing_keys(&self) -> Result<KeyRing, StoreError>;

    /// Hands signing over to `next` from the record after the current head, certified
    /// by the current key (the store's signer). For `candor keys rotate-signing`, with
    /// no node writing: a node still signing with the old key afterwards would write
    /// records that fail verification.
    async fn rotate_signing_key(&self, next: VerifyingKey) -> Result<RingKey, StoreError>;

    /// Sets the deployment fact `key` to `value` unless it is already set, and returns
    /// the value it holds afterwards (the first writer's). For facts fixed at creation,
    /// such as whether `serve --demo` created the data.
    async fn claim_meta(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Appends an admin action to the audit log, durably.
    async fn record_admin_action(&self, a: AdminAction) -> Result<(), StoreError>;

    /// Admin actions with `id > after`, oldest first, at most `limit`.
    async fn admin_actions(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AdminActionRecord>, StoreError>;

    /// One subject's stored events with `id > after`, at most `limit`, floors applied as
    /// in [`Store::events_page`]. For the person's own view and export: it scans the
    /// log (events have no index by subject), so it is not for hot paths.
    async fn subject_events_page(
        &self,
        subject: SubjectId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// A subject's identifiers, opened (for the person's own view and export only;
    /// empty for an unknown subject).
    async fn identities(&self, subject: SubjectId) -> Result<Vec<Identity>, StoreError>;

    /// Appends one read of a person's data to their access log, durably.
    async fn record_access(&self, a: Access) -> Result<(), StoreError>;

    /// A person's access log, newest first, at most `limit`.
    async fn access_log(&self, subject: SubjectId, limit: usize)
        -> Result<Vec<Access>, StoreError>;

    /// Records that a person asked for access, an export or erasure; returns its id.
    async fn open_request(
        &self,
        subject: SubjectId,
        kind: RequestKind,
        channel: &str,
        at: UnixMillis,
    ) -> Result<i64, StoreError>;

    /// Records when a request was answered and how (`ok` or a stable error code).
    async fn close_request(&self, id: i64, at: UnixMillis, outcome: &str)
        -> Result<(), StoreError>;

    /// Requests with `id > after`, oldest first, at most `limit`.
    async fn requests(&self, after: i64, limit: usize) -> Result<Vec<RequestRecord>, StoreError>;

    /// Spends a single-use link's nonce: `true` the first time on any node, `false`
    /// after. Nonces are kept until `expires` (the link is refused past it anyway).
    async fn spend_link(
        &self,
        nonce: [u8; 16],
        expires: UnixMillis,
        now: UnixMillis,
    ) -> Result<bool, StoreError>;

    /// Flushes queued writes and stops the writer. Later writes fail with `Closed`.
    /// Committed volunteered-field changes from now on: this node's, and (PostgreSQL)
    /// other nodes' as they are notified; `FieldsChanged::All` after a lost connection.
    /// A receiver that falls behind gets `Lagged` and should reload everything.
    fn fields_changed(&self) -> tokio::sync::broadcast::Receiver<FieldsChanged>;

    /// Every subject's volunteered fields after `after` in (subject, field) order,
    /// opened, at most `limit` (the segments' rebuild at start pages through them).
    async fn fields_page(
        &self,
        after: Option<(SubjectId, FieldName)>,
        limit: usize,
    ) -> Result<Vec<(SubjectId, StoredField)>, StoreError>;

    /// An event id such that every event up to it is committed (or abandoned) and
    /// readable: a reader of the log in id order (`events_page`) that stops there
    /// misses nothing that commits later. On SQLite the highest stored id (the single
    /// writer commits ids in order); on PostgreSQL the sequence's value read while no
    /// ingest transaction is in flight (as the insight deriver does), unless no id was
    /// handed out past `after` (the caller's cursor): then `after`, without the moment
    /// of exclusive lock, so an idle tail costs ingestion nothing.
    async fn settled_event_id(&self, after: i64) -> Result<i64, StoreError>;

    /// Applies one loyalty points transaction (`plan::loyalty`): `Applied` has
    /// committed durably; a key applied before answers `Duplicate` with its original
    /// transaction; `Refused` wrote nothing.
    async fn loyalty(&self, op: loyalty::LoyaltyOp) -> Result<loyalty::LoyaltyOutcome, StoreError>;

    /// A subject's loyalty account (`None`: never had a transaction).
    async fn loyalty_account(
        &self,
        subject: SubjectId,
    ) -> Result<Option<loyalty::Account>, StoreError>;

    /// A subject's transactions with `id < before`, newest first, at most `limit`.
    async fn loyalty_history(
        &self,
        subject: SubjectId,
        before: i64,
        limit: usize,
    ) -> Result<Vec<loyalty::Txn>, StoreError>;

    /// The program's totals: accounts, members, points by kind, outstanding balance.
    async fn loyalty_totals(&self) -> Result<loyalty::ProgramTotals, StoreError>;

    /// Subjects with a positive balance after `after`, in id order (the expiry pass).
    async fn accounts_with_points(
        &self,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Result<Vec<SubjectId>, StoreError>;

    /// Rewards with a limited stock and what is left of it.
    async fn reward_stocks(&self) -> Result<Vec<loyalty::RewardStock>, StoreError>;

    /// Sets a reward's stock (`None`: unlimited); with `only_if_absent`, only for a
    /// reward that has no stock row yet (seeding from the config at start).
    async fn set_reward_stock(
        &self,
        reward: &str,
        stock: Option<i64>,
        only_if_absent: bool,
    ) -> Result<(), StoreError>;

    /// The operator's saved segments, by name.
    async fn segments(&self) -> Result<Vec<loyalty::SegmentRecord>, StoreError>;

    /// Saves a segment (creating or replacing it by name).
    async fn put_segment(&self, s: loyalty::SegmentRecord) -> Result<(), StoreError>;

    /// Deletes a segment and its size history; whether it existed.
    async fn delete_segment(&self, name: &str) -> Result<bool, StoreError>;

    /// Records segments' sizes on a UTC day (replacing that day's figure).
    async fn record_segment_sizes(
        &self,
        day: i32,
        sizes: Vec<(String, i64)>,
    ) -> Result<(), StoreError>;

    /// Every segment's recorded sizes from `from_day` on.
    async fn segment_sizes(&self, from_day: i32) -> Result<Vec<loyalty::SegmentSize>, StoreError>;

    /// Email on consent (issue 16): subscriptions, suppressions, campaigns and the send
    /// queue. Subscriptions change only through [`Store::apply_consent`] (a command's
    /// `list`), in the transaction that records them.
    fn email(&self) -> &dyn email::EmailStore;

    async fn shutdown(&self);
}
