#!/usr/bin/env bash
# Everything CI checks: formatting, lints, unit + integration + doc tests on the real fixtures,
# benches compile. Run from the repository root: `bash scripts/test-all.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TERM_COLOR=never
step() { echo; echo "=== $* ($(date +%T))"; }
step "cargo fmt --check";            cargo fmt --all -- --check
step "cargo clippy -D warnings";     cargo clippy --all-targets --all-features -- -D warnings
step "cargo test (all targets)";     cargo test --all-features
step "cargo bench --no-run";         cargo bench --no-run --all-features
step "cargo doc (deny warnings)";    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
echo; echo "=== all checks passed ($(date +%T))"
