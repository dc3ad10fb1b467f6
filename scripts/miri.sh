#!/usr/bin/env bash
# The Rust unit tests of the C ABI (`capi`), the event core (`event`) and the vm_event wire format
# (`vmevent`) under Miri: undefined behaviour (aliasing, use after free, uninitialised reads,
# leaks) in the code that handles raw pointers from C callers and the shared ring page.
# Needs rustup's nightly toolchain with the miri and rust-src components; this script adds them
# when they are missing. If they cannot be had (no nightly, no network to static.rust-lang.org),
# it says so in a `SKIP` line and exits 0, so a machine without them can still run the rest.
# Isolation is off because the tests read /proc (boot id, UUIDs) and write journals in a
# temporary directory; tests that spawn processes are `#[cfg_attr(miri, ignore)]`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! grep -q '^nightly' <<<"$(rustup toolchain list 2>/dev/null)"; then
  echo "SKIP miri: rustup has no nightly toolchain"; exit 0
fi
if ! cargo +nightly miri --version >/dev/null 2>&1 || ! grep -q '^rust-src' <<<"$(rustup +nightly component list --installed 2>/dev/null)"; then
  if ! timeout 600 rustup component add --toolchain nightly miri rust-src; then
    echo "SKIP miri: the miri and rust-src components could not be installed"; exit 0
  fi
fi
cargo +nightly miri --version
cargo +nightly miri setup
# A target directory of its own: Miri's artefacts are not interchangeable with rustc's.
export CARGO_TARGET_DIR="${MIRI_TARGET_DIR:-target/miri}"
MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" cargo +nightly miri test --lib -- capi:: event:: vmevent::
