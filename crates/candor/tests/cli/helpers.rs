//! Starting and stopping the real binary.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub const SERVER_KEY: &str = "demo-server-write-key";
pub const BROWSER_KEY: &str = "demo-browser-write-key";
pub const ADMIN: &str = "demo-admin-token";

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_candor"))
}

/// Where a test's Candor keeps its data: a directory (keys, and the SQLite file) and,
/// for the PostgreSQL runs, a fresh database of its own.
pub struct Data {
    pub dir: tempfile::TempDir,
    pub db: Option<String>,
}

impl Data {
    pub fn sqlite() -> Self {
        Data {
            dir: tempfile::tempdir().unwrap(),
            db: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The arguments that point a `candor` command at this data.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--data-dir".to_owned(),
            self.dir.path().display().to_string(),
        ];
        if let Some(db) = &self.db {
            a.extend(["--database-url".to_owned(), db.clone()]);
        }
        a
    }

    pub fn backend(&self) -> &'static str {
        if self.db.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

/// A fresh database on the server named by CANDOR_TEST_DATABASE_URL; `None` only when
/// CANDOR_SKIP_POSTGRES=1 says so explicitly (otherwise a missing server fails the test).
pub fn fresh_database() -> Option<String> {
    let Ok(admin) = std::env::var("CANDOR_TEST_DATABASE_URL") else {
        if std::env::var("CANDOR_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("CANDOR_SKIP_POSTGRES=1: skipping the PostgreSQL run");
            return None;
        }
        panic!(
            "set CANDOR_TEST_DATABASE_URL (run through scripts/with-postgres or scripts/test-all)"
        );
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = format!("cli_{}", candor_core::SubjectId::random());
    let url = rt
        .block_on(candor_store::postgres::provision::create_database(
            &admin, &name,
        ))
        .unwrap();
    if std::env::var("CANDOR_TEST_BACKEND").is_ok_and(|b| b == "citus") {
        let server = rt
            .block_on(candor_store::postgres::provision::server(&url))
            .unwrap();
        assert!(
            matches!(
                server,
                candor_store::postgres::provision::Server::Citus { .. }
            ),
            "CANDOR_TEST_BACKEND=citus but {admin} is not a Citus coordinator with workers"
        );
    }
    Some(url)
}

/// The same test data on both stores: SQLite, then PostgreSQL.
pub fn both() -> Vec<Data> {
    let mut v = vec![Data::sqlite()];
    if let Some(db) = fresh_database() {
        v.push(Data {
            dir: tempfile::tempdir().unwrap(),
            db: Some(db),
        });
    }
    v
}

/// The `candor serve --demo` command for this data.
pub fn serve_demo(data: &Data, subjects: usize) -> Command {
    let mut c = bin();
    c.args([
        "serve",
        "--demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-subjects",
        &subjects.to_string(),
    ])
    .args(data.args());
    c
}

/// `candor serve --demo` on this data.
pub fn start(data: &Data, subjects: usize) -> Server {
    start_with(&mut serve_demo(data, subjects))
}

/// The operator's published key ring (`GET /v1/receipts/public-key`).
pub fn public_keys(s: &Server) -> Value {
    client()
        .get(s.url("/v1/receipts/public-key"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Runs a `candor` command on this data.
pub fn run(args: &[&str], data: &Data) -> Output {
    bin().args(args).args(data.args()).output().unwrap()
}

/// Exports everything from this data and returns the parsed lines.
pub fn export(data: &Data) -> Vec<Value> {
    let out = run(&["export"], data);
    assert!(out.status.success(), "{}", stdout(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub struct Server {
    pub child: Child,
    pub base: String,
    /// The server's own log (its stderr), shown when the test fails.
    log: std::path::PathBuf,
}

/// Starts a prepared `candor serve` command and waits for its address. Its log goes
/// to a file that a failing test prints (the server says why it answered 500; CI
/// shows nothing else).
pub fn start_with(cmd: &mut Command) -> Server {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = std::env::temp_dir().join(format!("candor-cli-test-{}-{n}.log", std::process::id()));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("server exited before printing its address")
            .unwrap();
        if let Some(rest) = line.trim().strip_prefix("API:") {
            break rest.trim().trim_end_matches("/v1").to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, base, log }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- the log of the server at {} ends:", self.base);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Server {
    pub fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait: the graceful path.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

pub fn consent(s: &Server, anon: &str, choices: Value) -> Value {
    let r = client()
        .post(s.url("/v1/consent"))
        .basic_auth(BROWSER_KEY, Some(""))
        .json(&json!({"anonymousId": anon, "choices": choices}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}
