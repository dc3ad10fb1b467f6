#!/usr/bin/env bash
# Run every fuzz target (or the ones named) for SECONDS each, on the machine's stable
# toolchain. cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address, sancov), which
# RUSTC_BOOTSTRAP=1 enables on a stable compiler; nothing else is needed.
#   bash fuzz/run.sh 60                # all targets, 60 s each
#   bash fuzz/run.sh 600 btf isf       # two targets
# Corpora grow in fuzz/corpus/<target>/ (not committed); seeds come from fuzz/seeds/<target>/.
# A crash, hang, leak or OOM leaves its input in fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-30}; shift || true
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
targets=("$@")
# Inputs up to 128 KiB; snapshot and capi images up to 4 MiB, so that an image can hold the
# many regions (a bitmap crash dump of thousands of one-page runs) that cost grows with.
max_len() { case "$1" in snapshot|capi) echo 4194304 ;; *) echo 131072 ;; esac; }
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -O >/dev/null
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  echo "=== fuzz $t for ${secs}s"
  cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -E "^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|panicked|Done [0-9]+ runs)" || true
  # (One `ls` of four globs fails when any glob matches nothing, hiding the others: find.)
  if [ -n "$(find "artifacts/$t" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) 2>/dev/null)" ]; then
    echo "fuzz: $t found a failing input in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
echo "=== fuzz: no crash, hang, leak or OOM"
