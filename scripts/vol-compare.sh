#!/usr/bin/env bash
# vol-compare.sh — run Volatility3 on a Linux memory image and (optionally) compare it with
# xenvmi's `pslist --json --detail`.
#
# usage: scripts/vol-compare.sh IMAGE OUTDIR [ISF]
#
#   IMAGE   a Linux memory image Volatility3 can read: a QEMU `dump-guest-memory` ELF core,
#           a LiME file or a raw dump (unpacked: `zstd -d fixtures/X/vmcore.elf.zst -o ...`).
#   OUTDIR  where the outputs go (created):
#             <plugin>.json    `vol -r json` output of each plugin (e.g. linux.psaux.PsAux.json)
#             <plugin>.time    `/usr/bin/time -v` report of that run (wall time, max RSS)
#             <plugin>.stderr  Volatility's own messages
#             timings.tsv      plugin, exit code, wall seconds, CPU seconds (user+sys), max RSS
#                              (KiB), 1-minute load average just before the run; one row each
#             vol-version.txt  Volatility3 version and the exact command line used
#             xenvmi-pslist-detail.json / .time   (only when PSLIST is set, see below)
#             compare.txt      vol_compare.py's report (only when PSLIST is set)
#   ISF     Volatility3 symbol table for the image's kernel (.json or .json.xz);
#           default fixtures/linux-6.1/debian-6.1.0-56-amd64.json.xz (Debian 6.1.0-56-amd64,
#           the kernel of the linux-6.1, -la57, -mem4g and -net fixtures).
#
# How Volatility3 gets a local ISF: it scans every directory given with `-s` for
# `linux/*.json[.xz]` and picks the table whose `linux_banner` matches the one in the image.
# This script copies ISF into a private `SYMDIR/linux/` and passes `-s SYMDIR --offline`
# (no downloads). Volatility keeps a banner cache; it is kept in VOL_CACHE (default
# OUTDIR/.vol-cache) and the script first runs linux.pslist once to fill it, so the
# timed runs below are warm-cache runs (the warm-up run's time is in warmup.time).
#
# Environment:
#   VOL       Volatility3 command (default: `vol` on PATH; e.g. /path/venv/bin/vol)
#   PLUGINS   plugins to run (default: linux.psaux.PsAux linux.lsof.Lsof
#             linux.sockstat.Sockstat linux.proc.Maps linux.envars.Envars)
#   VOL_CACHE Volatility cache directory (default OUTDIR/.vol-cache)
#   PSLIST    path of xenvmi's built pslist example (target/release/examples/pslist) or the
#             word `cargo` (runs `cargo run --release --example pslist --`); when set, the
#             script also runs `pslist --json --detail IMAGE`, times it, and runs
#             scripts/vol_compare.py on the results (TRUTH=ground-truth.json adds the guest's
#             own view to each difference).
#   TIMEOUT   per-plugin time limit in seconds (default 600)
#   REPEAT    run every plugin (and pslist) this many times, one timings.tsv row each
#             (default 1; the outputs are those of the last run)
#
# Install Volatility3 with `pip install volatility3` (tested with 2.28.2).
set -euo pipefail
IMAGE=${1:?usage: vol-compare.sh IMAGE OUTDIR [ISF]}
OUT=${2:?usage: vol-compare.sh IMAGE OUTDIR [ISF]}
HERE=$(cd "$(dirname "$0")" && pwd)
ISF=${3:-$HERE/../fixtures/linux-6.1/debian-6.1.0-56-amd64.json.xz}
VOL=${VOL:-vol}
PLUGINS=${PLUGINS:-linux.psaux.PsAux linux.lsof.Lsof linux.sockstat.Sockstat linux.proc.Maps linux.envars.Envars}
TIMEOUT=${TIMEOUT:-600}
REPEAT=${REPEAT:-1}
[ -f "$IMAGE" ] || { echo "vol-compare: no image $IMAGE" >&2; exit 1; }
[ -f "$ISF" ] || { echo "vol-compare: no ISF $ISF" >&2; exit 1; }
command -v "$VOL" >/dev/null || { echo "vol-compare: $VOL not found (pip install volatility3, or set VOL)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "vol-compare: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
IMAGE=$(cd "$(dirname "$IMAGE")" && pwd)/$(basename "$IMAGE")
VOL_CACHE=${VOL_CACHE:-$OUT/.vol-cache}
SYMDIR=$(mktemp -d); trap 'rm -rf "$SYMDIR"' EXIT
mkdir -p "$SYMDIR/linux" "$VOL_CACHE"
cp "$ISF" "$SYMDIR/linux/"
VOLARGS=(-q --offline --cache-path "$VOL_CACHE" -s "$SYMDIR" -r json -f "$IMAGE")

wall() { awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$1"; }
rss()  { awk -F': ' '/Maximum resident set size/{print $2}' "$1"; }
cpu()  { awk -F': ' '/User time|System time/{s+=$2} END{printf "%.2f", s}' "$1"; }
load() { cut -d' ' -f1 /proc/loadavg; }

{ echo "volatility3 $("$VOL" -h 2>&1 | awk '/^Volatility 3 Framework/{print $4; exit}')"
  echo "python $(python3 -c 'import sys; print(sys.version.split()[0])')"
  echo "command: $VOL ${VOLARGS[*]} PLUGIN"
  echo "isf: $(basename "$ISF") (sha256 $(sha256sum "$ISF" | cut -c1-16)...)"
  echo "image: $IMAGE ($(stat -c %s "$IMAGE") bytes)"
  echo "date: $(date -u +%FT%TZ)"; } > "$OUT/vol-version.txt"

echo "[vol-compare] warm-up (linux.pslist, fills the banner cache)" >&2
/usr/bin/time -v -o "$OUT/warmup.time" timeout "$TIMEOUT" "$VOL" "${VOLARGS[@]}" linux.pslist.PsList \
  > "$OUT/linux.pslist.PsList.json" 2> "$OUT/linux.pslist.PsList.stderr" || true
printf 'plugin\trc\twall_s\tcpu_s\tmax_rss_kib\tloadavg1_before\n' > "$OUT/timings.tsv"
printf 'warmup:linux.pslist.PsList\t-\t%s\t%s\t%s\t-\n' "$(wall "$OUT/warmup.time")" "$(cpu "$OUT/warmup.time")" \
  "$(rss "$OUT/warmup.time")" >> "$OUT/timings.tsv"
for i in $(seq "$REPEAT"); do
  for p in $PLUGINS; do
    echo "[vol-compare] $p (run $i of $REPEAT)" >&2
    rc=0; la=$(load)
    /usr/bin/time -v -o "$OUT/$p.time" timeout "$TIMEOUT" "$VOL" "${VOLARGS[@]}" "$p" \
      > "$OUT/$p.json" 2> "$OUT/$p.stderr" || rc=$?
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$rc" "$(wall "$OUT/$p.time")" "$(cpu "$OUT/$p.time")" \
      "$(rss "$OUT/$p.time")" "$la" >> "$OUT/timings.tsv"
    [ "$rc" = 0 ] || echo "[vol-compare] $p failed (rc $rc, 124 = timeout); see $OUT/$p.stderr" >&2
  done
done

if [ -n "${PSLIST:-}" ]; then
  if [ "$PSLIST" = cargo ]; then CMD=(cargo run --release --example pslist --); else CMD=("$PSLIST"); fi
  echo "[vol-compare] xenvmi pslist --json --detail" >&2
  for i in $(seq "$REPEAT"); do
    rc=0; la=$(load)
    /usr/bin/time -v -o "$OUT/xenvmi-pslist-detail.time" "${CMD[@]}" --json --detail "$IMAGE" \
      > "$OUT/xenvmi-pslist-detail.json" 2> "$OUT/xenvmi-pslist-detail.stderr" || rc=$?
    printf 'xenvmi:pslist --json --detail\t%s\t%s\t%s\t%s\t%s\n' "$rc" "$(wall "$OUT/xenvmi-pslist-detail.time")" \
      "$(cpu "$OUT/xenvmi-pslist-detail.time")" "$(rss "$OUT/xenvmi-pslist-detail.time")" "$la" >> "$OUT/timings.tsv"
  done
  python3 "$HERE/vol_compare.py" --vol-dir "$OUT" --xenvmi "$OUT/xenvmi-pslist-detail.json" \
    ${TRUTH:+--truth "$TRUTH"} | tee "$OUT/compare.txt"
fi
column -t -s $'\t' "$OUT/timings.tsv" >&2 2>/dev/null || cat "$OUT/timings.tsv" >&2
