#!/usr/bin/env bash
# Runs every candor-segments fuzz target for N seconds each (default 20).
#
#   crates/candor-segments/fuzz/run.sh [SECONDS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). RUSTC_BOOTSTRAP=1
# lets the stable toolchain accept the sanitizer flags cargo-fuzz passes.
# Corpora and crash artifacts land in fuzz/corpus and fuzz/artifacts, which
# are git-ignored; a crash makes this script exit non-zero.
set -euo pipefail

secs="${1:-20}"
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

for target in rule_parse; do
    echo "== fuzzing ${target} for ${secs}s"
    cargo fuzz run "${target}" -- -max_total_time="${secs}" -rss_limit_mb=2048 -max_len=4096
done
