//! A real SMTP server on loopback for tests (`scripts/smtp-sink`, aiosmtpd), shared by
//! the test binaries of `candor-mail`, `candor-server` and `candor` (each includes this
//! file with `#[path]`). One per test, on its own port, stopped when dropped.
// Each test binary uses what it needs of this file.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python with aiosmtpd: `CANDOR_PYTHON` (set by scripts/test-all) or the venv it
/// makes. Missing, the test fails saying how to get it (it is never skipped).
pub fn python() -> PathBuf {
    let p = std::env::var_os("CANDOR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/py-venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "no Python with aiosmtpd at {}: run scripts/test-all once, or set CANDOR_PYTHON",
        p.display()
    );
    p
}

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts a sink; `args` are extra flags (`--delay-ms`, `--tls-cert`, `--tls-key`).
    pub fn start_with(args: &[&std::ffi::OsStr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python())
            .arg(root().join("scripts/smtp-sink"))
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("smtp-sink said {line:?}"))
            .parse()
            .unwrap();
        Self { child, port, dir }
    }

    pub fn start(delay_ms: u32) -> Self {
        let d = delay_ms.to_string();
        Self::start_with(&["--delay-ms".as_ref(), d.as_ref()])
    }

    /// Every log entry (accepted messages and refusals), in order.
    pub fn log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every message the server accepted, in order: (recipient, raw message).
    pub fn accepted(&self) -> Vec<(String, String)> {
        self.log()
            .into_iter()
            .filter(|e| e["event"] == "accepted")
            .map(|e| {
                let seq = e["seq"].as_u64().unwrap();
                let raw =
                    std::fs::read_to_string(self.dir.path().join(format!("{seq}.eml"))).unwrap();
                (e["rcpt_tos"][0].as_str().unwrap().to_owned(), raw)
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mail's text with quoted-printable soft breaks and escapes undone.
pub fn unqp(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "");
    let mut out = Vec::new();
    let b = joined.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path and query of the first link to `path` in a mail whose links are built on
/// `http://127.0.0.1` (the configured base, not the test server's port).
pub fn link(raw: &str, path: &str) -> String {
    let text = unqp(raw);
    let start = text
        .find(&format!("http://127.0.0.1{path}"))
        .unwrap_or_else(|| panic!("no {path} link in {text}"));
    let rest = &text[start + "http://127.0.0.1".len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '"')
        .unwrap_or(rest.len());
    rest[..end].to_owned()
}
