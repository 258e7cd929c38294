//! `candor-bench soak` (issue 11): minutes of mixed load against the release server —
//! single events, batches, consent changes, consent reads and advertiser insight
//! queries on keep-alive connections, and a few slow clients trickling request heads
//! that the server must cut off — printing per minute the requests/s, the p99 latency,
//! the non-2xx answers, the slow clients cut off and the server's RSS. What it should
//! show: RSS flat after warm-up, p99 stable.
//!
//! RSS is split into anonymous memory (the heap) and file-backed pages (SQLite's memory
//! map of the database, capped at 256 MiB by `mmap_size`, which grows with the file up
//! to that cap and is the kernel's to reclaim), and set against the events accepted:
//! the heap holds the `messageId` de-duplication window, about 40 bytes per event
//! accepted in the last 24 hours by design (`candor_store::dedup`), so under minutes of
//! sustained load it grows with the events and nothing else should.

use crate::ingest::{event, rss_kib, start_candor, SEED};
use crate::load::{self, MakeRequest};
use anyhow::{bail, Result};
use base64::Engine;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `candor-bench soak`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Minutes of load.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    minutes: u64,
    /// Keep-alive connections of the mixed load.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Slow clients trickling request heads.
    #[arg(long, default_value_t = 4)]
    slow_clients: usize,
    /// Synthetic subjects the demo seeds.
    #[arg(long, default_value_t = 5000)]
    subjects: usize,
}

const ADMIN: &str = "Bearer demo-admin-token";

/// One request of the mix, by its number: of every 20, 10 single events, 4 batches of
/// 20, 3 consent changes, 2 consent reads, 1 insight query.
/// `first` numbers the requests of this minute on from where the last minute's ended
/// (the load driver counts from 0 each time), so every event has a new `messageId`: a
/// repeated id would be answered from the de-duplication window and stored nowhere.
fn mix(server: String, advertiser: String, subjects: usize, first: u64) -> MakeRequest {
    Arc::new(move |i| {
        let i = i + first;
        let who = (i as usize * 7919) % subjects;
        let anon = format!("demo-{SEED}-anon-{who:06}");
        match i % 20 {
            0..=9 => load::post(
                "/v1/track",
                Some(&server),
                event(i, 0, subjects, true).as_bytes(),
            ),
            10..=13 => {
                let events: Vec<String> = (0..20).map(|j| event(i, j + 1, subjects, true)).collect();
                load::post(
                    "/v1/batch",
                    Some(&server),
                    format!(r#"{{"batch":[{}]}}"#, events.join(",")).as_bytes(),
                )
            }
            14..=16 => {
                let choice = if (i / 20).is_multiple_of(2) { "grant" } else { "refuse" };
                load::post(
                    "/v1/consent",
                    Some(&server),
                    format!(r#"{{"anonymousId":"{anon}","choices":{{"personalization":"{choice}"}}}}"#)
                        .as_bytes(),
                )
            }
            17 | 18 => load::get(&format!("/v1/consent?anonymousId={anon}"), Some(&server)),
            _ => load::post(
                "/v1/insights/query",
                Some(&advertiser),
                br#"{"metric":"histogram","feature":"app_usage","groupBy":["age_band"],"epsilon":0.001}"#,
            ),
        }
    })
}

/// Slow clients: each opens a connection and sends its request head one byte a second;
/// when the server closes it (the header timeout), it counts one and starts again.
fn slow_clients(addr: SocketAddr, n: usize, stop: Arc<AtomicBool>, cut: Arc<AtomicU64>) {
    for _ in 0..n {
        let (stop, cut) = (stop.clone(), cut.clone());
        std::thread::spawn(move || {
            let head = b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                };
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let byte = [head.get(sent).copied().unwrap_or(b'x')];
                    if s.write_all(&byte).is_err() {
                        cut.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    sent += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        });
    }
}

/// Events the server has accepted so far (`candor_events_accepted_total`, summed over
/// its labels), read from `/metrics`; 0 if it cannot be read.
fn events_accepted(addr: SocketAddr) -> u64 {
    let Ok((200, body)) = load::once(addr, &load::get("/metrics", Some(ADMIN))) else {
        return 0;
    };
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("candor_events_accepted_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Bytes of the files under `dir` (the database and its WAL grow with every event
/// stored: about 1.5 KB each here, so a 10-minute soak writes gigabytes).
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

pub fn run(a: Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("candor-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!("seeding the demo operator ({} subjects)...", a.subjects);
    let (candor, addr) = start_candor(&dir.join("candor"), a.subjects)?;
    let pid = candor.0.id();
    let server = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("demo-server-write-key:")
    );
    // An advertiser with budget for the whole run.
    let (status, body) = load::once(
        addr,
        &load::post(
            "/v1/admin/advertisers",
            Some(ADMIN),
            br#"{"id":"soak","name":"Soak","budget":{"epsilon":1000,"delta":0.0001},"period":"month"}"#,
        ),
    )?;
    if status != 201 {
        bail!(
            "creating the soak advertiser: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let advertiser = format!("Bearer {}", v["apiKey"].as_str().unwrap_or_default());

    let stop = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicU64::new(0));
    slow_clients(addr, a.slow_clients, stop.clone(), cut.clone());
    println!(
        "{} minutes of mixed load on {} connections (per 20 requests: 10 single events, 4 batches of 20, 3 consent changes, 2 consent reads, 1 insight query) and {} slow clients",
        a.minutes, a.connections, a.slow_clients
    );
    println!(
        "{:>6} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10}",
        "minute",
        "req/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "slow cut",
        "RSS MiB",
        "anon MiB",
        "file MiB",
        "events",
        "anon B/ev",
        "disk MiB"
    );
    let base_anon = rss_kib(pid, "RssAnon:");
    let base_events = events_accepted(addr);
    let started = Instant::now();
    for minute in 1..=a.minutes {
        let cut_before = cut.load(Ordering::Relaxed);
        let mut o = load::drive(
            addr,
            a.connections,
            Duration::from_secs(60),
            mix(
                server.clone(),
                advertiser.clone(),
                a.subjects,
                minute * 1_000_000_000,
            ),
            false,
        )?;
        let anon = rss_kib(pid, "RssAnon:");
        let events = events_accepted(addr).saturating_sub(base_events);
        println!(
            "{:>6} {:>10.0} {:>9.2} {:>9.2} {:>9} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>12} {:>10.1} {:>10.0}",
            minute,
            o.rate(o.requests),
            o.percentile_ms(0.50),
            o.percentile_ms(0.99),
            o.non_2xx,
            cut.load(Ordering::Relaxed) - cut_before,
            rss_kib(pid, "VmRSS:") as f64 / 1024.0,
            anon as f64 / 1024.0,
            rss_kib(pid, "RssFile:") as f64 / 1024.0,
            events,
            anon.saturating_sub(base_anon) as f64 * 1024.0 / events.max(1) as f64,
            bytes_under(&dir) as f64 / 1048576.0,
        );
    }
    stop.store(true, Ordering::Relaxed);
    println!(
        "done in {:.0} s; peak RSS {:.1} MiB",
        started.elapsed().as_secs_f64(),
        rss_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    drop(candor);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
