//! Rough decode/encode throughput over the conformance vectors, for a quick
//! check before the real benchmark: `cargo run --release -p candor-codec
//! --example throughput`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use candor_codec::{gpp, tcf};

fn load(name: &str, key: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e[key].as_str().unwrap().to_owned())
        .collect()
}

fn time<F: FnMut()>(label: &str, ops: usize, mut f: F) {
    let start = Instant::now();
    f();
    let ns = start.elapsed().as_nanos() as f64 / ops as f64;
    println!("{label:<12} {ns:>10.0} ns/op  {:>10.0} op/s", 1e9 / ns);
}

fn main() {
    const ROUNDS: usize = 200;
    let tcf_strings = load("tcf-v2.json", "tcString");
    let gpp_strings = load("gpp.json", "gppString");
    let models: Vec<_> = tcf_strings
        .iter()
        .map(|s| tcf::decode(s).unwrap().model)
        .collect();
    let gpps: Vec<_> = gpp_strings
        .iter()
        .map(|s| gpp::decode(s).unwrap())
        .collect();
    let avg = tcf_strings.iter().map(String::len).sum::<usize>() / tcf_strings.len();
    println!(
        "{} TC strings (avg {avg} chars), {} GPP strings",
        tcf_strings.len(),
        gpp_strings.len()
    );

    time("tcf decode", ROUNDS * tcf_strings.len(), || {
        for _ in 0..ROUNDS {
            for s in &tcf_strings {
                black_box(tcf::decode(black_box(s)).unwrap());
            }
        }
    });
    time("tcf encode", ROUNDS * models.len(), || {
        for _ in 0..ROUNDS {
            for m in &models {
                black_box(tcf::encode(black_box(m)).unwrap());
            }
        }
    });
    time("gpp decode", ROUNDS * gpp_strings.len(), || {
        for _ in 0..ROUNDS {
            for s in &gpp_strings {
                black_box(gpp::decode(black_box(s)).unwrap());
            }
        }
    });
    time("gpp encode", ROUNDS * gpps.len(), || {
        for _ in 0..ROUNDS {
            for g in &gpps {
                black_box(gpp::encode(black_box(g)).unwrap());
            }
        }
    });
}
