//! `candor-bench ingest --citus`: one Candor node ingesting batches into plain
//! PostgreSQL, then into a Citus cluster (a coordinator and two workers) on the same
//! machine in the same run, with the CPU time each process spent per event: Candor, the
//! database (or the coordinator), each worker. Then the scale model those figures give.
//!
//! CPU time is read from `/proc`: a server's postmaster with every live child process
//! (its own time plus that of children already reaped), before and after a measured
//! run. On one machine every process shares the same cores, so events/s here says
//! little about a cluster; the CPU seconds per event is what carries over.

use crate::ingest::{batches, free_port, report, rss_kib, start_candor_on};
use crate::load;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Connections driving batches of 100 (as for plain PostgreSQL in `ingest`).
const CONNS: usize = 16;

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// (utime + stime, cutime + cstime, ppid) of a process, in ticks.
fn stat(pid: u32) -> Option<(u64, u64, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after its closing parenthesis.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((n(11)? + n(12)?, n(13)? + n(14)?, n(1)? as u32))
}

/// CPU seconds used so far by the PostgreSQL server whose data directory is `data`.
fn server_cpu(data: &Path, hz: f64) -> Result<f64> {
    let pid: u32 = std::fs::read_to_string(data.join("postmaster.pid"))
        .with_context(|| format!("{}: not running", data.display()))?
        .lines()
        .next()
        .context("postmaster.pid")?
        .trim()
        .parse()?;
    let (own, reaped, _) = stat(pid).context("postmaster")?;
    let mut ticks = own + reaped;
    for e in std::fs::read_dir("/proc")? {
        let Ok(child) = e?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((t, _, ppid)) = stat(child) {
            if ppid == pid {
                ticks += t;
            }
        }
    }
    Ok(ticks as f64 / hz)
}

fn process_cpu(pid: u32, hz: f64) -> f64 {
    stat(pid).map_or(0.0, |(t, _, _)| t as f64 / hz)
}

/// What one measured run cost.
struct Measured {
    name: &'static str,
    events_per_s: f64,
    /// CPU µs per accepted event: Candor, then each database server.
    candor_us: f64,
    servers_us: Vec<(String, f64)>,
}

/// Warms up, then drives `dur` of batches at `addr` and reads the CPU spent.
#[allow(clippy::too_many_arguments)]
fn measure(
    name: &'static str,
    addr: std::net::SocketAddr,
    candor_pid: u32,
    servers: &[(String, PathBuf)],
    dur: Duration,
    auth: &str,
    subjects: usize,
    base: u64,
) -> Result<Measured> {
    let hz = clock_ticks();
    let warm = load::drive_many(
        &[addr],
        CONNS,
        dur,
        batches(auth, subjects, base, true),
        true,
    )?;
    report(&format!("{name} warm-up"), warm, true);
    let before_c = process_cpu(candor_pid, hz);
    let before: Vec<f64> = servers
        .iter()
        .map(|(_, d)| server_cpu(d, hz))
        .collect::<Result<_>>()?;
    let o = load::drive_many(
        &[addr],
        CONNS,
        dur,
        batches(auth, subjects, base + (1 << 36), true),
        true,
    )?;
    let after_c = process_cpu(candor_pid, hz);
    let after: Vec<f64> = servers
        .iter()
        .map(|(_, d)| server_cpu(d, hz))
        .collect::<Result<_>>()?;
    let events = o.accepted_events.max(1) as f64;
    let events_per_s = o.rate(o.accepted_events);
    report(name, o, true);
    let per = |secs: f64| secs * 1e6 / events;
    Ok(Measured {
        name,
        events_per_s,
        candor_us: per(after_c - before_c),
        servers_us: servers
            .iter()
            .zip(before.iter().zip(&after))
            .map(|((n, _), (b, a))| (n.clone(), per(a - b)))
            .collect(),
    })
}

struct Stop {
    script: &'static str,
    dir: PathBuf,
}

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new(self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

fn start(
    script: &'static str,
    dir: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> Result<(Stop, String)> {
    let out = Command::new(script)
        .arg("start")
        .arg(dir)
        .arg(port.to_string())
        .envs(env.iter().copied())
        .output()?;
    if !out.status.success() {
        bail!(
            "{script} failed (run from the repository root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let url = String::from_utf8(out.stdout)?
        .lines()
        .last()
        .context("no URL printed")?
        .trim()
        .to_owned();
    Ok((
        Stop {
            script,
            dir: dir.to_owned(),
        },
        url,
    ))
}

/// Three consecutive free ports (the coordinator's and the two workers').
fn three_ports() -> Result<u16> {
    for _ in 0..50 {
        let p = free_port()?;
        if p < 65_000 && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return Ok(p);
        }
    }
    bail!("no three consecutive free ports")
}

pub fn run(dir: &Path, subjects: usize, dur: Duration, auth: &str, shards: u32) -> Result<()> {
    println!(
        "{:<34} {:>16} {:>12} {:>9} {:>9} {:>9} {:>8}",
        "scenario", "requests", "accepted", "p50 ms", "p99 ms", "max ms", "non-2xx"
    );
    // Plain PostgreSQL first, as the yardstick.
    let pg_dir = dir.join("pg");
    let (pg_stop, pg_url) = start("scripts/pg-cluster", &pg_dir, free_port()?, &[])?;
    let (node, addr) = start_candor_on(&dir.join("pg-node"), subjects, Some(&pg_url))?;
    let plain = measure(
        "postgres: 1 node /v1/batch x100",
        addr,
        node.0.id(),
        &[("postgres".into(), pg_dir.join("data"))],
        dur,
        auth,
        subjects,
        3 << 40,
    )?;
    let plain_rss = rss_kib(node.0.id(), "VmHWM:");
    drop(node);
    drop(pg_stop);
    let _ = Command::new("sync").status();

    let citus_dir = dir.join("citus");
    let port = three_ports()?;
    println!("starting Citus: coordinator on {port}, workers on {} and {} ({shards} shards per table)...", port + 1, port + 2);
    let shards_s = shards.to_string();
    let (citus_stop, url) = start(
        "scripts/citus-cluster",
        &citus_dir,
        port,
        &[("CANDOR_CITUS_SHARD_COUNT", &shards_s)],
    )?;
    let (node, addr) = start_candor_on(&dir.join("citus-node"), subjects, Some(&url))?;
    let servers: Vec<(String, PathBuf)> = ["coordinator", "worker 1", "worker 2"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                (*n).to_owned(),
                citus_dir.join(format!("node{i}")).join("data"),
            )
        })
        .collect();
    let citus = measure(
        "citus: 1 node /v1/batch x100",
        addr,
        node.0.id(),
        &servers,
        dur,
        auth,
        subjects,
        4 << 40,
    )?;
    let citus_rss = rss_kib(node.0.id(), "VmHWM:");
    drop(node);
    drop(citus_stop);

    println!();
    println!(
        "CPU time per accepted event (µs), measured over {}s of batches:",
        dur.as_secs()
    );
    for m in [&plain, &citus] {
        let db: f64 = m.servers_us.iter().map(|(_, u)| u).sum();
        println!(
            "  {:<34} {:>9.0} events/s   candor {:>6.1}   {}   database total {:>6.1}",
            m.name,
            m.events_per_s,
            m.candor_us,
            m.servers_us
                .iter()
                .map(|(n, u)| format!("{n} {u:.1}"))
                .collect::<Vec<_>>()
                .join("   "),
            db
        );
    }
    println!("  candor peak RSS: {plain_rss} KiB on PostgreSQL, {citus_rss} KiB on Citus");
    let coord = citus.servers_us[0].1;
    let workers: f64 = citus.servers_us[1..].iter().map(|(_, u)| u).sum();
    let plain_db: f64 = plain.servers_us.iter().map(|(_, u)| u).sum();
    println!(
        "  Citus spends {:.2}x plain PostgreSQL's database CPU per event ({:.1} µs vs {:.1} µs); Candor {:.2}x",
        (coord + workers) / plain_db,
        coord + workers,
        plain_db,
        citus.candor_us / plain.candor_us
    );
    model(citus.candor_us, coord, workers);
    Ok(())
}

/// The throughput a cluster of `cores`-core machines would carry, from CPU µs per event:
/// the workers' share divides among them, Candor nodes add up, the coordinator does not.
fn model(candor_us: f64, coordinator_us: f64, workers_us: f64) {
    let cores = 8.0;
    let per_sec = |us: f64, machines: f64| machines * cores * 1e6 / us.max(0.001);
    println!();
    println!(
        "Scale model (8-core machines, CPU-bound, all cores busy; disks and network ignored):"
    );
    println!(
        "  events/s <= min(M x {:.0} [Candor nodes], N x {:.0} [workers], {:.0} [the one coordinator])",
        per_sec(candor_us, 1.0),
        per_sec(workers_us, 1.0),
        per_sec(coordinator_us, 1.0)
    );
    println!(
        "  {:>8} {:>14} {:>16} {:>20}",
        "workers", "Candor nodes", "events/s", "limited by"
    );
    for n in [2.0, 4.0, 8.0, 16.0, 32.0] {
        let workers = per_sec(workers_us, n);
        let coordinator = per_sec(coordinator_us, 1.0);
        let target = workers.min(coordinator);
        let m = (target / per_sec(candor_us, 1.0)).ceil().max(1.0);
        let (rate, by) = if workers <= coordinator {
            (workers, "workers")
        } else {
            (coordinator, "coordinator")
        };
        println!("  {n:>8} {m:>14} {rate:>16.0} {by:>20}");
    }
}
