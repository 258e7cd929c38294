//! `candor-bench`: benchmark programs that print figures (they assert nothing).
//!
//! - `ingest`: starts the release `candor` binary with the demo operator (its consent
//!   mix and synthetic subjects) and a do-nothing baseline HTTP server (nginx answering
//!   `return 200`, or a tiny built-in server if nginx is absent), then drives both over
//!   loopback with the same load generator: batches of 100 events, and single-event
//!   requests. Prints accepted (consent-gated, durably acknowledged) events/s, requests/s,
//!   p50/p99/max latency, the ratio to the baseline, and Candor's peak RSS.
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
//! Run: `cargo build --release -p candor -p candor-bench && target/release/candor-bench ingest`
//! (from the repository root; `codec` needs only `-p candor-bench`, Node and npm).

mod codec;
mod decision;
mod dp_query;
mod ingest;
mod load;

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ingest") => ingest::run(&args[1..]),
        Some("decision") => decision::run(),
        Some("codec") => codec::run(&args[1..]),
        Some("insights") => dp_query::run(&args[1..]),
        _ => bail!(
            "usage: candor-bench ingest [--seconds N] [--subjects N] [--rounds N] [--no-postgres | --postgres-only] | decision \
             | codec [--vectors DIR] [--min-strings N] [--seconds S] \
             | insights [--subjects 1000000,3000000,10000000] [--runs N] [--ref-runs N] [--no-refs] \
             [--epsilon E] [--delta D] [--k K] [--seed S]"
        ),
    }
}
