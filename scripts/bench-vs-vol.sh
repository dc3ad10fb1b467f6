#!/usr/bin/env bash
# bench-vs-vol.sh — the main job (examples/pslist on the bundled Linux 6.1 snapshot) side by
# side with Volatility3 2.28.2's linux.pslist on the same image, in one run, with hyperfine:
#   xenvmi, no cache    every run does the whole discovery (--no-cache)
#   xenvmi, cold cache  the cache directory is emptied before every run: discovery + writing it
#   xenvmi, warm cache  the kernel build comes from the cache directory, checked against the guest
#   Volatility3         linux.pslist with the fixture's own ISF, offline, its cache warm
# then the peak memory (max RSS) of each with /usr/bin/time. Results (hyperfine JSON, the
# ratios) go to target/bench-vs-vol/; docs/performance.md records them and this method.
#   bash scripts/bench-vs-vol.sh            # RUNS=20 xenvmi runs, VOL_RUNS=5 Volatility3 runs
# With --windows, the same for Windows: `pslist --windows fixtures/windows-isf` (the profile
# picked from the directory by the kernel's PDB GUID and age) on a 256 MiB QEMU ELF core of the
# synthetic Windows 11 22000 guest (written once to target/bench-images/ by the ignored test
# `the_benchmark_image` in tests/windows_profile_cache.rs), against Volatility3's
# windows.pslist with the same ISF; "cache" is the profile cache (no ISF parsed when warm).
# Needs hyperfine (apt install hyperfine); Volatility3 from scripts/vol-venv.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "bench-vs-vol: hyperfine is not installed (apt install hyperfine)" >&2; exit 1; }
runs=${RUNS:-20}
vol_runs=${VOL_RUNS:-5}
target=${CARGO_TARGET_DIR:-target}
windows=0
[ "${1:-}" = --windows ] && windows=1
work=target/bench-vs-vol
[ $windows = 1 ] && work=target/bench-vs-vol-windows
rm -rf "$work" && mkdir -p "$work/sym/linux" "$work/sym/windows/ntkrnlmp.pdb" "$work/volcache" "$work/cache"
work=$(cd "$work" && pwd)
VOL=$(bash scripts/vol-venv.sh)
cargo build --release -q --example pslist
pslist=$(cd "$target/release/examples" && pwd)/pslist
if [ $windows = 1 ]; then
  image=$PWD/target/bench-images/win11-22000-256m.elf
  if [ ! -f "$image" ]; then
    mkdir -p target/bench-images
    XENVMI_BENCH_WIN_IMAGE=$image cargo test -q --test windows_profile_cache -- --ignored --exact the_benchmark_image
  fi
  guid=0CE4A95C0CD782A7596B034D8648E585
  cp "fixtures/windows-isf/ntkrnlmp-$guid-1.json.xz" "$work/sym/windows/ntkrnlmp.pdb/$guid-1.json.xz"
  args="--windows $PWD/fixtures/windows-isf $image"
  plugin=windows.pslist.PsList
else
  # The image, unpacked once (the path pslist opens by default).
  image=$("$pslist" --no-cache | sed -n 's/^image *\(.*\) (.*)$/\1/p')
  [ -f "$image" ] || { echo "bench-vs-vol: the bundled snapshot was not found" >&2; exit 1; }
  cp fixtures/linux-6.1/debian-6.1.0-56-amd64.json.xz "$work/sym/linux/"
  args=$image
  plugin=linux.pslist.PsList
fi
vol=("$VOL" -q --offline --cache-path "$work/volcache" -s "$work/sym" -f "$image" "$plugin")
vol_name="Volatility3 ${plugin%.PsList}"
"${vol[@]}" > "$work/vol-pslist.txt"   # fills Volatility3's cache; its output, for the record
warm="env XENVMI_CACHE_DIR=$work/cache $pslist $args"
$warm > "$work/pslist.txt"              # fills xenvmi's cache

hyperfine -N -w 3 -r "$runs" --export-json "$work/xenvmi.json" \
  -n "xenvmi, no cache" "env XENVMI_CACHE=off $pslist $args" \
  -n "xenvmi, cold cache" --prepare "rm -rf $work/cold" "env XENVMI_CACHE_DIR=$work/cold $pslist $args" \
  -n "xenvmi, warm cache" "$warm"
hyperfine -N -w 1 -r "$vol_runs" --export-json "$work/vol.json" \
  -n "$vol_name" "${vol[*]}"

rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
{
  # shellcheck disable=SC2086 # $args is words on purpose
  echo "xenvmi, no cache	$(rss env XENVMI_CACHE=off "$pslist" $args)"
  rm -rf "$work/cold"
  # shellcheck disable=SC2086
  echo "xenvmi, cold cache	$(rss env XENVMI_CACHE_DIR="$work/cold" "$pslist" $args)"
  # shellcheck disable=SC2086
  echo "xenvmi, warm cache	$(rss env XENVMI_CACHE_DIR="$work/cache" "$pslist" $args)"
  echo "$vol_name	$(rss "${vol[@]}")"
} > "$work/rss.tsv"

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
res = json.load(open(f"{work}/xenvmi.json"))["results"] + json.load(open(f"{work}/vol.json"))["results"]
rss = dict(l.rstrip("\n").split("\t") for l in open(f"{work}/rss.tsv"))
vol = res[-1]["mean"]
print(f"\n{'':26} {'mean':>10} {'± σ':>8} {'min':>9} {'× Volatility3':>14} {'max RSS':>9}")
for r in res:
    name = r["command"]
    m = f"{rss[name]} KB" if name in rss else ""
    print(f"{name:26} {r['mean']*1e3:8.2f} ms {r['stddev']*1e3:6.2f} {r['min']*1e3:7.2f} ms {vol / r['mean']:13.0f}× {m:>9}")
PY
