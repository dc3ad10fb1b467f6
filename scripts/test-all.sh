#!/usr/bin/env bash
# Everything CI checks: formatting, lints, unit + integration + doc tests on the real fixtures,
# the adversarial suite, benches compile, and a short run of every fuzz target
# (FUZZ_SECONDS each, default 30). Run from the repository root: `bash scripts/test-all.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TERM_COLOR=never
step() { echo; echo "=== $* ($(date +%T))"; }
step "cargo fmt --check";            cargo fmt --all -- --check
step "cargo clippy -D warnings";     cargo clippy --all-targets --all-features -- -D warnings
step "cargo test, all features (xen)"; cargo test --all-features
step "cargo test, default features";  cargo test
step "cargo bench --no-run";         cargo bench --no-run --all-features
step "cargo doc (deny warnings)";    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
step "fuzz every target ${FUZZ_SECONDS:-30}s"; bash fuzz/run.sh "${FUZZ_SECONDS:-30}"
echo; echo "=== all checks passed ($(date +%T))"
