#!/usr/bin/env bash
# The acceptance run of docs/security.md: every target until 10 million executions or 30
# minutes, whichever comes first. Output: fuzz/long-run.log (a line with the date, commit and host,
# then per target one summary line and libFuzzer's closing lines verbatim).
#   bash fuzz/long-run.sh                  # all targets, one after the other
#   bash fuzz/long-run.sh journal vm_event # only these (appended to the log)
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null
# With target names: run those and append to the log (two lists can run side by side on two
# cores); without: every target, and the log starts afresh.
if [ $# -gt 0 ]; then targets=("$@"); else : > long-run.log; mapfile -t targets < <(cargo fuzz list); fi
max_len() { case "$1" in snapshot|capi) echo 4194304 ;; *) echo 131072 ;; esac; }
# Which code, when, where: the log says, so its lines can be checked against a commit.
echo "# $(date -u +%FT%TZ) commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)') host $(uname -n) cores $(nproc)" | tee -a long-run.log
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  start=$(date +%s)
  cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -runs=10000000 -max_total_time=1800 \
        -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 > "long-run-$t.out" 2>&1 || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "long-run-$t.out" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "long-run-$t.out" | tail -1)
  crash=$(find "artifacts/$t" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) 2>/dev/null | wc -l)
  echo "$t execs=${execs:-?} seconds=$(( $(date +%s) - start )) peak_rss_mb=${rss:-?} failing_inputs=$crash corpus=$(ls corpus/$t | wc -l)" | tee -a long-run.log
  # libFuzzer's own closing lines (final stats, DONE line, any report), verbatim.
  grep -E '^(#[0-9]+ *DONE|stat::|==[0-9]+==|SUMMARY|Done [0-9]+ runs)' "long-run-$t.out" | sed "s/^/  $t| /" >> long-run.log || true
done
