#!/usr/bin/env bash
# vol-venv.sh — print the path of Volatility3's `vol`, installing Volatility3 2.28.2 from PyPI
# into target/vol-venv on first use. VOL=path/to/vol uses another. Sourced or run by the
# scripts that compare with Volatility3 (check-capture-vol.sh, bench-vs-vol.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${VOL:-}" ]; then
  echo "$VOL"
  exit 0
fi
if [ ! -x target/vol-venv/bin/vol ]; then
  python3 -m venv target/vol-venv >&2
  target/vol-venv/bin/pip install -q volatility3==2.28.2 >&2
fi
echo "$PWD/target/vol-venv/bin/vol"
