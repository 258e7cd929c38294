//! Spawning the app and small request helpers.

use candor_server::config::demo;
use candor_server::state::AppState;
use candor_server::{Application, Settings};
use reqwest::{Client, Response};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const SERVER_KEY: &str = demo::SERVER_WRITE_KEY;
pub const BROWSER_KEY: &str = demo::BROWSER_WRITE_KEY;
pub const ADMIN: &str = demo::ADMIN_TOKEN;

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub state: AppState,
    env: Option<Env>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Where a test app keeps its data: its own directory, and with
/// `CANDOR_TEST_BACKEND=postgres` its own fresh PostgreSQL database.
pub struct Env {
    pub dir: TempDir,
    pub database_url: Option<String>,
}

/// PostgreSQL, plain or Citus (`CANDOR_TEST_BACKEND=postgres` or `citus`).
pub fn postgres_backend() -> bool {
    std::env::var("CANDOR_TEST_BACKEND").is_ok_and(|b| b == "postgres" || b == "citus")
}

/// Creates a database for one test on the server named by CANDOR_TEST_DATABASE_URL (a
/// Citus cluster of its own when that server is a Citus coordinator).
pub async fn fresh_database() -> String {
    let admin = std::env::var("CANDOR_TEST_DATABASE_URL").expect(
        "CANDOR_TEST_BACKEND=postgres needs CANDOR_TEST_DATABASE_URL (run the tests through scripts/with-postgres)",
    );
    let name = format!("api_{}", candor_core::SubjectId::random());
    let url = candor_store::postgres::provision::create_database(&admin, &name)
        .await
        .unwrap();
    if std::env::var("CANDOR_TEST_BACKEND").is_ok_and(|b| b == "citus") {
        let server = candor_store::postgres::provision::server(&url)
            .await
            .unwrap();
        assert!(
            matches!(
                server,
                candor_store::postgres::provision::Server::Citus { .. }
            ),
            "CANDOR_TEST_BACKEND=citus but {admin} is not a Citus coordinator with workers"
        );
    }
    url
}

/// A test's database goes with its data directory. On Citus this matters beyond disk:
/// every database with the extension runs a maintenance daemon on each node that keeps
/// connections to the workers, and a suite's worth of them would exhaust the workers'
/// connection pool for the tests that run after it.
impl Drop for Env {
    fn drop(&mut self) {
        let (Some(url), Ok(admin)) = (
            self.database_url.take(),
            std::env::var("CANDOR_TEST_DATABASE_URL"),
        ) else {
            return;
        };
        let Some(name) = url.rsplit('/').next().map(str::to_owned) else {
            return;
        };
        crate::databases::drop_database(admin, name);
    }
}

pub async fn fresh_env() -> Env {
    Env {
        dir: tempfile::tempdir().unwrap(),
        database_url: if postgres_backend() {
            Some(fresh_database().await)
        } else {
            None
        },
    }
}

pub async fn spawn() -> TestApp {
    spawn_env(fresh_env().await, "").await
}

/// Starts the app with extra operator configuration (TOML).
pub async fn spawn_with(config: &str) -> TestApp {
    spawn_env(fresh_env().await, config).await
}

/// Starts the app on an existing environment (e.g. to test a restart).
pub async fn spawn_env(env: Env, config: &str) -> TestApp {
    spawn_clocked(env, config, candor_server::state::system_clock()).await
}

/// A clock a test moves by hand: milliseconds since the epoch.
pub fn manual_clock(
    start_ms: i64,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicI64>,
    candor_server::state::Clock,
) {
    let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(start_ms));
    let read = now.clone();
    (
        now,
        std::sync::Arc::new(move || read.load(std::sync::atomic::Ordering::SeqCst)),
    )
}

/// Where this app records its responses, when `CANDOR_TEST_RESPONSE_LOG` names a
/// directory: `scripts/check-responses` then checks each against the OpenAPI document.
fn response_log() -> Option<std::path::PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::var_os("CANDOR_TEST_RESPONSE_LOG")?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(std::path::Path::new(&dir).join(format!("{}-{n}.jsonl", std::process::id())))
}

/// Starts the app with `config` and the given clock.
pub async fn spawn_clocked(env: Env, config: &str, clock: candor_server::state::Clock) -> TestApp {
    let mut s = Settings::parse(config, "test", &|_| None)
        .unwrap()
        .with_demo_credentials();
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.data_dir = env.dir.path().to_owned();
    if !config.contains("[limits") {
        // Every test's requests come from one address, many more and faster than a
        // person's: rate limits are tested where a test configures them (`limits.rs`).
        s.limits.per_address = None;
        s.limits.browser_key = None;
        s.limits.new_subjects_per_minute = 1_000_000;
    }
    s.database = env.database_url.clone().map(|url| {
        let mut d = candor_server::config::DatabaseSettings::new(url);
        d.resync_interval_ms = 1000;
        d
    });
    s.response_log = response_log();
    let app = Application::build_with_clock(s, clock).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        base,
        client: Client::new(),
        state,
        env: Some(env),
        stop: Some(tx),
        task: Some(task),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Graceful stop: in-flight requests finish, the store flushes.
    pub async fn stop(mut self) -> Env {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        self.env.take().unwrap()
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .basic_auth(key, Some(""))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// GET as the browser source (Basic auth), as a consent prompt would.
    pub async fn get_as_browser(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .basic_auth(BROWSER_KEY, Some(""))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn batch(&self, msgs: Vec<Value>) -> Value {
        let r = self
            .post("/v1/batch", SERVER_KEY, json!({ "batch": msgs }))
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn consent(&self, anon: &str, choices: Value) -> Value {
        let r = self
            .post(
                "/v1/consent",
                BROWSER_KEY,
                json!({"anonymousId": anon, "choices": choices}),
            )
            .await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// GET without credentials, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GET with a bearer token (admin, subject or advertiser), as JSON.
    pub async fn get_bearer(&self, path: &str, token: &str) -> Value {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn stats(&self) -> Value {
        self.client
            .get(self.url("/v1/admin/stats"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn events(&self) -> u64 {
        self.stats().await["events"].as_u64().unwrap()
    }

    /// All stored events, decrypted, with their purposes (and `_eventMs`/`_receivedMs`).
    pub async fn stored(&self) -> Vec<(Vec<String>, Value)> {
        let store = &self.state.store;
        let mut out = Vec::new();
        for e in store.events_page(0, 100_000).await.unwrap() {
            let key = store.subject_key(e.subject).await.unwrap().unwrap();
            let plain = candor_store::seal::open_payload(&key, &e).unwrap();
            let names = self
                .state
                .catalog
                .names(e.purposes)
                .iter()
                .map(|p| p.to_string())
                .collect();
            let mut v: Value = serde_json::from_slice(&plain).unwrap();
            // The columns beside the payload, for tests to check.
            v["_eventMs"] = json!(e.event_ms.0);
            v["_receivedMs"] = json!(e.received_ms.0);
            out.push((names, v));
        }
        out
    }
}

pub fn track(anon: &str, id: &str) -> Value {
    json!({"type": "track", "event": "App Session", "anonymousId": anon, "messageId": id,
           "properties": {"app": "FitTrack"}})
}

pub async fn code_of(r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or("").to_owned())
}

/// A proptest runner for `cases` cases with the default settings otherwise (the
/// property tests drive a real server, so each sets how many requests it can afford).
pub fn runner(cases: u32) -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases,
        ..proptest::test_runner::Config::default()
    })
}

/// Creates an advertiser with a monthly budget of `epsilon` (δ 1e-4); its API key.
pub async fn create_advertiser(app: &TestApp, id: &str, epsilon: f64) -> String {
    let r = app
        .client
        .post(app.url("/v1/admin/advertisers"))
        .bearer_auth(ADMIN)
        .json(&json!({"id": id, "name": format!("Advertiser {id}"),
                      "budget": {"epsilon": epsilon, "delta": 1e-4}}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["apiKey"].as_str().unwrap().to_owned()
}

/// A subject token for `user`, minted through the admin API.
pub async fn mint_token(app: &TestApp, user: &str) -> String {
    let r = app
        .client
        .post(app.url("/v1/admin/subject-tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"userId": user, "ttlSeconds": 600}))
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub use crate::smtp_sink::{link, SmtpSink};

/// What the API tests add to the shared sink: its `[email]` configuration and
/// waiting (without blocking the runtime) for mail to arrive.
#[allow(async_fn_in_trait)]
pub trait SinkExt {
    fn config(&self) -> String;
    async fn wait_to(&self, to: &str, n: usize) -> Vec<String>;
    async fn wait_for(&self, n: usize) -> Vec<(String, String)>;
}

impl SinkExt for SmtpSink {
    /// An `[email]` configuration sending to this sink, with two lists.
    fn config(&self) -> String {
        format!(
            r#"
[email]
from = "news@example.com"
from_name = "Example News"
base_url = "http://127.0.0.1"
keep_origin = true
retry_base_seconds = 1
unsubscribe_mailto = "leave@example.com"
resend_max = 2
[email.smtp]
host = "127.0.0.1"
port = {}
tls = "never"
timeout_seconds = 10
[[email.lists]]
name = "news"
title = "Monthly news"
description = "What is new, once a month."
[[email.lists]]
name = "offers"
title = "Offers"
"#,
            self.port
        )
    }

    /// Waits (bounded) until the server has accepted `n` messages to `to`; returns them.
    async fn wait_to(&self, to: &str, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let got: Vec<String> = self
                .accepted()
                .into_iter()
                .filter(|(t, _)| t.eq_ignore_ascii_case(to))
                .map(|(_, raw)| raw)
                .collect();
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Waits (bounded) until the server has accepted at least `n` messages.
    async fn wait_for(&self, n: usize) -> Vec<(String, String)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let got = self.accepted();
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}
