//! `candor-bench`: benchmark programs that print figures (they assert nothing).
//!
//! - `ingest`: starts the release `candor` binary with the demo operator (its consent
//!   mix and synthetic subjects) and a do-nothing baseline HTTP server (nginx answering
//!   `return 200`, or a tiny built-in server if nginx is absent), then drives both over
//!   loopback with the same load generator: batches of 100 events, and single-event
//!   requests. Prints accepted (consent-gated, durably acknowledged) events/s, requests/s,
//!   p50/p99/max latency, the ratio to the baseline, and Candor's peak RSS.
//!   With `--citus`: one node on plain PostgreSQL, then on Citus (a coordinator and two
//!   workers on this machine), printing the CPU time per event in Candor, the
//!   coordinator and each worker, and the scale model it gives (`citus.rs`).
//! - `decision`: the cost of one consent decision in the in-memory index, by index size.
//! - `codec`: decode and encode throughput of `candor-codec` on the conformance vectors
//!   (TCF v2 and GPP strings), beside the IAB reference JavaScript libraries run by Node
//!   on the same strings (`bench/codec-ref`). Prints strings/s, the ratios and the targets
//!   (20x decode, 10x encode).
//!
//! - `insights` (`dp_query.rs`): the privacy engine answering a grouped count + clamped sum with partition
//!   selection over synthetic daily features at 1, 3 and 10 million subjects, beside
//!   PipelineDP and OpenDP's Python package on the same data (`bench/dp-ref`, installed
//!   into `target/dp-venv`); prints times, RMSE, ratios, RSS and bytes per subject.
//!
//! - `segments`: the segment engine and `personalize`'s decision in process at a
//!   million subjects: membership maintenance per event with 100 segments defined,
//!   decision p50/p99, memory per subject.
//!
//! - `soak`: ten minutes of mixed load (single events, batches, consent changes and
//!   reads, insight queries, slow clients) against the release server; per minute the
//!   requests/s, p99, non-2xx answers, slow clients cut off and RSS.
//!
//! - `email`: the send queue's messages/s for a campaign of 100,000 subscribers to a
//!   local SMTP server (aiosmtpd), with its durable bookkeeping on, beside that
//!   server's own receive rate (`email.rs`).
//!
//! Run: `cargo build --release -p candor -p candor-bench && target/release/candor-bench ingest`
//! (from the repository root; `codec` needs only `-p candor-bench`, Node and npm).

mod citus;
mod codec;
mod decision;
mod dp_query;
mod email;
mod ingest;
mod load;
mod segments;
mod soak;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The server's allocator (`candor` runs on mimalloc), so what runs in process here
/// allocates as it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmark programs: they print figures and assert nothing.
#[derive(Parser)]
#[command(name = "candor-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Candor's ingestion beside a do-nothing HTTP baseline, then on PostgreSQL.
    Ingest(ingest::Args),
    /// The consent decision's cost by index size.
    Decision,
    /// Our IAB codec beside the IAB's reference JavaScript libraries.
    Codec(codec::Args),
    /// The DP engine beside PipelineDP and OpenDP.
    Insights(dp_query::Args),
    /// The segment engine and personalization at a million subjects: membership
    /// maintenance per event with 100 segments, decision latency, memory per subject.
    Segments(segments::Args),
    /// The email send queue to a local SMTP server (aiosmtpd) for a campaign of
    /// 100,000 subscribers, beside the server's own receive rate.
    Email(email::Args),
    /// Minutes of mixed load (events, batches, consent, insight queries, slow clients):
    /// requests/s, p99 and RSS per minute.
    Soak(soak::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Ingest(a) => ingest::run(a),
        Command::Decision => decision::run(),
        Command::Codec(a) => codec::run(a),
        Command::Insights(a) => dp_query::run(a),
        Command::Segments(a) => segments::run(a),
        Command::Soak(a) => soak::run(a),
        Command::Email(a) => email::run(a),
    }
}
