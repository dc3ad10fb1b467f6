#!/usr/bin/env bash
# check-capture-vol.sh — an independent judge for xenvmi's memory capture (`xenvmi::capture`,
# example `dump`): capture the bundled Linux 6.1 guest from the simulated domain, paused, and
# let Volatility3 read the core. Its linux.pslist on the capture must equal its linux.pslist on
# the original dump (fixtures/linux-6.1/volatility3/linux.pslist.PsList.json, made by
# scripts/vol-compare.sh) and the guest's own ground truth. Prints ok/FAIL lines; exit status =
# number of FAILs.
#
# Volatility3 2.28.2 is installed from PyPI into target/vol-venv on first use by
# scripts/vol-venv.sh (VOL=path/to/vol uses another). The ISF is the fixture's own (Debian 6.1.0-56-amd64), offline.
set -euo pipefail
cd "$(dirname "$0")/.."
work=target/check-capture-vol
rm -rf "$work" && mkdir -p "$work/sym/linux" "$work/cache"
VOL=$(bash scripts/vol-venv.sh)
cp fixtures/linux-6.1/debian-6.1.0-56-amd64.json.xz "$work/sym/linux/"
cargo build --release -q --example dump
core="$work/capture.elf"
./target/release/examples/dump --simulate --pause "$core" --json > "$work/dump.json"
echo "dump: $(cat "$work/dump.json")"
"$VOL" -q --offline --cache-path "$work/cache" -s "$work/sym" -r json -f "$core" \
  linux.pslist.PsList > "$work/pslist.json" 2> "$work/vol.stderr" || true
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
fails = 0
def check(ok, what):
    global fails
    print(("ok   " if ok else "FAIL ") + what)
    fails += 0 if ok else 1
d = json.load(open(f"{work}/dump.json"))
check(d["consistency"] == "paused" and d["missing_bytes"] == 0 and d["vcpus"] >= 1,
      f"capture: paused, {d['vcpus']} vCPUs, nothing missing, paused {d['paused_ms']:.0f} ms")
try:
    got = json.load(open(f"{work}/pslist.json"))
except Exception as e:
    got = []
    print(open(f"{work}/vol.stderr").read()[-2000:])
ref = json.load(open("fixtures/linux-6.1/volatility3/linux.pslist.PsList.json"))
key = lambda r: (r["PID"], r["PPID"], r["COMM"])
check(len(got) > 0, f"Volatility3 linux.pslist reads the capture: {len(got)} processes")
check(sorted(map(key, got)) == sorted(map(key, ref)),
      "its processes (pid, ppid, comm) equal its linux.pslist of the original dump")
gt = json.load(open("fixtures/linux-6.1/ground-truth.json"))
want = sorted((p["pid"], p["ppid"]) for p in gt["processes"])
check(sorted((r["PID"], r["PPID"]) for r in got) == want,
      "and the guest's own /proc (pid, ppid of every process)")
sys.exit(fails)
PY
