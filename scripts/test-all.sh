#!/usr/bin/env bash
# Everything CI checks: formatting, lints, unit + integration + doc tests on the real fixtures
# (the C tests under ASan/UBSan and again under valgrind, tests/c_abi.rs), the unit tests of the
# C ABI and the event core under Miri, the adversarial
# suite, benches compile, and a short run of every fuzz target
# (FUZZ_SECONDS each, default 15: a smoke run inside the CI budget; fuzz/run.sh for longer campaigns), and the real-Xen suite (tests/xen-e2e; XEN_E2E=0 skips it).
# Run from the repository root: `bash scripts/test-all.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TERM_COLOR=never
# The kernel-build cache (docs/performance.md) of every program the tests run: one directory of
# this checkout's, emptied first, so no run depends on what an earlier one left in ~/.cache.
export XENVMI_CACHE_DIR="$PWD/target/xenvmi-cache"; rm -rf "$XENVMI_CACHE_DIR"
step() { echo; echo "=== $* ($(date +%T))"; }
step "cargo fmt --check";            cargo fmt --all -- --check
step "cargo clippy -D warnings";     cargo clippy --all-targets --all-features -- -D warnings
step "cargo test, all features (xen)"; cargo test --all-features
# Without features (no Xen backend, no `xenvmi` command): everything must build, and the unit tests,
# whose code paths differ without the Xen backend, must pass. The integration tests run above.
step "default features: cargo check --all-targets, cargo test --lib"; cargo check --all-targets && cargo test --lib
step "unit tests of capi, event and vmevent under Miri (scripts/miri.sh)"; bash scripts/miri.sh
step "install + pkg-config (scripts/check-install.sh)"; bash scripts/check-install.sh
step "capture read by Volatility3 (scripts/check-capture-vol.sh)"; bash scripts/check-capture-vol.sh
step "cargo bench --no-run";         cargo bench --no-run --all-features
step "cargo doc (deny warnings)";    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
step "fuzz every target ${FUZZ_SECONDS:-15}s"; bash fuzz/run.sh "${FUZZ_SECONDS:-15}"
# Real Xen 4.17 under Bochs (software VMX/EPT): downloads ~300 MB of Debian packages and a
# Debian 13 base system, boots Xen with a dom0 and the tiny guest, runs xen-probe and the
# crash-safe-detach checks, then the Linux-guest suite. Needs root. XEN_E2E=0 skips both (e.g. on a
# laptop without root).
if [ "${XEN_E2E:-1}" != 0 ]; then
  step "real Xen 4.17 under Bochs (tests/xen-e2e)"; bash tests/xen-e2e/run.sh
  # The same Xen with Debian's 6.1 kernel as a guest: cr3-trace, kernel-guard in all three
  # modes (the default altp2m one included) against a test rootkit, and the altp2m reproducer.
  step "real Xen 4.17 with a Linux guest (tests/xen-e2e/run-linux.sh)"; bash tests/xen-e2e/run-linux.sh
fi
echo; echo "=== all checks passed ($(date +%T))"
