//! `Application::build(settings)`: everything `candor serve` runs, shared verbatim by
//! the integration tests (which build it on port 0 with their own data directory).

use crate::auth::{Sources, SubjectTokens};
use crate::config::{ConfigError, Settings};
use crate::datadir::{self, DataDirError, DirLock, Mode};
use crate::iab::{Gvl, IabContext};
use crate::routes::meta;
use crate::state::{system_clock, AppState, Clock, Inner};
use crate::telemetry::{self, RequestFinished};
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use candor_core::crypto::MasterKey;
use candor_core::ledger::{KeyId, KeyRing};
use candor_core::purpose::Catalog;
use candor_core::receipt::ReceiptSigner;
use candor_store::postgres::{PostgresOptions, PostgresStore};
use candor_store::sqlite::SqliteStore;
use candor_store::{Store, StoreError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;

#[derive(Debug, Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("serve --demo refuses this data: it was not created by the demo (the demo seeds synthetic people and serves fixed, published credentials); use a fresh --data-dir or database for the demo")]
    NotDemo,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// An opened data directory and store: the lock, keys, store and completed catalog.
/// Used by the server and by every CLI command that works on the data.
pub struct Opened {
    pub lock: DirLock,
    pub store: Arc<dyn Store>,
    pub catalog: Catalog,
    pub master: MasterKey,
    pub signer: Arc<ReceiptSigner>,
    /// The signing keys the ledger has used, checked to end at `signer`'s.
    pub keys: KeyRing,
}

/// Opens the store the settings name: PostgreSQL when `[database]` is set, otherwise
/// the SQLite file in the data directory. Keys always come from the data directory
/// (or the environment): every node sharing one database must hold the same keys, and
/// the database refuses others (`candor_store::plan::keys`). With [`Mode::Existing`]
/// nothing is created: a missing or empty data directory is an error.
pub async fn open_data(settings: &Settings, mode: Mode) -> Result<Opened, BuildError> {
    let dir = &settings.data_dir;
    let lock = datadir::lock(dir, mode, settings.database.is_none())?;
    if mode == Mode::Existing
        && settings.database.is_none()
        && !datadir::database_path(dir).is_file()
    {
        return Err(DataDirError::Missing(dir.clone()).into());
    }
    let mut keys = datadir::load_keys(dir, mode)?;
    let store = match open_store(settings, &keys.master, &keys.signer).await {
        // A rotation stopped between recording the new key and renaming its file:
        // finish it (the database already names the new key as current).
        Err(BuildError::Store(StoreError::SigningKeyMismatch { expected, .. })) => {
            match datadir::next_signing_key(dir)? {
                Some(next) if KeyId::of(&next.verifying_key()) == expected => {
                    datadir::promote_next_signing_key(dir)?;
                    tracing::info!(key = %expected, "finished an interrupted signing key rotation");
                    keys.signer = next;
                    open_store(settings, &keys.master, &keys.signer).await?
                }
                _ => {
                    keys.discard_fresh();
                    return Err(StoreError::SigningKeyMismatch {
                        expected,
                        found: KeyId::of(&keys.signer.verifying_key()),
                    }
                    .into());
                }
            }
        }
        Err(e) => {
            // Keys generated for a database written under others must not linger.
            keys.discard_fresh();
            return Err(e);
        }
        Ok(s) => s,
    };
    let signer = Arc::new(ReceiptSigner::from_bytes(&keys.signer.to_bytes()));
    if mode == Mode::Create {
        claim_deployment(settings, store.as_ref()).await?;
    }
    let catalog = settings.catalog.build(store.purpose_bits())?;
    let ring = store.signing_keys().await?;
    ring.check(&signer.verifying_key())
        .map_err(|e| StoreError::KeyMismatch(format!("the recorded signing key ring: {e}")))?;
    Ok(Opened {
        keys: ring,
        lock,
        store,
        catalog,
        master: keys.master.clone(),
        signer,
    })
}

async fn open_store(
    settings: &Settings,
    master: &MasterKey,
    signer: &ReceiptSigner,
) -> Result<Arc<dyn Store>, BuildError> {
    let signer = Arc::new(ReceiptSigner::from_bytes(&signer.to_bytes()));
    let purposes = settings.catalog.purpose_ids();
    // The feature index the store keeps current and the insights engine reads.
    let features = Arc::new(
        candor_insights::FeatureIndex::new(settings.insights.schema.clone())
            .map_err(|e| ConfigError::Invalid(format!("insights.declared: {e}")))?,
    );
    let insights = settings
        .insights
        .purpose
        .clone()
        .map(|purpose| candor_store::InsightsOptions {
            purpose,
            index: features.clone(),
        });
    Ok(match &settings.database {
        Some(db) => {
            let options = PostgresOptions {
                pool_size: db.pool_size,
                statement_timeout: Duration::from_millis(db.statement_timeout_ms),
                connect_timeout: Duration::from_millis(db.connect_timeout_ms),
                resync_interval: Duration::from_millis(db.resync_interval_ms),
                insights,
                ..PostgresOptions::default()
            };
            Arc::new(
                PostgresStore::open_with(
                    db.url.expose(),
                    &purposes,
                    master.clone(),
                    signer,
                    options,
                )
                .await?,
            )
        }
        None => Arc::new(SqliteStore::open_with_insights(
            &datadir::database_path(&settings.data_dir),
            &purposes,
            master.clone(),
            signer,
            insights,
        )?),
    })
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    /// The transactional outbox's receiving end, handed to the sender when serving.
    outbox: Option<tokio::sync::mpsc::Receiver<crate::email::Transactional>>,
    _lock: DirLock,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        Self::build_with_clock(settings, system_clock()).await
    }

    pub async fn build_with_clock(settings: Settings, clock: Clock) -> Result<Self, BuildError> {
        let opened = open_data(&settings, Mode::Create).await?;
        Self::from_opened(settings, opened, clock).await
    }

    pub async fn from_opened(
        settings: Settings,
        opened: Opened,
        clock: Clock,
    ) -> Result<Self, BuildError> {
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| BuildError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let iab = iab_context(&settings)?;
        let insights = settings
            .insights
            .purpose
            .as_ref()
            .and_then(|p| opened.catalog.purpose(p));
        let offers = offer_catalog(&settings, &opened.catalog, opened.store.as_ref()).await?;
        let today = candor_core::UnixMillis(clock()).day();
        let (mail, outbox) = match &settings.email {
            Some(e) => {
                let (m, rx) = crate::email::Mail::new(e.clone(), &opened.master);
                (Some(Arc::new(m)), Some(rx))
            }
            None => (None, None),
        };
        let state = AppState(Arc::new(Inner {
            mail,
            audiences: crate::audiences::Audiences::new(
                offers,
                today,
                opened.store.fields_changed(),
            ),
            insights_bit: insights.map(|p| p.bit),
            insights_retention_days: insights.map_or(0, |p| p.retention_days),
            insight_scans: tokio::sync::Semaphore::new(1),
            insight_scans_run: Default::default(),
            insight_busy: Default::default(),
            prompt: crate::prompt::PromptState::new().map_err(ConfigError::Invalid)?,
            sessions: crate::pages::Sessions::new(settings.admin_token.as_ref()),
            person_keys: crate::person::PersonKeys::new(&opened.master),
            limits: crate::limits::Limits::new(settings.limits.clone()),
            iab,
            sources: Sources::new(&settings.sources),
            subject_tokens: SubjectTokens::new(settings.subject_token_secret.clone()),
            store: opened.store,
            catalog: opened.catalog,
            master: opened.master,
            signer: opened.signer,
            keys: opened.keys,
            settings,
            clock,
        }));
        state.audiences.load(&state).await?;
        if let Some(l) = &state.settings.loyalty {
            for r in &l.program.config().rewards {
                if let Some(n) = r.initial_stock {
                    state.store.set_reward_stock(&r.id, Some(n), true).await?;
                }
            }
        }
        telemetry::prometheus();
        Ok(Self {
            router: router(state.clone()),
            listener,
            state,
            outbox,
            _lock: opened.lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests
    /// finish (their writes commit and are answered), and flushes the store.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let store = self.state.store.clone();
        let retention = tokio::spawn(retention_loop(self.state.clone()));
        let counts = tokio::spawn(prompt_count_loop(self.state.clone()));
        let audiences = tokio::spawn(audience_loop(self.state.clone()));
        let (stop_mail, mail_stop) = tokio::sync::watch::channel(false);
        let mut mail_tasks = Vec::new();
        let mut expiry = None;
        if let (Some(mail), Some(outbox)) = (self.state.mail.clone(), self.outbox) {
            mail_tasks =
                crate::email::sender::spawn(self.state.clone(), mail.clone(), outbox, mail_stop);
            expiry = Some(tokio::spawn(pending_expiry_loop(self.state.clone(), mail)));
        }
        let served = crate::serve::serve(
            self.listener,
            self.router,
            &self.state.settings.limits,
            shutdown,
        )
        .await;
        retention.abort();
        counts.abort();
        audiences.abort();
        // The sender stops between messages: a message whose row is committing has its
        // dot sent first (nothing is half-sent), the rest stay queued for the next start.
        let _ = stop_mail.send(true);
        if let Some(e) = expiry {
            e.abort();
        }
        for t in mail_tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let Err(e) = self.state.prompt.flush(store.as_ref()).await {
            tracing::warn!(error = %e, "prompt counts not written at shutdown");
        }
        store.shutdown().await;
        served
    }
}

/// Records who created the data at first start (`serve --demo` or an operator), and
/// refuses to run the demo (fixed public credentials, synthetic people) on data it did
/// not create. Data from before this record existed, if not empty, is an operator's.
async fn claim_deployment(settings: &Settings, store: &dyn Store) -> Result<(), BuildError> {
    let stats = store.stats().await?;
    let empty = stats.subjects == 0 && stats.ledger_records == 0;
    let kind = if settings.demo && empty {
        "demo"
    } else {
        "operator"
    };
    let created_by = store.claim_meta("created_by", kind).await?;
    if settings.demo && created_by != "demo" {
        return Err(BuildError::NotDemo);
    }
    Ok(())
}

/// Deletes pending subscriptions nobody confirmed in time, and the subjects made only
/// for them (`email::flows::expire`), at start and then hourly.
async fn pending_expiry_loop(state: AppState, mail: Arc<crate::email::Mail>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match crate::email::flows::expire(&state, &mail).await {
            Ok(n) => tracing::info!(
                requests = n.requests,
                forgotten = n.forgotten,
                "pending subscriptions expired"
            ),
            Err(e) => tracing::warn!(error = %e, "expiring pending subscriptions failed"),
        }
    }
}

/// Deletes events past their purposes' retention, at start and then hourly. Dropping
/// whole day partitions (PostgreSQL) makes this cheap; SQLite prunes by day.
async fn retention_loop(state: AppState) {
    let days: std::collections::HashMap<_, _> = state
        .catalog
        .purposes()
        .iter()
        .map(|p| (p.id.clone(), p.retention_days))
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match state.store.retention(state.now(), &days).await {
            Ok(r) => tracing::info!(?r, "retention pass"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed; will retry"),
        }
    }
}

/// Keeps the segment engine in step with the store (every second: other nodes' writes,
/// withdrawals, the day's rollover), records each segment's size for the chart every
/// ten minutes, and writes off expired loyalty points hourly.
async fn audience_loop(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut rounds: u64 = 0;
    loop {
        tick.tick().await;
        if rounds.is_multiple_of(5) {
            if let Err(e) = state.audiences.sync_definitions(&state).await {
                tracing::warn!(error = %e, "segments: reading their definitions failed; will retry");
            }
        }
        if let Err(e) = state.audiences.catch_up(&state).await {
            tracing::warn!(error = %e, "segments: catching up with the store failed; will retry");
        }
        if rounds.is_multiple_of(600) {
            if let Err(e) = state.audiences.record_sizes(&state).await {
                tracing::warn!(error = %e, "segment sizes not recorded; will retry");
            }
        }
        if rounds.is_multiple_of(3600) {
            if let Err(e) = crate::loyalty::expire_all(&state).await {
                tracing::warn!(error = %e, "loyalty expiry pass failed; will retry");
            }
        }
        rounds += 1;
    }
}

/// The operator's offers, their rules checked against the personalization purpose
/// (an offer naming data personalization may not use is refused at start). The
/// built-in offers are dropped, with a note, where the operator's catalog or fields
/// do not allow them.
async fn offer_catalog(
    settings: &Settings,
    catalog: &Catalog,
    store: &dyn Store,
) -> Result<Option<candor_segments::OfferCatalog>, BuildError> {
    let p = &settings.personalization;
    let saved: std::collections::HashMap<String, String> = store
        .segments()
        .await?
        .into_iter()
        .map(|s| (s.name, s.purpose))
        .collect();
    let checked = || -> Result<candor_segments::OfferCatalog, String> {
        for o in &p.offers {
            if let Some(rule) = &o.when {
                candor_segments::check(rule, &p.purpose, catalog, &settings.fields, &|n| {
                    saved
                        .get(n)
                        .and_then(|p| candor_core::PurposeId::parse(p).ok())
                })
                .map_err(|e| format!("offers.{}: {e}", o.id))?;
            }
        }
        candor_segments::OfferCatalog::new(p.offers.clone()).map_err(|e| format!("offers: {e}"))
    };
    match checked() {
        Ok(c) => Ok(Some(c)),
        Err(why) if p.offers_are_default => {
            tracing::info!(%why, "the built-in offers do not fit this catalog; no offers");
            Ok(None)
        }
        Err(why) => Err(ConfigError::Invalid(why).into()),
    }
}

/// Writes the prompt's pending anonymous counts every few seconds.
async fn prompt_count_loop(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        if let Err(e) = state.prompt.flush(state.store.as_ref()).await {
            tracing::warn!(error = %e, "prompt counts not written; will retry");
        }
    }
}

/// Loads the vendor list named in `[iab]` (or the demo's) once, at start.
fn iab_context(s: &Settings) -> Result<IabContext, BuildError> {
    let gvl = match (&s.iab.vendor_list, s.iab.demo_vendor_list) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::Invalid(format!("iab.vendor_list {}: {e}", path.display()))
            })?;
            Gvl::parse(&text).map_err(|e| {
                ConfigError::Invalid(format!("iab.vendor_list {}: {e}", path.display()))
            })?
        }
        (None, true) => Gvl::parse(crate::iab::DEMO_GVL).map_err(ConfigError::Invalid)?,
        (None, false) => Gvl::default(),
    };
    Ok(IabContext {
        cmp_id: s.iab.cmp_id,
        cmp_version: s.iab.cmp_version,
        consent_language: s.iab.consent_language.clone(),
        publisher_country_code: s.iab.publisher_country_code.clone(),
        gvl,
        trusted_cmp_ids: s.iab.trusted_cmp_ids.clone(),
    })
}

/// The router: the route table (`routes::table`, one registration with a declared
/// role per route) behind the shared layers.
pub fn router(state: AppState) -> Router {
    let (main, advertiser) = crate::routes::table::build(state.settings.demo);
    let everything_else = main
        .router
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::layer,
        ))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            deny_advertiser_keys,
        ));
    let router = advertiser
        .router
        .merge(everything_else)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::cors::layer,
        ))
        .layer(middleware::from_fn(crate::pages::headers_layer))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::limits::layer,
        ))
        .layer(middleware::from_fn(record_latency));
    let router = match &state.settings.response_log {
        Some(path) => match crate::response_log::ResponseLog::create(path) {
            Ok(log) => router.layer(middleware::from_fn_with_state(
                log,
                crate::response_log::layer,
            )),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the response log");
                router
            }
        },
        None => router,
    };
    router.with_state(state)
}

/// An advertiser key reaches only `/v1/insights/*`: anywhere else a valid one gets 403
/// (an invalid one falls through to the route's own authentication).
async fn deny_advertiser_keys(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(key) = crate::audience::presented_key(req.headers()) {
        let valid = matches!(
            st.store.advertiser_by_key(&crate::audience::key_hash(&key)).await,
            Ok(Some(a)) if !a.disabled
        );
        if valid {
            return crate::error::ApiError::new(
                crate::error::Code::Forbidden,
                "advertiser keys reach only the /v1/insights endpoints",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Route templates as `&'static str`, so the per-request metric label costs no
/// allocation. Bounded: only the router's own templates ever reach it.
fn intern_route(template: &str) -> &'static str {
    static ROUTES: std::sync::OnceLock<parking_lot::RwLock<Vec<&'static str>>> =
        std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(Default::default);
    if let Some(r) = routes.read().iter().find(|r| **r == template) {
        return r;
    }
    let mut w = routes.write();
    if let Some(r) = w.iter().find(|r| **r == template) {
        return r;
    }
    let leaked: &'static str = Box::leak(template.to_owned().into_boxed_str());
    w.push(leaked);
    leaked
}

/// Request latency by route template (never the raw path, which may carry ids).
async fn record_latency(req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| intern_route(m.as_str()));
    let method = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::DELETE => "DELETE",
        _ => "other",
    };
    let resp = next.run(req).await;
    RequestFinished {
        route,
        method,
        status: resp.status().as_u16(),
        seconds: start.elapsed().as_secs_f64(),
    }
    .emit();
    resp
}
