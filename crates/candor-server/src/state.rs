//! What every request handler shares: the store, the completed catalog, keys, sources
//! and a clock (injectable, so tests can control time).

use crate::auth::{Sources, SubjectTokens};
use crate::config::Settings;
use candor_core::crypto::MasterKey;
use candor_core::ledger::KeyRing;
use candor_core::purpose::Catalog;
use candor_core::receipt::ReceiptSigner;
use candor_core::time::UnixMillis;
use candor_store::Store;
use std::sync::Arc;

pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Milliseconds since the Unix epoch.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub catalog: Catalog,
    pub master: MasterKey,
    pub signer: Arc<ReceiptSigner>,
    /// Every receipt-signing key the ledger has used, checked at start to end at
    /// `signer`'s key.
    pub keys: KeyRing,
    pub sources: Sources,
    pub subject_tokens: SubjectTokens,
    pub iab: crate::iab::IabContext,
    pub clock: Clock,
    /// Bit of the insights purpose (`[insights] purpose`), when insights are on.
    pub insights_bit: Option<u8>,
    /// The insights purpose's retention in days: events dated before it never become
    /// features.
    pub insights_retention_days: u32,
    /// Scans running at once. A scan uses every core for up to a second per million
    /// subjects; queued queries wait here rather than starving ingestion of CPU.
    pub insight_scans: tokio::sync::Semaphore,
    /// Scans run so far (what a refused query must not add to).
    pub insight_scans_run: std::sync::atomic::AtomicU64,
    /// One query at a time per advertiser on this node (`audience::AdvertiserSlot`).
    pub insight_busy: parking_lot::Mutex<
        std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>,
    >,
    /// The consent prompt: wording, saved variants, pending anonymous counts.
    pub prompt: crate::prompt::PromptState,
    /// The admin dashboard's signed session cookies and CSRF tokens.
    pub sessions: crate::pages::Sessions,
    /// A person's sign-in links and sessions (`person`).
    pub person_keys: crate::person::PersonKeys,
    /// Segments, offers and the live membership engine (`audiences`).
    pub audiences: crate::audiences::Audiences,
    /// In-flight cap, rate limits, body deadline, new-subject allowance.
    pub limits: crate::limits::Limits,
    /// Email on consent (`[email]`), when configured.
    pub mail: Option<std::sync::Arc<crate::email::Mail>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    pub fn now(&self) -> UnixMillis {
        UnixMillis((self.clock)())
    }

    /// The key that signed (or signs) ledger record `seq`.
    pub fn signing_key_for(&self, seq: u64) -> ed25519_dalek::VerifyingKey {
        self.keys
            .key_for(seq)
            .copied()
            .unwrap_or_else(|| self.signer.verifying_key())
    }
}
