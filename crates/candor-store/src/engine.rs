//! The one implementation of [`Store`], shared by both backends.
//!
//! What a store does on its write side is the same whatever the database: seal what it
//! is handed, queue it for the backend's writer, wait until the writer has committed it
//! durably. What it does with its caches is the same too. So [`Engine`] implements the
//! whole [`Store`] interface once, and a backend ([`Backend`]) supplies only its writer
//! (started at open, fed through the [`Front`]) and its reads.

use crate::caches::Caches;
use crate::front::{FieldOp, Front, Job};
use crate::loyalty::*;
use crate::plan::retention;
use crate::types::*;
use crate::{seal, PromptCount, Store, StoreError, StoredVariant};
use async_trait::async_trait;
use candor_core::crypto::{LookupHash, SubjectKey};
use candor_core::field::FieldName;
use candor_core::idhash::IdMap;
use candor_core::index::ConsentIndex;
use candor_core::ledger::{Head, KeyRing, RingKey, SealedEntry};
use candor_core::{PurposeId, SubjectId, UnixMillis};
use candor_insights::FeatureIndex;
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;

/// What a backend supplies: its caches and its reads. Writes reach it as jobs.
#[async_trait]
pub trait Backend: crate::email::EmailStore + Send + Sync + 'static {
    #[doc(hidden)]
    fn caches(&self) -> &Caches;
    /// The subject's data key as stored (the engine caches it).
    async fn load_key(&self, subject: SubjectId) -> Result<Option<SubjectKey>, StoreError>;
    async fn consent_state(&self, subject: SubjectId) -> Result<Vec<StateRow>, StoreError>;
    /// A subject's volunteered fields, still sealed.
    async fn fields(&self, subject: SubjectId) -> Result<Vec<seal::FieldRow>, StoreError>;
    async fn consent_history(&self, subject: SubjectId) -> Result<Vec<SealedEntry>, StoreError>;
    async fn ledger_page(&self, after: u64, limit: usize) -> Result<Vec<SealedEntry>, StoreError>;
    async fn ledger_head(&self) -> Result<Option<Head>, StoreError>;
    async fn events_page(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;
    async fn stats(&self) -> Result<Stats, StoreError>;
    async fn advertiser(&self, id: &str) -> Result<Option<Advertiser>, StoreError>;
    async fn advertiser_by_key(
        &self,
        key_hash: &[u8; 32],
    ) -> Result<Option<Advertiser>, StoreError>;
    async fn advertisers(&self) -> Result<Vec<Advertiser>, StoreError>;
    async fn reports(
        &self,
        advertiser: Option<&str>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ReportRecord>, StoreError>;
    async fn report(&self, id: i64) -> Result<Option<ReportRecord>, StoreError>;
    async fn spent(&self, scope: SpendScope) -> Result<Spend, StoreError>;
    async fn subject_reports(&self, subject: SubjectId) -> Result<Vec<ReportRecord>, StoreError>;
    /// The consent prompt's tables: small transactions of their own, beside the
    /// writer (see `crate::prompt`).
    async fn add_prompt_counts(&self, counts: Vec<PromptCount>) -> Result<(), StoreError>;
    async fn prompt_counts(
        &self,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<PromptCount>, StoreError>;
    async fn save_prompt_variant(&self, v: StoredVariant) -> Result<(), StoreError>;
    async fn prompt_variants(&self) -> Result<Vec<StoredVariant>, StoreError>;
    async fn signing_keys(&self) -> Result<Vec<RingKey>, StoreError>;
    async fn claim_meta(&self, key: &str, value: &str) -> Result<String, StoreError>;
    async fn record_admin_action(&self, a: AdminAction) -> Result<(), StoreError>;
    async fn admin_actions(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AdminActionRecord>, StoreError>;
    async fn rotate_signing_key(&self, next: VerifyingKey) -> Result<RingKey, StoreError>;
    /// The person's own side (`sqlite::person`, `postgres::person`).
    async fn sealed_identities(
        &self,
        subject: SubjectId,
    ) -> Result<Vec<seal::SealedIdentity>, StoreError>;
    async fn subject_events_page(
        &self,
        subject: SubjectId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    async fn record_access(&self, a: Access) -> Result<(), StoreError>;
    async fn access_log(&self, subject: SubjectId, limit: usize)
        -> Result<Vec<Access>, StoreError>;
    async fn open_request(
        &self,
        subject: SubjectId,
        kind: RequestKind,
        channel: &str,
        at: UnixMillis,
    ) -> Result<i64, StoreError>;
    async fn close_request(&self, id: i64, at: UnixMillis, outcome: &str)
        -> Result<(), StoreError>;
    async fn requests(&self, after: i64, limit: usize) -> Result<Vec<RequestRecord>, StoreError>;
    async fn spend_link(
        &self,
        nonce: [u8; 16],
        expires: UnixMillis,
        now: UnixMillis,
    ) -> Result<bool, StoreError>;
    /// Every subject's fields after `after` (subject, field), still sealed.
    async fn fields_after(
        &self,
        after: (SubjectId, String),
        limit: usize,
    ) -> Result<Vec<(SubjectId, seal::FieldRow)>, StoreError>;
    /// The highest event id below which every id is committed or abandoned.
    async fn settled_event_id(&self, after: i64) -> Result<i64, StoreError>;
    /// The loyalty program's reads and the small writes beside its ledger, and the
    /// segments' definitions (`sqlite::loyalty`, `postgres::loyalty`).
    async fn loyalty_account(&self, subject: SubjectId) -> Result<Option<Account>, StoreError>;
    async fn loyalty_history(
        &self,
        subject: SubjectId,
        before: i64,
        limit: usize,
    ) -> Result<Vec<Txn>, StoreError>;
    async fn loyalty_totals(&self) -> Result<ProgramTotals, StoreError>;
    async fn accounts_with_points(
        &self,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Result<Vec<SubjectId>, StoreError>;
    async fn reward_stocks(&self) -> Result<Vec<RewardStock>, StoreError>;
    async fn set_reward_stock(
        &self,
        reward: String,
        stock: Option<i64>,
        only_if_absent: bool,
    ) -> Result<(), StoreError>;
    async fn segments(&self) -> Result<Vec<SegmentRecord>, StoreError>;
    async fn put_segment(&self, s: SegmentRecord) -> Result<(), StoreError>;
    async fn delete_segment(&self, name: String) -> Result<bool, StoreError>;
    async fn record_segment_sizes(
        &self,
        day: i32,
        sizes: Vec<(String, i64)>,
    ) -> Result<(), StoreError>;
    async fn segment_sizes(&self, from_day: i32) -> Result<Vec<SegmentSize>, StoreError>;
    /// Stops what runs beside the writer, once the writer has stopped.
    async fn stop(&self);
}

/// A store: a backend and the queue to its writer.
pub struct Engine<B> {
    backend: B,
    front: Front,
}

impl<B: Backend> Engine<B> {
    pub(crate) fn new(backend: B, front: Front) -> Self {
        Self { backend, front }
    }

    fn caches(&self) -> &Caches {
        self.backend.caches()
    }

    async fn advertiser_job(
        &self,
        a: Advertiser,
        mode: crate::advertisers::PutMode,
    ) -> Result<(), StoreError> {
        self.front
            .submit(|reply| Job::Advertiser { a, mode, reply })
            .await
    }
}

#[async_trait]
impl<B: Backend> Store for Engine<B> {
    fn email(&self) -> &dyn crate::email::EmailStore {
        &self.backend
    }

    fn purpose_bits(&self) -> &HashMap<PurposeId, u8> {
        &self.caches().bits
    }

    fn index(&self) -> &ConsentIndex {
        &self.caches().index
    }

    fn resolve(&self, hash: &LookupHash) -> Option<SubjectId> {
        self.caches().resolve(hash)
    }

    fn held(&self, subject: &SubjectId) -> usize {
        self.caches().held(subject)
    }

    async fn subject_key(&self, subject: SubjectId) -> Result<Option<SubjectKey>, StoreError> {
        if let Some(k) = self.caches().key(&subject) {
            return Ok(Some(k));
        }
        let key = self.backend.load_key(subject).await?;
        if let Some(k) = &key {
            self.caches().publish_keys([(subject, k.clone())]);
        }
        Ok(key)
    }

    async fn apply_consent(&self, cmd: ConsentCommand) -> Result<ConsentOutcome, StoreError> {
        self.apply_consents_atomically(vec![cmd])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Database("the writer returned no outcome".into()))
    }

    async fn apply_consents_atomically(
        &self,
        cmds: Vec<ConsentCommand>,
    ) -> Result<Vec<ConsentOutcome>, StoreError> {
        self.front
            .submit(|reply| Job::Consent { cmds, reply })
            .await
    }

    async fn ingest(&self, rows: Vec<IngestRow>) -> Result<Vec<RowOutcome>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // The sealing stage, on the caller's task: many requests seal at once, while
        // the writer only writes.
        let bit = self.caches().insights_bit();
        let mut keys: IdMap<SubjectId, SubjectKey> = IdMap::default();
        let mut sealed = Vec::with_capacity(rows.len());
        for row in rows {
            let key = match keys.get(&row.subject) {
                Some(k) => k.clone(),
                None => {
                    let k = self.subject_key(row.subject).await?.ok_or_else(|| {
                        StoreError::Corrupt("a gated subject has no data key".into())
                    })?;
                    keys.insert(row.subject, k.clone());
                    k
                }
            };
            sealed.push(seal::row(&key, row, bit));
        }
        self.front
            .submit(|reply| Job::Ingest {
                rows: sealed,
                reply,
            })
            .await
    }

    async fn erase(&self, req: Erasure) -> Result<ErasureOutcome, StoreError> {
        self.front.submit(|reply| Job::Erase { req, reply }).await
    }

    async fn set_field(&self, w: FieldWrite) -> Result<(), StoreError> {
        self.set_fields(vec![w]).await
    }

    async fn set_fields(&self, writes: Vec<FieldWrite>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        // Sealed here, on the caller's task, as events are: the writer sees no plain text.
        let mut sealed = Vec::with_capacity(writes.len());
        for w in &writes {
            let key = self
                .subject_key(w.subject)
                .await?
                .ok_or(StoreError::UnknownSubject)?;
            sealed.push(seal::field(&key, w));
        }
        let subjects: Vec<SubjectId> = writes.iter().map(|w| w.subject).collect();
        self.front
            .submit(|reply| Job::Field {
                op: FieldOp::Set(sealed),
                reply,
            })
            .await?;
        for s in subjects {
            self.caches().announce_fields(FieldsChanged::Subject(s));
        }
        Ok(())
    }

    async fn remove_field(
        &self,
        subject: SubjectId,
        field: &FieldName,
    ) -> Result<bool, StoreError> {
        let field = field.as_str().to_owned();
        let removed = self
            .front
            .submit(|reply| Job::Field {
                op: FieldOp::Remove { subject, field },
                reply,
            })
            .await?;
        self.caches()
            .announce_fields(FieldsChanged::Subject(subject));
        Ok(removed)
    }

    fn fields_changed(&self) -> tokio::sync::broadcast::Receiver<FieldsChanged> {
        self.caches().fields_changed.subscribe()
    }

    async fn fields(&self, subject: SubjectId) -> Result<Vec<StoredField>, StoreError> {
        let rows = self.backend.fields(subject).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let key = self
            .subject_key(subject)
            .await?
            .ok_or_else(|| StoreError::Corrupt("fields of a subject with no data key".into()))?;
        rows.into_iter()
            .map(|r| seal::open_field(&key, subject, r))
            .collect()
    }

    async fn consent_state(&self, subject: SubjectId) -> Result<Vec<StateRow>, StoreError> {
        self.backend.consent_state(subject).await
    }

    async fn consent_history(&self, subject: SubjectId) -> Result<Vec<SealedEntry>, StoreError> {
        self.backend.consent_history(subject).await
    }

    async fn ledger_page(&self, after: u64, limit: usize) -> Result<Vec<SealedEntry>, StoreError> {
        self.backend.ledger_page(after, limit).await
    }

    async fn ledger_head(&self) -> Result<Option<Head>, StoreError> {
        self.backend.ledger_head().await
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        self.front.submit(|reply| Job::Sweep { reply }).await
    }

    async fn events_page(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.backend.events_page(after, limit).await
    }

    async fn retention(
        &self,
        now: UnixMillis,
        retention_days: &HashMap<PurposeId, u32>,
    ) -> Result<RetentionReport, StoreError> {
        let now_ms = now.0;
        let tiers = retention::tiers(now_ms, retention_days, &self.caches().bits);
        let features = self
            .caches()
            .insights
            .as_ref()
            .map(|i| retention::feature_cutoff(now_ms, retention_days, &i.purpose));
        self.front
            .submit(|reply| Job::Retention {
                now_ms,
                tiers,
                features,
                reply,
            })
            .await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.backend.stats().await
    }

    fn features(&self) -> &FeatureIndex {
        &self.caches().features
    }

    async fn refresh_features(&self) -> Result<(), StoreError> {
        self.front.submit(|reply| Job::Features { reply }).await
    }

    async fn upsert_advertiser(&self, a: Advertiser) -> Result<(), StoreError> {
        self.advertiser_job(a, crate::advertisers::PutMode::Upsert)
            .await
    }

    async fn create_advertiser(&self, a: Advertiser) -> Result<(), StoreError> {
        self.advertiser_job(a, crate::advertisers::PutMode::Create)
            .await
    }

    async fn replace_advertiser(
        &self,
        a: Advertiser,
        expected_updated_ms: UnixMillis,
    ) -> Result<(), StoreError> {
        self.advertiser_job(
            a,
            crate::advertisers::PutMode::Replace(expected_updated_ms.0),
        )
        .await
    }

    async fn advertiser(&self, id: &str) -> Result<Option<Advertiser>, StoreError> {
        self.backend.advertiser(id).await
    }

    async fn advertiser_by_key(
        &self,
        key_hash: &[u8; 32],
    ) -> Result<Option<Advertiser>, StoreError> {
        self.backend.advertiser_by_key(key_hash).await
    }

    async fn advertisers(&self) -> Result<Vec<Advertiser>, StoreError> {
        self.backend.advertisers().await
    }

    async fn record_report(&self, r: NewReport) -> Result<ReportRecord, StoreError> {
        self.front.submit(|reply| Job::Report { r, reply }).await
    }

    async fn reports(
        &self,
        advertiser: Option<&str>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ReportRecord>, StoreError> {
        self.backend.reports(advertiser, after_id, limit).await
    }

    async fn report(&self, id: i64) -> Result<Option<ReportRecord>, StoreError> {
        self.backend.report(id).await
    }

    async fn spent(&self, scope: SpendScope) -> Result<Spend, StoreError> {
        self.backend.spent(scope).await
    }

    async fn subject_reports(&self, subject: SubjectId) -> Result<Vec<ReportRecord>, StoreError> {
        self.backend.subject_reports(subject).await
    }

    async fn add_prompt_counts(&self, counts: Vec<PromptCount>) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        self.backend.add_prompt_counts(counts).await
    }

    async fn prompt_counts(
        &self,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<PromptCount>, StoreError> {
        self.backend.prompt_counts(from_day, to_day).await
    }

    async fn save_prompt_variant(&self, v: StoredVariant) -> Result<(), StoreError> {
        self.backend.save_prompt_variant(v).await
    }

    async fn prompt_variants(&self) -> Result<Vec<StoredVariant>, StoreError> {
        self.backend.prompt_variants().await
    }

    async fn signing_keys(&self) -> Result<KeyRing, StoreError> {
        Ok(KeyRing::new(self.backend.signing_keys().await?))
    }

    async fn rotate_signing_key(&self, next: VerifyingKey) -> Result<RingKey, StoreError> {
        self.backend.rotate_signing_key(next).await
    }

    async fn claim_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.backend.claim_meta(key, value).await
    }

    async fn record_admin_action(&self, a: AdminAction) -> Result<(), StoreError> {
        self.backend.record_admin_action(a).await
    }

    async fn subject_events_page(
        &self,
        subject: SubjectId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.backend
            .subject_events_page(subject, after, limit)
            .await
    }

    async fn identities(&self, subject: SubjectId) -> Result<Vec<Identity>, StoreError> {
        let Some(key) = self.subject_key(subject).await? else {
            return Ok(Vec::new());
        };
        self.backend
            .sealed_identities(subject)
            .await?
            .into_iter()
            .map(|s| {
                let value = seal::open_identity(&key, &s.hash, &s.sealed)
                    .map_err(|e| StoreError::Corrupt(format!("identifier: {e}")))?;
                Ok(Identity {
                    kind: s.kind,
                    hash: s.hash,
                    value,
                })
            })
            .collect()
    }

    async fn record_access(&self, a: Access) -> Result<(), StoreError> {
        self.backend.record_access(a).await
    }

    async fn access_log(
        &self,
        subject: SubjectId,
        limit: usize,
    ) -> Result<Vec<Access>, StoreError> {
        self.backend.access_log(subject, limit).await
    }

    async fn open_request(
        &self,
        subject: SubjectId,
        kind: RequestKind,
        channel: &str,
        at: UnixMillis,
    ) -> Result<i64, StoreError> {
        self.backend.open_request(subject, kind, channel, at).await
    }

    async fn close_request(
        &self,
        id: i64,
        at: UnixMillis,
        outcome: &str,
    ) -> Result<(), StoreError> {
        self.backend.close_request(id, at, outcome).await
    }

    async fn requests(&self, after: i64, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        self.backend.requests(after, limit).await
    }

    async fn spend_link(
        &self,
        nonce: [u8; 16],
        expires: UnixMillis,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        self.backend.spend_link(nonce, expires, now).await
    }

    async fn admin_actions(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AdminActionRecord>, StoreError> {
        self.backend.admin_actions(after, limit).await
    }

    async fn fields_page(
        &self,
        after: Option<(SubjectId, FieldName)>,
        limit: usize,
    ) -> Result<Vec<(SubjectId, StoredField)>, StoreError> {
        let after = after
            .map(|(s, f)| (s, f.as_str().to_owned()))
            .unwrap_or((SubjectId::from_bytes([0; 16]), String::new()));
        let rows = self.backend.fields_after(after, limit).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (subject, row) in rows {
            let key = self.subject_key(subject).await?.ok_or_else(|| {
                StoreError::Corrupt("fields of a subject with no data key".into())
            })?;
            out.push((subject, seal::open_field(&key, subject, row)?));
        }
        Ok(out)
    }

    async fn settled_event_id(&self, after: i64) -> Result<i64, StoreError> {
        self.backend.settled_event_id(after).await
    }

    async fn loyalty(&self, op: LoyaltyOp) -> Result<LoyaltyOutcome, StoreError> {
        self.front.submit(|reply| Job::Loyalty { op, reply }).await
    }

    async fn loyalty_account(&self, subject: SubjectId) -> Result<Option<Account>, StoreError> {
        self.backend.loyalty_account(subject).await
    }

    async fn loyalty_history(
        &self,
        subject: SubjectId,
        before: i64,
        limit: usize,
    ) -> Result<Vec<Txn>, StoreError> {
        self.backend.loyalty_history(subject, before, limit).await
    }

    async fn loyalty_totals(&self) -> Result<ProgramTotals, StoreError> {
        self.backend.loyalty_totals().await
    }

    async fn accounts_with_points(
        &self,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Result<Vec<SubjectId>, StoreError> {
        self.backend.accounts_with_points(after, limit).await
    }

    async fn reward_stocks(&self) -> Result<Vec<RewardStock>, StoreError> {
        self.backend.reward_stocks().await
    }

    async fn set_reward_stock(
        &self,
        reward: &str,
        stock: Option<i64>,
        only_if_absent: bool,
    ) -> Result<(), StoreError> {
        if stock.is_some_and(|n| n < 0) {
            return Err(StoreError::Refused("a stock cannot be negative".into()));
        }
        self.backend
            .set_reward_stock(reward.to_owned(), stock, only_if_absent)
            .await
    }

    async fn segments(&self) -> Result<Vec<SegmentRecord>, StoreError> {
        self.backend.segments().await
    }

    async fn put_segment(&self, s: SegmentRecord) -> Result<(), StoreError> {
        self.backend.put_segment(s).await
    }

    async fn delete_segment(&self, name: &str) -> Result<bool, StoreError> {
        self.backend.delete_segment(name.to_owned()).await
    }

    async fn record_segment_sizes(
        &self,
        day: i32,
        sizes: Vec<(String, i64)>,
    ) -> Result<(), StoreError> {
        self.backend.record_segment_sizes(day, sizes).await
    }

    async fn segment_sizes(&self, from_day: i32) -> Result<Vec<SegmentSize>, StoreError> {
        self.backend.segment_sizes(from_day).await
    }

    async fn shutdown(&self) {
        self.front.shutdown().await;
        self.backend.stop().await;
    }
}
