//! The SMTP client against a real SMTP server (`scripts/smtp-sink`, aiosmtpd), one per
//! test on its own port: what arrives, dot-stuffing, temporary and permanent refusals,
//! a message abandoned before its dot, STARTTLS with a private CA, and credentials
//! never sent in the clear. A test waits on what the sink logs (bounded), never on a
//! bare sleep.
#![allow(clippy::unwrap_used)]

use candor_mail::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

#[path = "../../../tests/support/smtp_sink.rs"]
mod smtp_sink;
use smtp_sink::SmtpSink;

/// What the sink accepted, as its log records it.
fn accepted(sink: &SmtpSink) -> Vec<serde_json::Value> {
    sink.log()
        .into_iter()
        .filter(|e| e["event"] == "accepted")
        .collect()
}

fn eml(sink: &SmtpSink, seq: u64) -> String {
    std::fs::read_to_string(sink.dir.path().join(format!("{seq}.eml"))).unwrap()
}

fn settings(sink: &SmtpSink, host: &str, tls: TlsMode) -> SmtpSettings {
    SmtpSettings {
        host: host.into(),
        port: sink.port,
        tls,
        credentials: None,
        hello_name: "candor.test".into(),
        timeout: Duration::from_secs(10),
        extra_root_pem: None,
    }
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

fn draft(to: &str, text: &str) -> Draft {
    Draft {
        from: addr("news@example.com"),
        from_name: Some("News".into()),
        to: addr(to),
        subject: "Hello".into(),
        text: text.into(),
        html: Some("<p>Hello</p>".into()),
        message_id: format!("c1.{}@example.com", to.replace('@', ".")),
        headers: vec![
            (
                "List-Unsubscribe".into(),
                "<https://candor.example.com/email/unsubscribe?t=x.y>".into(),
            ),
            (
                "List-Unsubscribe-Post".into(),
                "List-Unsubscribe=One-Click".into(),
            ),
            ("X-Candor-Campaign".into(), "12".into()),
        ],
    }
}

/// Waits (bounded) until the sink's log satisfies `done`: the sink writes its log
/// before it answers, but a closed connection is seen by the server after the client
/// has moved on.
async fn until(sink: &SmtpSink, what: &str, done: impl Fn(&[serde_json::Value]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&sink.log()) {
        assert!(Instant::now() < deadline, "the sink never logged {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn events(log: &[serde_json::Value], event: &str) -> usize {
    log.iter().filter(|e| e["event"] == event).count()
}

async fn send(c: &mut Connection, to: &str, text: &str) -> Result<Reply, SmtpError> {
    let body = compose(&draft(to, text), SystemTime::now()).unwrap();
    let env = Envelope {
        from: addr("news@example.com"),
        to: addr(to),
    };
    let p = c.begin(&env, &body).await?;
    p.commit().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_whole_with_their_headers() {
    let sink = SmtpSink::start(0);
    let mut c = Connection::open(&settings(&sink, "127.0.0.1", TlsMode::Opportunistic))
        .await
        .unwrap();
    assert!(!c.is_encrypted());
    let text = "first\n.\n..two\n.hidden\nlast";
    let r = send(&mut c, "ann@example.org", text).await.unwrap();
    assert!(r.is_positive(), "{r}");
    // A second message on the same connection.
    let r = send(&mut c, "bob@example.org", "x").await.unwrap();
    assert!(r.is_positive());
    c.quit().await;
    let acc = accepted(&sink);
    assert_eq!(acc.len(), 2);
    assert_eq!(acc[0]["rcpt_tos"][0], "ann@example.org");
    assert_eq!(acc[0]["message_id"], "<c1.ann.example.org@example.com>");
    let eml = eml(&sink, 1);
    assert!(eml.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert!(eml.contains("<https://candor.example.com/email/unsubscribe?t=x.y>"));
    assert!(eml.contains("text/html") && eml.contains("text/plain"));
    assert!(eml.contains("multipart/alternative"));
    assert_eq!(acc[0]["tls"], false);
    let head = eml.split("\r\n\r\n").next().unwrap();
    for name in [
        "Message-ID",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "X-Candor-Campaign",
        "Date",
        "Subject",
    ] {
        let n = head
            .split("\r\n")
            .filter(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .count();
        assert_eq!(n, 1, "{name} once in {head}");
    }
    assert!(head.contains("X-Candor-Campaign: 12"));
    // Dot-stuffing undone by the server: the text part arrives as written.
    assert!(
        eml.contains("first\r\n.\r\n..two\r\n.hidden\r\nlast"),
        "{eml}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_temporary_or_permanent() {
    let sink = SmtpSink::start(0);
    let s = settings(&sink, "127.0.0.1", TlsMode::Never);
    let mut c = Connection::open(&s).await.unwrap();
    let e = send(&mut c, "tempfail-1-a@example.org", "x")
        .await
        .unwrap_err();
    assert!(!e.is_permanent(), "{e}");
    assert!(matches!(
        e,
        SmtpError::Rejected {
            stage: Stage::RcptTo,
            ..
        }
    ));
    c.reset().await.unwrap();
    let r = send(&mut c, "tempfail-1-a@example.org", "x").await.unwrap();
    assert!(r.is_positive());
    c.reset().await.unwrap();
    let e = send(&mut c, "bounce-b@example.org", "x").await.unwrap_err();
    assert!(e.is_permanent());
    assert!(matches!(
        e,
        SmtpError::Rejected {
            stage: Stage::RcptTo,
            ..
        }
    ));
    c.reset().await.unwrap();
    // Refused at the dot: a complete reply, permanent.
    let r = send(&mut c, "datafail-c@example.org", "x").await.unwrap();
    assert!(r.is_permanent(), "{r}");
    let acc = accepted(&sink);
    assert_eq!(acc.len(), 1, "{acc:?}");
    assert_eq!(acc[0]["rcpt_tos"][0], "tempfail-1-a@example.org");
    // The server saw each attempt: one 451, one 550, one 554.
    let log = sink.log();
    assert_eq!(events(&log, "rcpt_refused"), 2, "{log:?}");
    assert_eq!(events(&log, "data_refused"), 1, "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_refusal_retried_on_a_fresh_connection_arrives_once() {
    let sink = SmtpSink::start(0);
    let s = settings(&sink, "127.0.0.1", TlsMode::Never);
    let mut c = Connection::open(&s).await.unwrap();
    let e = send(&mut c, "tempfail-2-a@x.test", "x").await.unwrap_err();
    assert!(!e.is_permanent(), "{e}");
    c.quit().await;
    let mut attempts = 1;
    let r = loop {
        let mut c = Connection::open(&s).await.unwrap();
        attempts += 1;
        match send(&mut c, "tempfail-2-a@x.test", "x").await {
            Ok(r) => break r,
            Err(e) => assert!(!e.is_permanent() && attempts < 5, "{e}"),
        }
    };
    assert!(r.is_positive(), "{r}");
    assert_eq!(attempts, 3);
    assert_eq!(accepted(&sink).len(), 1);
    assert_eq!(events(&sink.log(), "rcpt_refused"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_its_dot_never_arrives() {
    let sink = SmtpSink::start(0);
    let s = settings(&sink, "127.0.0.1", TlsMode::Never);
    let mut c = Connection::open(&s).await.unwrap();
    let body = compose(&draft("ann@example.org", "never"), SystemTime::now()).unwrap();
    let env = Envelope {
        from: addr("news@example.com"),
        to: addr("ann@example.org"),
    };
    let p = c.begin(&env, &body).await.unwrap();
    drop(p);
    assert!(!c.is_usable(), "abandoned: the connection is closed");
    assert!(matches!(
        c.begin(&env, &body).await.err(),
        Some(SmtpError::Broken)
    ));
    // The server has seen the connection go, mid-DATA, without the dot: it discarded
    // the message, which can never be completed now.
    until(&sink, "the abandoned connection closing", |log| {
        events(log, "closed") >= 1
    })
    .await;
    assert_eq!(accepted(&sink).len(), 0, "{:?}", sink.log());
    // One sent after it on a new connection arrives, and is the only one.
    let mut c2 = Connection::open(&s).await.unwrap();
    send(&mut c2, "bob@example.org", "after").await.unwrap();
    let acc = accepted(&sink);
    assert_eq!(acc.len(), 1);
    assert_eq!(acc[0]["rcpt_tos"][0], "bob@example.org");
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl {args:?}");
}

/// A private CA and a certificate for `localhost` signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Candor test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let (cert, key) = (
        certs.path().join("server.pem"),
        certs.path().join("server.key"),
    );
    let sink = SmtpSink::start_with(&[
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ]);
    // Without the CA the certificate is not trusted: no mail.
    let s = settings(&sink, "localhost", TlsMode::Required);
    let e = Connection::open(&s).await.err().unwrap();
    assert!(matches!(e, SmtpError::Tls(_)), "{e}");
    let mut s = settings(&sink, "localhost", TlsMode::Required);
    s.extra_root_pem = Some(std::fs::read(certs.path().join("ca.pem")).unwrap());
    let mut c = Connection::open(&s).await.unwrap();
    assert!(c.is_encrypted());
    send(&mut c, "ann@example.org", "secret").await.unwrap();
    assert_eq!(accepted(&sink)[0]["tls"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_and_credentials_stay_encrypted() {
    let sink = SmtpSink::start(0);
    let e = Connection::open(&settings(&sink, "127.0.0.1", TlsMode::Required))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SmtpError::TlsRequired), "{e}");
    let mut s = settings(&sink, "127.0.0.1", TlsMode::Opportunistic);
    s.credentials = Some(("user".into(), "hunter2hunter2".into()));
    let e = Connection::open(&s).await.err().unwrap();
    assert!(matches!(e, SmtpError::AuthWithoutTls), "{e}");
    assert!(!format!("{s:?}").contains("hunter2"));
    assert!(accepted(&sink).is_empty());
}

/// AUTH PLAIN, or LOGIN when the server offers only that, over STARTTLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_over_starttls() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let (cert, key) = (
        certs.path().join("server.pem"),
        certs.path().join("server.key"),
    );
    for login_only in [false, true] {
        let mut args = vec![
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
            "--auth".as_ref(),
            "candor:s3cret-s3cret".as_ref(),
        ];
        if login_only {
            args.push("--auth-login-only".as_ref());
        }
        let sink = SmtpSink::start_with(&args);
        let mut s = settings(&sink, "localhost", TlsMode::Required);
        s.extra_root_pem = Some(std::fs::read(certs.path().join("ca.pem")).unwrap());
        s.credentials = Some(("candor".into(), "wrong-password".into()));
        let e = Connection::open(&s).await.err().unwrap();
        assert!(
            matches!(
                &e,
                SmtpError::Rejected {
                    stage: Stage::Auth,
                    ..
                }
            ),
            "login only {login_only}: {e}"
        );
        s.credentials = Some(("candor".into(), "s3cret-s3cret".into()));
        let mut c = Connection::open(&s).await.unwrap();
        send(&mut c, "ann@example.org", "hello").await.unwrap();
        c.quit().await;
        let acc = accepted(&sink);
        assert_eq!(acc.len(), 1);
        assert_eq!(acc[0]["tls"], true);
        assert_eq!(acc[0]["auth"], true, "login only {login_only}");
    }
}
