#!/usr/bin/env bash
# Every test: the two topology scripts (real processes, PASS/FAIL), then `cargo test`
# (codec, flooding simulation, end-to-end and interoperability tests), then a smoke run
# of the benchmarks (their correctness checks, not their speed).
set -euo pipefail
cd "$(dirname "$0")/.."

./topologia1.sh
./topologia2.sh
cargo test
cargo test --bench perf
