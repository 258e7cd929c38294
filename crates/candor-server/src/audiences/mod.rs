//! Segments and personalization in the server (issue 14): the saved segments, the
//! offers, and the live membership engine (`candor_segments::Engine`) kept in step with
//! what the store has committed.
//!
//! **One source of truth, read in order.** The engine is fed only from the store: the
//! event log (in id order, purpose floors applied, up to an id every node agrees is
//! settled), the consent ledger (for withdrawals and erasures) and the volunteered
//! fields. So what a node's engine holds is a function of what is committed, on every
//! node and after every restart, and `catch_up` before a read makes the read exact
//! for everything acknowledged before it ([`feed`]).
//!
//! **Consent at read time.** A member is someone the rule holds for *and* who grants
//! the segment's purpose now: the engine is asked with the consent index's answer, so a
//! withdrawal removes the person from every segment of that purpose the moment it
//! commits, before the feed has seen it. The feed then drops the facts it kept from the
//! person's withdrawn events (reset and replay, floors applied), so a later re-grant
//! starts from what the person allowed since.
//!
//! **Fields.** The store announces committed field changes (`Store::fields_changed`: this
//! node's writes at once, other nodes' through PostgreSQL's `NOTIFY`); a round reads each
//! announced subject's fields back from the store, and rebuilds when announcements may
//! have been lost.
//!
//! **Changing the segments.** Saving or deleting a segment rebuilds the engine from the
//! store with the new set of rules and swaps it in: a new rule may need facts nobody
//! kept before (a new event or trait), and a rebuild is the one path that is exact by
//! construction (the same path a restart takes).

pub mod feed;
pub mod view;

use crate::state::AppState;
use candor_core::SubjectId;
use candor_segments::{Engine, OfferCatalog, Rule, SegmentDef};
use candor_store::loyalty::SegmentRecord;
use candor_store::{FieldsChanged, StoreError};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A saved segment, parsed.
#[derive(Clone, Debug)]
pub struct Saved {
    pub record: SegmentRecord,
    pub rule: Rule,
    pub bit: u8,
}

pub struct Audiences {
    engine: RwLock<Arc<Engine>>,
    segments: RwLock<BTreeMap<String, Saved>>,
    pub offers: Option<OfferCatalog>,
    /// Where the feed stands, and the store's announcements of field changes not yet
    /// applied; held for a round or a rebuild, so they never interleave.
    feed: tokio::sync::Mutex<Feed>,
}

struct Feed {
    cursor: feed::Cursor,
    changes: FieldChanges,
    /// Subjects announced but not yet read back (kept across a failed round).
    pending: Vec<SubjectId>,
}

type FieldChanges = tokio::sync::broadcast::Receiver<FieldsChanged>;

impl Audiences {
    /// `changes`: the store's field announcements, subscribed before anything is read,
    /// so no change committed after the first rebuild's read is missed.
    pub fn new(offers: Option<OfferCatalog>, today: i64, changes: FieldChanges) -> Self {
        Self {
            engine: RwLock::new(Arc::new(Engine::new(today))),
            segments: RwLock::new(BTreeMap::new()),
            offers,
            feed: tokio::sync::Mutex::new(Feed {
                cursor: feed::Cursor::default(),
                changes,
                pending: Vec::new(),
            }),
        }
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.engine.read().clone()
    }

    pub fn segments(&self) -> Vec<Saved> {
        self.segments.read().values().cloned().collect()
    }

    pub fn segment(&self, name: &str) -> Option<Saved> {
        self.segments.read().get(name).cloned()
    }

    /// The saved segment's purpose, as `segment "name"` conditions are checked against.
    pub fn purpose_of(&self, name: &str) -> Option<String> {
        self.segments
            .read()
            .get(name)
            .map(|s| s.record.purpose.clone())
    }

    /// Whether `subject` is in `name` now (the rule holds and the purpose is granted).
    pub fn is_member(&self, st: &AppState, name: &str, subject: &SubjectId) -> Option<bool> {
        let granted = st.store.index().granted(subject);
        self.engine().is_member(name, subject, granted)
    }

    pub fn count(&self, st: &AppState, name: &str) -> Option<u64> {
        let index = st.store.index();
        self.engine().count(name, &|s| index.granted(s))
    }

    pub fn members(
        &self,
        st: &AppState,
        name: &str,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Option<Vec<SubjectId>> {
        let index = st.store.index();
        self.engine()
            .members(name, &|s| index.granted(s), after, limit)
    }

    /// Brings the engine up to date with everything committed before the call: the
    /// log and the ledger ([`feed::round`]), then the fields announced changed (each
    /// subject's read back from the store; everything, by a rebuild, when announcements
    /// may have been missed).
    pub async fn catch_up(&self, st: &AppState) -> Result<(), StoreError> {
        let mut guard = self.feed.lock().await;
        let f = &mut *guard;
        let engine = self.engine();
        feed::round(st, &engine, &mut f.cursor).await?;
        let mut all = false;
        loop {
            use tokio::sync::broadcast::error::TryRecvError;
            match f.changes.try_recv() {
                Ok(FieldsChanged::Subject(s)) => f.pending.push(s),
                Ok(FieldsChanged::All) | Err(TryRecvError::Lagged(_)) => all = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        if all {
            // The rebuild reads every field; what was pending is in it.
            f.pending.clear();
            drop(guard);
            return self.rebuild(st).await;
        }
        f.pending
            .sort_unstable_by_key(|s| std::cmp::Reverse(*s.as_bytes()));
        f.pending.dedup();
        // Popped only once read back, so a failed read is retried by the next round.
        while let Some(s) = f.pending.last().copied() {
            feed::reload_fields(st, &engine, s).await?;
            f.pending.pop();
        }
        Ok(())
    }

    /// Records every segment's size today (the dashboard's chart), after catching up.
    pub async fn record_sizes(&self, st: &AppState) -> Result<(), StoreError> {
        self.catch_up(st).await?;
        let names: Vec<String> = self.segments.read().keys().cloned().collect();
        let sizes: Vec<(String, i64)> = names
            .into_iter()
            .filter_map(|n| self.count(st, &n).map(|c| (n, c as i64)))
            .collect();
        if sizes.is_empty() {
            return Ok(());
        }
        let day = i32::try_from(st.now().day()).unwrap_or(i32::MAX);
        st.store.record_segment_sizes(day, sizes).await
    }

    /// Loads the saved segments and builds the engine from the store (at start).
    pub async fn load(&self, st: &AppState) -> Result<(), StoreError> {
        if !self.sync_definitions(st).await? {
            self.rebuild(st).await?;
        }
        Ok(())
    }

    /// Makes the segments this node knows the ones the store holds (another node may
    /// have saved or deleted one), rebuilding the engine when they differ; whether they
    /// did. The table is a few rows: the background loop asks every few seconds.
    pub async fn sync_definitions(&self, st: &AppState) -> Result<bool, StoreError> {
        let stored = st.store.segments().await?;
        let same = {
            let known = self.segments.read();
            known.len() == stored.len()
                && stored
                    .iter()
                    .all(|r| known.get(&r.name).is_some_and(|s| s.record == *r))
        };
        if same {
            return Ok(false);
        }
        let mut saved = BTreeMap::new();
        for record in stored {
            match parse_saved(st, record) {
                Ok(s) => {
                    saved.insert(s.record.name.clone(), s);
                }
                Err(why) => {
                    tracing::warn!(%why, "a saved segment no longer fits the configuration; it is left out")
                }
            }
        }
        *self.segments.write() = saved;
        self.rebuild(st).await?;
        Ok(true)
    }

    /// Saves (or replaces) a segment and rebuilds the engine with it.
    pub async fn save(&self, st: &AppState, s: Saved) -> Result<(), StoreError> {
        st.store.put_segment(s.record.clone()).await?;
        self.segments.write().insert(s.record.name.clone(), s);
        self.rebuild(st).await
    }

    pub async fn delete(&self, st: &AppState, name: &str) -> Result<bool, StoreError> {
        let existed = st.store.delete_segment(name).await?;
        self.segments.write().remove(name);
        self.rebuild(st).await?;
        Ok(existed)
    }

    /// Builds a fresh engine with every segment and offer rule, fed from the start of
    /// the log, and swaps it in.
    pub async fn rebuild(&self, st: &AppState) -> Result<(), StoreError> {
        let mut guard = self.feed.lock().await;
        let engine = Engine::new(st.now().day());
        let defs: Vec<Saved> = self.segments.read().values().cloned().collect();
        for s in defs {
            // Checked when saved and when loaded: a refusal here is a bug, not input.
            let _ = engine
                .define(SegmentDef {
                    name: s.record.name.clone(),
                    purpose_bit: s.bit,
                    rule: s.rule,
                })
                .map_err(
                    |e| tracing::error!(segment = %s.record.name, error = %e, "segment refused"),
                );
        }
        if let (Some(offers), Some(bit)) = (&self.offers, personalization_bit(st)) {
            let _ = engine
                .define_offers(bit, &offers.rules())
                .map_err(|e| tracing::error!(error = %e, "offer rules refused"));
        }
        // Field changes announced from here on are applied by the next round, read
        // back from the store: the fields read below can only be older.
        let fresh = feed::replay(st, &engine).await?;
        feed::load_fields(st, &engine).await?;
        *self.engine.write() = Arc::new(engine);
        guard.cursor = fresh;
        Ok(())
    }
}

/// The bit of the personalization purpose (`[personalization] purpose`, default
/// `personalization`), when the catalog has it.
pub fn personalization_bit(st: &AppState) -> Option<u8> {
    st.catalog
        .purpose(&st.settings.personalization.purpose)
        .map(|p| p.bit)
}

/// A stored segment read back: its rule parsed and checked against today's
/// configuration (a purpose or field may have gone since it was saved).
pub fn parse_saved(st: &AppState, record: SegmentRecord) -> Result<Saved, String> {
    let json: serde_json::Value =
        serde_json::from_str(&record.rule).map_err(|e| format!("{}: {e}", record.name))?;
    let rule = candor_segments::from_json(&json).map_err(|e| format!("{}: {e}", record.name))?;
    let purpose = candor_core::PurposeId::parse(&record.purpose)
        .map_err(|e| format!("{}: {e}", record.name))?;
    let bit = st
        .catalog
        .purpose(&purpose)
        .map(|p| p.bit)
        .ok_or_else(|| format!("{}: unknown purpose {purpose}", record.name))?;
    Ok(Saved { record, rule, bit })
}
