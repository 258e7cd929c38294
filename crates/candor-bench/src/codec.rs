//! The codec benchmark: Candor's consent-string codec (`candor-codec`) beside the IAB
//! Tech Lab's reference JavaScript libraries, on the same strings, in one run.
//!
//! Why side by side: "fast" only means something against the code everyone else runs.
//! The reference libraries (`@iabtechlabtcf/core` for TCF v2, `@iabgpp/cmpapi` for
//! GPP) are what wrote the conformance vectors, so both sides work through exactly the
//! strings the codec is tested on. Targets: at least 20× the reference's decode rate and
//! 10× its encode rate.
//!
//! What it does:
//! 1. Loads `tcf-v2.json` and `gpp.json` from the vectors folder (`--vectors DIR`; by
//!    default `../shared/vectors` from the current directory, else the `shared/` beside
//!    the repository this binary was built from) and checks that
//!    `encode(decode(s)) == s` for every vector, aborting if not: a fast codec that is
//!    wrong is not worth timing.
//! 2. Repeats the strings to at least `--min-strings` (10,000) per format and times
//!    Candor's decode and encode: warm-up, then at least `--seconds` (1) each, whole
//!    cycles of the unique vectors at a time, results through `black_box`.
//! 3. Runs `node bench/codec-ref/bench.mjs` with the same vectors and counts (running
//!    `npm ci` there first when `node_modules` is missing) and reads its JSON.
//! 4. Prints strings/s for both, the ratio and whether each target is met.
//!
//! The reference's TCF encoder needs a GVL and clones it on every call; `bench.mjs`
//! explains the minimal synthetic GVL it uses, and also reports the encoder's
//! bits-only path (`SegmentEncoder`, no GVL pass), which gets its own row: the
//! strictest comparison.

use anyhow::{bail, Context, Result};
use candor_codec::{gpp, tcf};
use serde_json::Value;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Decode must reach this multiple of the reference's rate.
const DECODE_TARGET: f64 = 20.0;
/// Encode must reach this multiple of the reference's rate.
const ENCODE_TARGET: f64 = 10.0;

/// The vectors folder beside the repository this binary was built from.
const BUILT_VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors");
/// The reference benchmark's Node project in the repository this binary was built from.
const BUILT_REF_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/codec-ref");

/// `candor-bench codec`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The conformance vectors (default: ../shared/vectors, else the ones built in).
    #[arg(long)]
    vectors: Option<PathBuf>,
    /// Strings per measured pass at least (the vectors repeated).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    min_strings: u64,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

/// `--vectors`, else `../shared/vectors` from here, else the one baked in at build time.
fn vectors_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    let candidates = match given {
        Some(dir) => vec![dir],
        None => vec![
            PathBuf::from("../shared/vectors"),
            PathBuf::from(BUILT_VECTORS),
        ],
    };
    for dir in &candidates {
        if dir.join("tcf-v2.json").is_file() && dir.join("gpp.json").is_file() {
            return Ok(dir.clone());
        }
    }
    bail!(
        "no tcf-v2.json and gpp.json in {}; pass --vectors DIR",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

/// `bench/codec-ref` from here (the repository root), else the one baked in at build time.
fn ref_dir() -> Result<PathBuf> {
    [
        PathBuf::from("bench/codec-ref"),
        PathBuf::from(BUILT_REF_DIR),
    ]
    .into_iter()
    .find(|d| d.join("bench.mjs").is_file())
    .context("bench/codec-ref/bench.mjs not found: run from the repository root")
}

/// The `key` string of every entry of the JSON array in `path`.
fn load(path: &Path, key: &str) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let entries = v
        .as_array()
        .with_context(|| format!("{} is not a JSON array", path.display()))?;
    let strings = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{} entry #{i} has no string {key:?}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    if strings.is_empty() {
        bail!("{} has no vectors", path.display());
    }
    Ok(strings)
}

/// `items` repeated whole until there are at least `min`.
fn repeat<T: Clone>(items: &[T], min: usize) -> Vec<T> {
    let rounds = min.div_ceil(items.len());
    let mut out = Vec::with_capacity(rounds * items.len());
    for _ in 0..rounds {
        out.extend_from_slice(items);
    }
    out
}

/// Runs `op` over `items` in order (wrapping around), `cycle` items between looks at the
/// clock: warm-up for at least `seconds / 2`, then timed for at least `seconds`.
/// Returns items per second of the timed part. Same scheme as `bench.mjs`.
fn rate<T, R>(
    label: &str,
    items: &[T],
    cycle: usize,
    seconds: f64,
    mut op: impl FnMut(&T) -> R,
) -> f64 {
    let mut next = 0;
    let mut run = |min: Duration| {
        let start = Instant::now();
        let mut done = 0usize;
        loop {
            for _ in 0..cycle {
                black_box(op(black_box(&items[next])));
                next = if next + 1 == items.len() { 0 } else { next + 1 };
            }
            done += cycle;
            let elapsed = start.elapsed();
            if elapsed >= min {
                return (done, elapsed.as_secs_f64());
            }
        }
    };
    run(Duration::from_secs_f64(seconds / 2.0));
    let (done, secs) = run(Duration::from_secs_f64(seconds));
    let per_s = done as f64 / secs;
    eprintln!("candor {label}: {done} strings in {secs:.2} s = {per_s:.0}/s");
    per_s
}

/// Decodes and re-encodes every vector; any difference aborts the benchmark.
fn verify_roundtrips(tcf_strings: &[String], gpp_strings: &[String]) -> Result<()> {
    for (i, s) in tcf_strings.iter().enumerate() {
        let out = tcf::decode(s)
            .and_then(|tc| tcf::encode(&tc.model))
            .with_context(|| format!("TCF vector #{i}: {s}"))?;
        if out != *s {
            bail!("TCF vector #{i} re-encodes differently:\n  {out}\nexpected\n  {s}");
        }
    }
    for (i, s) in gpp_strings.iter().enumerate() {
        let out = gpp::decode(s)
            .and_then(|g| gpp::encode(&g))
            .with_context(|| format!("GPP vector #{i}: {s}"))?;
        if out != *s {
            bail!("GPP vector #{i} re-encodes differently:\n  {out}\nexpected\n  {s}");
        }
    }
    Ok(())
}

/// Candor's rates, strings per second.
struct Rates {
    tcf_decode: f64,
    tcf_encode: f64,
    gpp_decode: f64,
    gpp_encode: f64,
}

fn measure_candor(tcf_unique: &[String], gpp_unique: &[String], a: &Args) -> Result<Rates> {
    let tcf_models = tcf_unique
        .iter()
        .map(|s| tcf::decode(s).map(|tc| tc.model))
        .collect::<candor_codec::Result<Vec<_>>>()?;
    let gpp_models = gpp_unique
        .iter()
        .map(|s| gpp::decode(s))
        .collect::<candor_codec::Result<Vec<_>>>()?;
    let tcf_strings = repeat(tcf_unique, a.min_strings as usize);
    let gpp_strings = repeat(gpp_unique, a.min_strings as usize);
    let tcf_models: Vec<&tcf::TcModel> = repeat(
        &tcf_models.iter().collect::<Vec<_>>(),
        a.min_strings as usize,
    );
    let gpp_models: Vec<&gpp::GppString> = repeat(
        &gpp_models.iter().collect::<Vec<_>>(),
        a.min_strings as usize,
    );
    let (tc, gc, secs) = (tcf_unique.len(), gpp_unique.len(), a.seconds);
    Ok(Rates {
        tcf_decode: rate("tcf decode", &tcf_strings, tc, secs, |s| tcf::decode(s)),
        tcf_encode: rate("tcf encode", &tcf_models, tc, secs, |m| tcf::encode(m)),
        gpp_decode: rate("gpp decode", &gpp_strings, gc, secs, |s| gpp::decode(s)),
        gpp_encode: rate("gpp encode", &gpp_models, gc, secs, |g| gpp::encode(g)),
    })
}

/// Runs the reference benchmark and returns its JSON.
fn run_reference(dir: &Path, vectors: &Path, a: &Args) -> Result<Value> {
    if !dir.join("node_modules").is_dir() {
        println!(
            "{}/node_modules is missing: running `npm ci` there",
            dir.display()
        );
        let status = Command::new("npm")
            .arg("ci")
            .current_dir(dir)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()
            .context("running npm ci (is npm installed?)")?;
        if !status.success() {
            bail!("npm ci in {} failed: {status}", dir.display());
        }
    }
    let vectors = std::path::absolute(vectors)?;
    let out = Command::new("node")
        .arg("bench.mjs")
        .arg("--vectors")
        .arg(&vectors)
        .args(["--min-strings", &a.min_strings.to_string()])
        .args(["--seconds", &a.seconds.to_string()])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .context("running node (is Node.js installed?)")?;
    if !out.status.success() {
        bail!("node bench.mjs failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("node bench.mjs printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("parsing node's output: {line}"))
}

/// `v[a][b]` as a positive number.
fn figure(v: &Value, a: &str, b: &str) -> Result<f64> {
    v[a][b]
        .as_f64()
        .filter(|x| *x > 0.0)
        .with_context(|| format!("reference JSON lacks a positive {a}.{b}: {v}"))
}

pub fn run(a: Args) -> Result<()> {
    if !a.seconds.is_finite() || a.seconds <= 0.0 {
        bail!("--seconds must be positive");
    }
    let vectors = vectors_dir(a.vectors.clone())?;
    let ref_dir = ref_dir()?;
    let tcf_unique = load(&vectors.join("tcf-v2.json"), "tcString")?;
    let gpp_unique = load(&vectors.join("gpp.json"), "gppString")?;
    verify_roundtrips(&tcf_unique, &gpp_unique)?;
    let tcf_n = repeat(&tcf_unique, a.min_strings as usize).len();
    let gpp_n = repeat(&gpp_unique, a.min_strings as usize).len();
    println!(
        "codec benchmark: {} TC strings and {} GPP strings from {}, all round-trip \
         (encode(decode(s)) == s); repeated to {tcf_n} and {gpp_n}",
        tcf_unique.len(),
        gpp_unique.len(),
        vectors.display()
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average before: {}", load.trim());
    }

    let candor = measure_candor(&tcf_unique, &gpp_unique, &a)?;
    let reference = run_reference(&ref_dir, &vectors, &a)?;

    println!();
    println!(
        "reference: node {}, @iabtechlabtcf/core {}, @iabgpp/cmpapi {}; its re-encoding \
         reproduces {}/{} TC strings and {}/{} GPP strings",
        reference["node"].as_str().unwrap_or("?"),
        reference["libraries"]["@iabtechlabtcf/core"]
            .as_str()
            .unwrap_or("?"),
        reference["libraries"]["@iabgpp/cmpapi"]
            .as_str()
            .unwrap_or("?"),
        reference["roundtrip_identical"]["tcf"],
        tcf_unique.len(),
        reference["roundtrip_identical"]["gpp"],
        gpp_unique.len(),
    );
    for (format, key, n) in [("tcf", "tcf", tcf_n), ("gpp", "gpp", gpp_n)] {
        let theirs = reference["strings"][key].as_u64();
        if theirs != Some(n as u64) {
            bail!("reference used {theirs:?} {format} strings, Candor {n}");
        }
    }
    let rows = [
        (
            "TCF v2",
            "decode",
            candor.tcf_decode,
            figure(&reference, "tcf", "decode_per_s")?,
            DECODE_TARGET,
        ),
        (
            "TCF v2",
            "encode",
            candor.tcf_encode,
            figure(&reference, "tcf", "encode_per_s")?,
            ENCODE_TARGET,
        ),
        (
            "TCF v2",
            "encode, ref bits only",
            candor.tcf_encode,
            figure(&reference, "tcf", "encode_bits_per_s")?,
            ENCODE_TARGET,
        ),
        (
            "GPP",
            "decode",
            candor.gpp_decode,
            figure(&reference, "gpp", "decode_per_s")?,
            DECODE_TARGET,
        ),
        (
            "GPP",
            "encode",
            candor.gpp_encode,
            figure(&reference, "gpp", "encode_per_s")?,
            ENCODE_TARGET,
        ),
    ];
    println!(
        "{:<7} {:<22} {:>14} {:>14} {:>9} {:>7}  result",
        "format", "operation", "Candor/s", "reference/s", "ratio", "target"
    );
    let mut missed = 0;
    for (format, op, ours, theirs, target) in rows {
        let ratio = ours / theirs;
        let met = ratio >= target;
        missed += usize::from(!met);
        println!(
            "{format:<7} {op:<22} {ours:>14.0} {theirs:>14.0} {:>8.1}x {:>6.0}x  {}",
            ratio,
            target,
            if met { "met" } else { "NOT MET" }
        );
    }
    println!(
        "(\"encode, ref bits only\": the reference's SegmentEncoder path, without the GVL \
         pass and GVL clone TCString.encode does on every call; see bench/codec-ref/bench.mjs)"
    );
    if missed == 0 {
        println!("targets: all met");
    } else {
        println!("targets: {missed} not met");
    }
    Ok(())
}
