//! A lean HTTP/1.1 load generator over raw keep-alive TCP connections.
//!
//! Why not a client library: the generator shares the machine's two cores with the
//! server under test, so it must spend as little CPU as possible. It writes prebuilt
//! request bytes and parses only the status line, `content-length` and, when asked, the
//! `"accepted":N` field of the body.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type MakeRequest = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;

#[derive(Default)]
pub struct Outcome {
    pub requests: u64,
    pub non_2xx: u64,
    pub accepted_events: u64,
    pub latencies_us: Vec<u32>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }

    pub fn rate(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }
}

/// Builds a POST with a JSON body.
pub fn post(path: &str, auth: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str("authorization: ");
        req.push_str(a);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Builds a GET.
pub fn get(path: &str, auth: Option<&str>) -> Vec<u8> {
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    if let Some(a) = auth {
        req.push_str("authorization: ");
        req.push_str(a);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Sends one request on a new connection: (status, body).
pub fn once(addr: SocketAddr, req: &[u8]) -> Result<(u16, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut conn = TcpStream::connect(addr).await?;
        let mut buf = Vec::new();
        round_trip(&mut conn, req, &mut buf).await
    })
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

/// Sends one request on the connection and reads the whole response.
/// Returns (status, body).
async fn round_trip(conn: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> Result<(u16, Vec<u8>)> {
    conn.write_all(req).await?;
    buf.clear();
    let header_end = loop {
        let mut chunk = [0u8; 16384];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = std::str::from_utf8(&buf[..header_end]).context("non-UTF-8 headers")?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let mut chunk = [0u8; 16384];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, buf[header_end..header_end + len].to_vec()))
}

fn accepted_of(body: &[u8]) -> u64 {
    let Some(p) = find(body, b"\"accepted\":") else {
        return 0;
    };
    body[p + 11..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u64, |n, c| n * 10 + u64::from(c - b'0'))
}

/// Drives `addr` with `conns` keep-alive connections for `duration`.
pub fn drive(
    addr: SocketAddr,
    conns: usize,
    duration: Duration,
    make: MakeRequest,
    count_accepted: bool,
) -> Result<Outcome> {
    drive_many(&[addr], conns, duration, make, count_accepted)
}

/// Like [`drive`], spreading the connections over several servers (nodes).
pub fn drive_many(
    addrs: &[SocketAddr],
    conns: usize,
    duration: Duration,
    make: MakeRequest,
    count_accepted: bool,
) -> Result<Outcome> {
    // One thread for the generator: the other core belongs to the server.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let counter = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::new();
        for c in 0..conns {
            let addr = addrs[c % addrs.len()];
            let (make, counter) = (make.clone(), counter.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Outcome::default();
                let mut conn = TcpStream::connect(addr).await?;
                conn.set_nodelay(true)?;
                let mut buf = Vec::with_capacity(65536);
                while Instant::now() < deadline {
                    let req = make(counter.fetch_add(1, Ordering::Relaxed));
                    let t = Instant::now();
                    let (status, body) = round_trip(&mut conn, &req, &mut buf).await?;
                    out.latencies_us
                        .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    out.requests += 1;
                    if !(200..300).contains(&status) {
                        out.non_2xx += 1;
                    } else if count_accepted {
                        out.accepted_events += accepted_of(&body);
                    }
                }
                anyhow::Ok(out)
            }));
        }
        let mut total = Outcome::default();
        for t in tasks {
            let o = t.await??;
            total.requests += o.requests;
            total.non_2xx += o.non_2xx;
            total.accepted_events += o.accepted_events;
            total.latencies_us.extend(o.latencies_us);
        }
        total.elapsed = start.elapsed();
        Ok(total)
    })
}
