//! `candor-bench` speaks the same command-line language as `candor` (clap): `--help`
//! works everywhere, and a mistake is named.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_candor-bench"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_lists_every_benchmark_and_mistakes_are_named() {
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["ingest", "decision", "codec", "insights", "soak"] {
        assert!(text.contains(cmd), "{cmd} missing from:\n{text}");
    }
    for cmd in ["ingest", "codec", "insights", "soak"] {
        let out = bench(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
    }
    let out = bench(&["ingest", "--bogus"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}
