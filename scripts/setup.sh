#!/usr/bin/env bash
# Install what xenvmi's build and tests need on a fresh Debian 12 machine (idempotent).
# Rust (cargo/rustc >= 1.80) must already be installed.
set -euo pipefail
need=()
command -v cc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
# Xen 4.17 headers/libraries and libclang: for the `xen` feature (bindgen at build time).
dpkg-query -W -f='${Status}' libxen-dev 2>/dev/null | grep -q "ok installed" || need+=(libxen-dev)
dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q "ok installed" || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
