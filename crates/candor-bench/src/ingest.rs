//! The ingestion benchmark: Candor (release binary, demo operator) beside a do-nothing
//! baseline server, same load generator, same machine, one run.

use crate::load::{self, MakeRequest, Outcome};
use anyhow::{bail, Context, Result};
use base64::Engine;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const SEED: u64 = 42;
/// Connections for the PostgreSQL batch scenarios (split across nodes when two).
const PG_CONNS: usize = 16;

/// `candor-bench ingest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds of load per measured run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds of single-event requests, each followed by the baseline.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Synthetic subjects the demo seeds.
    #[arg(long, default_value_t = 3000)]
    subjects: usize,
    /// Skip the PostgreSQL scenarios.
    #[arg(long, conflicts_with = "postgres_only")]
    no_postgres: bool,
    /// Run only the PostgreSQL scenarios.
    #[arg(long)]
    postgres_only: bool,
    /// Instead: one node on plain PostgreSQL, then on Citus (a coordinator and two
    /// workers, scripts/citus-cluster), with CPU time per event per process and the
    /// scale model it gives.
    #[arg(long, conflicts_with_all = ["postgres_only", "no_postgres"])]
    citus: bool,
    /// Shards per distributed table for `--citus` (Citus' default).
    #[arg(long, default_value_t = 32)]
    citus_shards: u32,
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

pub(crate) struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_candor(dir: &Path, subjects: usize) -> Result<(Proc, SocketAddr)> {
    start_candor_on(dir, subjects, None)
}

/// Starts a node; with `database`, on PostgreSQL (keys shared through the environment,
/// as every node of one deployment must share them).
pub(crate) fn start_candor_on(
    dir: &Path,
    subjects: usize,
    database: Option<&str>,
) -> Result<(Proc, SocketAddr)> {
    let bin = std::env::current_exe()?.with_file_name("candor");
    if !bin.exists() {
        bail!(
            "{} not found: cargo build --release -p candor first",
            bin.display()
        );
    }
    let port = free_port()?;
    let mut child = Command::new(&bin)
        .args([
            "serve",
            "--demo",
            "--demo-subjects",
            &subjects.to_string(),
            "--demo-seed",
            &SEED.to_string(),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .args(
            database
                .map(|d| vec!["--database-url", d])
                .unwrap_or_default(),
        )
        .env("CANDOR_MASTER_KEY", "3".repeat(64))
        .env("CANDOR_SIGNING_KEY", "4".repeat(64))
        .env("CANDOR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    loop {
        let line = lines.next().context("candor exited early")??;
        if line.trim().starts_with("API:") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok((Proc(child), SocketAddr::from(([127, 0, 0, 1], port))))
}

/// nginx answering 200 to everything, or a built-in stand-in when nginx is absent.
fn start_baseline(dir: &Path) -> Result<(Option<Proc>, SocketAddr, String)> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if let Some(nginx) = nginx {
        let d = dir.display();
        let conf = format!(
            "worker_processes auto; daemon off; pid {d}/nginx.pid; error_log {d}/nginx-error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               keepalive_requests 1000000;\n\
               server {{ listen 127.0.0.1:{port}; location / {{ return 200; }} }} }}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir)
            .stderr(Stdio::null())
            .spawn()?;
        let t = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if t.elapsed() > Duration::from_secs(5) {
                bail!("nginx did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        return Ok((Some(Proc(child)), addr, "nginx (return 200)".into()));
    }
    let listener = std::net::TcpListener::bind(addr)?;
    std::thread::spawn(move || builtin_baseline(listener));
    Ok((
        None,
        addr,
        "built-in tokio server (nginx not installed)".into(),
    ))
}

fn builtin_baseline(listener: std::net::TcpListener) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async move {
        let _ = listener.set_nonblocking(true);
        let Ok(l) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut pending = Vec::new();
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    // Answer each complete request (headers + content-length body).
                    while let Some(h) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..h]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0usize);
                        if pending.len() < h + 4 + len {
                            break;
                        }
                        pending.drain(..h + 4 + len);
                        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
}

/// One app-session event. With `features`, it names its app's category, which makes an
/// insight feature for subjects who grant the insights purpose; without, the same bytes
/// under another property name, which makes none.
pub(crate) fn event(i: u64, j: usize, subjects: usize, features: bool) -> String {
    let who = (i as usize * 7919 + j * 104_729) % subjects;
    let key = if features {
        "app_category"
    } else {
        "app_kategory"
    };
    format!(
        r#"{{"type":"track","event":"App Session","anonymousId":"demo-{SEED}-anon-{who:06}","messageId":"bench-{i}-{j}","properties":{{"app":"FitTrack","{key}":"health_fitness","duration_s":{}}},"timestamp":"2026-11-29T10:00:00.000Z"}}"#,
        (i as usize + j) % 1800
    )
}

/// Batches of 100 events, message ids starting at `offset`.
pub(crate) fn batches(auth: &str, subjects: usize, offset: u64, features: bool) -> MakeRequest {
    let auth = auth.to_owned();
    Arc::new(move |i| {
        let events: Vec<String> = (0..100)
            .map(|j| event(i + offset, j, subjects, features))
            .collect();
        load::post(
            "/v1/batch",
            Some(&auth),
            format!(r#"{{"batch":[{}]}}"#, events.join(",")).as_bytes(),
        )
    })
}

/// Events/s with and without features per round, and (requests, accepted events) of the
/// last run with features.
type Rounds = (Vec<f64>, Vec<f64>, (u64, u64));

/// Batched ingest with and without insight features, alternating for `rounds` rounds
/// against the same nodes; returns the events/s of each and prints the median ratio.
#[allow(clippy::too_many_arguments)]
fn batches_with_and_without_features(
    label: &str,
    addrs: &[SocketAddr],
    conns: usize,
    dur: Duration,
    auth: &str,
    subjects: usize,
    rounds: usize,
    base: u64,
) -> Result<Rounds> {
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut last = None;
    // A first run warms caches, the page cache and the WAL up (not counted), and the
    // order alternates between rounds, so neither side always runs first.
    let warm = load::drive_many(
        addrs,
        conns,
        dur,
        batches(auth, subjects, base + (1 << 39), true),
        true,
    )?;
    report(&format!("{label} warm-up"), warm, true);
    for round in 0..rounds as u64 {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for features in order {
            let offset = base + (round << 34) + (u64::from(features) << 33);
            let o = load::drive_many(
                addrs,
                conns,
                dur,
                batches(auth, subjects, offset, features),
                true,
            )?;
            let eps = o.rate(o.accepted_events);
            let counts = (o.requests, o.accepted_events);
            let name = format!(
                "{label} {}",
                if features { "features" } else { "no features" }
            );
            report(&name, o, true);
            if features {
                with.push(eps);
                last = Some(counts);
            } else {
                without.push(eps);
            }
        }
    }
    let ratios: Vec<f64> = with.iter().zip(&without).map(|(w, n)| w / n).collect();
    println!(
        "  {label}: with features / without, per round: {} (median {:.3})",
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        median(ratios.clone())
    );
    let last = last.context("no round ran")?;
    Ok((with, without, last))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub(crate) fn report(name: &str, mut o: Outcome, events: bool) -> f64 {
    let rps = o.rate(o.requests);
    let eps = o.rate(o.accepted_events);
    println!(
        "{name:<34} {:>10.0} req/s {:>12} {:>9.2} {:>9.2} {:>9.2} {:>8}",
        rps,
        if events {
            format!("{eps:.0} ev/s")
        } else {
            "-".into()
        },
        o.percentile_ms(0.50),
        o.percentile_ms(0.99),
        o.percentile_ms(1.0),
        o.non_2xx
    );
    rps
}

pub fn run(a: Args) -> Result<()> {
    let rounds = a.rounds as usize;
    let dir = std::env::temp_dir().join(format!("candor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("demo-server-write-key:")
    );
    let dur = Duration::from_secs(a.seconds);
    if a.citus {
        crate::citus::run(&dir, a.subjects, dur, &auth, a.citus_shards)?;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    if a.postgres_only {
        postgres_scenarios(&dir, a.subjects, dur, &auth, rounds, None)?;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }

    println!(
        "seeding the demo operator ({} subjects, seed {SEED})...",
        a.subjects
    );
    let t = Instant::now();
    let (candor, caddr) = start_candor(&dir.join("candor"), a.subjects)?;
    let pid = candor.0.id();
    println!(
        "  ready in {:.1}s; candor RSS after seeding: {} KiB",
        t.elapsed().as_secs_f64(),
        rss_kib(pid, "VmRSS:")
    );
    let (_baseline, baddr, bname) = start_baseline(&dir)?;

    println!();
    println!(
        "{:<34} {:>16} {:>12} {:>9} {:>9} {:>9} {:>8}",
        "scenario", "requests", "accepted", "p50 ms", "p99 ms", "max ms", "non-2xx"
    );

    let subjects = a.subjects;
    let (with, without, (requests, accepted)) = batches_with_and_without_features(
        "candor /v1/batch x100 (8)",
        &[caddr],
        8,
        dur,
        &auth,
        subjects,
        rounds,
        0,
    )?;
    let batch_eps = median(with.clone());
    let offered = requests * 100;

    // Single events, alternating with the baseline: the ratio is what matters, and the
    // baseline's rate on a shared 2-core VM moves by tens of percent between runs, so
    // each round measures both back to back and the median ratio is reported.
    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..a.rounds {
        let offset = (round + 1) << 48;
        let auth_s = auth.clone();
        let make: MakeRequest = Arc::new(move |i| {
            load::post(
                "/v1/track",
                Some(&auth_s),
                event(i + offset, 0, subjects, true).as_bytes(),
            )
        });
        let single = load::drive(caddr, 32, dur, make, true)?;
        let single_rps = report("candor /v1/track (32 conns)", single, true);
        let auth_n = auth.clone();
        let make: MakeRequest = Arc::new(move |i| {
            load::post(
                "/v1/track",
                Some(&auth_n),
                event(i + offset, 0, subjects, true).as_bytes(),
            )
        });
        let base = load::drive(baddr, 32, dur, make, false)?;
        let base_rps = report("baseline /v1/track (32 conns)", base, false);
        ratios.push(single_rps / base_rps);
    }
    let single_median = median(ratios.clone());

    let peak = rss_kib(pid, "VmHWM:");
    println!();
    println!("baseline server: {bname}");
    println!("consent mix: {accepted} of {offered} offered events accepted ({:.1}%), the rest dropped by the gate", 100.0 * accepted as f64 / offered.max(1) as f64);
    println!("batched ingest: {batch_eps:.0} consent-gated, durably acknowledged events/s, median of {} rounds (target 100000)", with.len());
    println!(
        "batched ingest without insight features: {:.0} events/s; with features {:.3}x of that (median of rounds; target >= 0.95)",
        median(without.clone()),
        median(with.iter().zip(&without).map(|(w, n)| w / n).collect())
    );
    println!(
        "single-event requests: {single_median:.2}x the baseline's request rate, median of {} rounds (each: {}) (target >= 0.5)",
        ratios.len(),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "candor peak RSS: {peak} KiB ({:.0} bytes per seeded subject, all-inclusive)",
        peak as f64 * 1024.0 / a.subjects as f64
    );
    drop(candor);
    // The SQLite phase leaves hundreds of MB of dirty pages; left to background
    // writeback they would compete with PostgreSQL's fsyncs in the next phase. Deleting
    // the files drops them; `sync` flushes whatever else is pending.
    let _ = std::fs::remove_dir_all(dir.join("candor"));
    let _ = Command::new("sync").status();

    if !a.no_postgres {
        postgres_scenarios(&dir, a.subjects, dur, &auth, rounds, Some(batch_eps))?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// PostgreSQL on loopback: one node, then two nodes sharing the database, same load.
fn postgres_scenarios(
    dir: &Path,
    subjects: usize,
    dur: Duration,
    auth: &str,
    rounds: usize,
    sqlite_eps: Option<f64>,
) -> Result<()> {
    let pg = dir.join("pg");
    let port = free_port()?.to_string();
    println!();
    println!(
        "starting a PostgreSQL cluster (scripts/pg-cluster; fsync and synchronous_commit on)..."
    );
    let out = Command::new("scripts/pg-cluster")
        .arg("start")
        .arg(&pg)
        .arg(&port)
        .output()?;
    if !out.status.success() {
        bail!(
            "scripts/pg-cluster failed (run from the repository root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let url = String::from_utf8(out.stdout)?.trim().to_owned();
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("scripts/pg-cluster")
                .arg("stop")
                .arg(&self.0)
                .status();
        }
    }
    let _stop = Stop(pg.clone());
    println!("seeding the demo operator on PostgreSQL ({subjects} subjects)...");
    let (node_a, a_addr) = start_candor_on(&dir.join("pg-a"), subjects, Some(&url))?;
    println!();
    // PostgreSQL answers a batch in ~10 ms rather than ~3: more connections keep the
    // same amount of work in flight (Little's law), or the load generator would be
    // what limits the rate.
    let (with, without, _) = batches_with_and_without_features(
        "pg: 1 node /v1/batch x100 (16)",
        &[a_addr],
        PG_CONNS,
        dur,
        auth,
        subjects,
        rounds,
        1 << 40,
    )?;
    let one_eps = median(with.clone());
    let (node_b, b_addr) = start_candor_on(&dir.join("pg-b"), subjects, Some(&url))?;
    let two = load::drive_many(
        &[a_addr, b_addr],
        PG_CONNS,
        dur,
        batches(auth, subjects, 2 << 40, true),
        true,
    )?;
    let two_eps = two.rate(two.accepted_events);
    report("pg: 2 nodes /v1/batch x100 (16)", two, true);
    println!();
    println!(
        "PostgreSQL without insight features: {:.0} events/s on one node; with features {:.3}x of that (median of rounds; target >= 0.95)",
        median(without.clone()),
        median(with.iter().zip(&without).map(|(w, n)| w / n).collect())
    );
    println!();
    match sqlite_eps {
        Some(sq) => println!("PostgreSQL batched ingest: {one_eps:.0} events/s on one node (target 50000); {:.2}x SQLite's", one_eps / sq),
        None => println!("PostgreSQL batched ingest: {one_eps:.0} events/s on one node (target 50000)"),
    }
    println!(
        "two nodes together: {two_eps:.0} events/s, {:.2}x one node (target > 1)",
        two_eps / one_eps
    );
    println!(
        "(all on this machine's cores: the load generator, PostgreSQL and both nodes share them)"
    );
    drop(node_b);
    drop(node_a);
    Ok(())
}
