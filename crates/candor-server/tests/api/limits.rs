//! Bounded edges (issue 11, part 3): slow clients are cut off after the configured
//! timeouts while the server keeps answering others; connections and requests in
//! flight are capped; rate limits answer 429 with Retry-After and recover; a bad
//! credential in the headers is refused before any body is read; a browser source's
//! new subjects are capped per minute.
//!
//! Timeouts here are configured small and the tests wait for them to fire; nothing
//! asserts how long anything took.

use crate::helpers::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: &str = "[limits]
header_read_timeout_ms = 300
body_read_timeout_ms = 300
idle_timeout_ms = 400
";

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or `max_polls` reads of 50 ms found
/// it still open); returns what was read and whether it closed. Each poll also lets
/// `between` send a little more (the trickle).
async fn until_closed(
    s: &mut TcpStream,
    max_polls: usize,
    mut between: impl FnMut() -> Option<&'static [u8]>,
) -> (String, bool) {
    let mut got = Vec::new();
    for _ in 0..max_polls {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {
                if let Some(b) = between() {
                    if s.write_all(b).await.is_err() {
                        return (String::from_utf8_lossy(&got).into(), true);
                    }
                }
            }
        }
    }
    (String::from_utf8_lossy(&got).into(), false)
}

/// Asks on a connection of its own: the server closes idle keep-alive connections
/// after 400 ms here, and a pooled one could be closed just as it is reused (the
/// ordinary keep-alive race every HTTP client has, not what this test is about).
async fn healthy(app: &TestApp) {
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = fresh.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_others_are_served_meanwhile() {
    let app = spawn_with(SHORT).await;
    // 1. Headers trickled a byte at a time, never finished.
    let mut trickle_head = connect(&app).await;
    trickle_head
        .write_all(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // 2. A body trickled a byte at a time, never finished.
    let mut trickle_body = connect(&app).await;
    trickle_body
        .write_all(
            format!(
                "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nAuthorization: Basic {}\r\n\r\n{{",
                base64_key(SERVER_KEY)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // 3. Nothing at all.
    let mut silent = connect(&app).await;
    // 4. One request, then idle on a keep-alive connection.
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    // The server keeps answering others while those hang on.
    healthy(&app).await;
    let polls = 400; // 20 s at most: a bound for a broken build, not a measurement
    let (_, closed) = until_closed(&mut trickle_head, polls, || Some(b"X")).await;
    assert!(closed, "a connection trickling its head must be closed");
    healthy(&app).await;
    let (answer, closed) = until_closed(&mut trickle_body, polls, || Some(b" ")).await;
    assert!(closed, "a connection trickling its body must be closed");
    assert!(
        answer.contains(" 408 ") && answer.contains("request_timeout"),
        "{answer}"
    );
    let (_, closed) = until_closed(&mut silent, polls, || None).await;
    assert!(closed, "a connection that sends nothing must be closed");
    let (answer, closed) = until_closed(&mut idle, polls, || None).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection must be closed");
    healthy(&app).await;
}

fn base64_key(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
}

/// A write key in the headers is checked before the body is read: a bad one is
/// refused at once (401), where reading the never-sent body would have timed out.
#[tokio::test]
async fn a_bad_key_in_the_headers_is_refused_before_the_body() {
    let app = spawn_with(SHORT).await;
    for path in ["/v1/batch", "/v1/track", "/v1/prompt/events"] {
        let mut s = connect(&app).await;
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nAuthorization: Basic {}\r\n\r\n",
                base64_key("not-a-valid-key-at-all")
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let (answer, _) = until_closed(&mut s, 400, || None).await;
        assert!(
            answer.contains(" 401 ") && answer.contains("invalid_write_key"),
            "{path}: {answer}"
        );
    }
}

#[tokio::test]
async fn connections_and_requests_in_flight_are_capped() {
    let app = spawn_with(
        "[limits]
max_connections = 2
max_in_flight = 1
body_read_timeout_ms = 30000
header_read_timeout_ms = 30000
idle_timeout_ms = 30000
",
    )
    .await;
    // One connection holds the only in-flight slot: its body never finishes.
    let mut holder = connect(&app).await;
    holder
        .write_all(
            format!(
                "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nAuthorization: Basic {}\r\n\r\n{{",
                base64_key(SERVER_KEY)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // A second connection is allowed; its request finds no slot (once the first has
    // reached the handler).
    let mut second = connect(&app).await;
    let mut overloaded = String::new();
    for _ in 0..200 {
        second
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 2048];
        let n = second.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.contains(" 503 ") {
            overloaded = text;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        overloaded.contains("overloaded")
            && overloaded.to_ascii_lowercase().contains("retry-after: 1"),
        "{overloaded}"
    );
    // A third connection is closed at accept.
    let mut third = connect(&app).await;
    let (_, closed) = until_closed(&mut third, 400, || None).await;
    assert!(closed);
    // Freed, everything works again.
    drop(holder);
    drop(second);
    let mut ok = false;
    for _ in 0..400 {
        if let Ok(r) = app.client.get(app.url("/healthz")).send().await {
            if r.status() == 200 {
                ok = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok);
}

/// Token buckets on the application's clock: the test moves time instead of sleeping.
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_recover() {
    let (now, clock) = manual_clock(1_800_000_000_000);
    let app = spawn_clocked(
        fresh_env().await,
        "[limits.per_address]
per_second = 1
burst = 2
[limits.browser_key]
per_second = 1
burst = 1
",
        clock,
    )
    .await;
    let prompt = || app.client.get(app.url("/v1/prompt?lang=en")).send();
    // Per address (unauthenticated and browser-key requests share it).
    assert_eq!(prompt().await.unwrap().status(), 200);
    assert_eq!(prompt().await.unwrap().status(), 200);
    let r = prompt().await.unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(code_of(r).await, (429, "rate_limited".into()));
    // A server key is not limited by default, nor by the address's bucket.
    for _ in 0..5 {
        assert_eq!(app.batch(vec![]).await["success"], true);
    }
    // Recovers once the time it said has passed.
    now.fetch_add(1000, Ordering::SeqCst);
    assert_eq!(prompt().await.unwrap().status(), 200);
    assert_eq!(prompt().await.unwrap().status(), 429);
    // The browser key's own bucket (all its visitors together) runs out first here,
    // with the address's bucket still holding a token.
    now.fetch_add(60_000, Ordering::SeqCst);
    let browser = || app.post("/v1/batch", BROWSER_KEY, json!({"batch": []}));
    assert_eq!(browser().await.status(), 200);
    let r = browser().await;
    assert_eq!(code_of(r).await, (429, "rate_limited".into()));
    now.fetch_add(1000, Ordering::SeqCst);
    assert_eq!(browser().await.status(), 200);
}

#[tokio::test]
async fn new_subjects_per_browser_source_are_capped_per_minute() {
    let (now, clock) = manual_clock(1_800_000_000_000);
    let app = spawn_clocked(
        fresh_env().await,
        "[limits]\nnew_subjects_per_minute = 2\n[limits.per_address]\nper_second = 0\nburst = 1\n",
        clock,
    )
    .await;
    let choose = |anon: &str| {
        app.post(
            "/v1/consent",
            BROWSER_KEY,
            json!({"anonymousId": anon, "choices": {"analytics": "grant"}}),
        )
    };
    assert_eq!(choose("n1").await.status(), 200);
    assert_eq!(choose("n2").await.status(), 200);
    let r = choose("n3").await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(code_of(r).await, (429, "rate_limited".into()));
    let before = app.stats().await;
    // Existing subjects are not new: still served.
    let r: Value = choose("n1").await.json().await.unwrap();
    assert!(r["subject"].is_string());
    assert_eq!(app.stats().await["subjects"], before["subjects"]);
    // A server key creates subjects as it needs.
    let r = app
        .post(
            "/v1/consent",
            SERVER_KEY,
            json!({"anonymousId": "s1", "choices": {"analytics": "grant"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Half a minute later there is room for one more.
    now.fetch_add(30_000, Ordering::SeqCst);
    assert_eq!(choose("n3").await.status(), 200);
    assert_eq!(choose("n4").await.status(), 429);
}
