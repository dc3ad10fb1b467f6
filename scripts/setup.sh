#!/usr/bin/env bash
# Install what xenvmi's build and tests need on a fresh Debian 12 machine (idempotent).
# Rust (cargo/rustc >= 1.80) must already be installed.
set -euo pipefail
need=()
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
command -v cc >/dev/null || need+=(gcc)
# The C ABI tests (tests/c_abi.rs) compile C with gcc under ASan/UBSan, and check that
# include/xenvmi.h compiles as C++ with g++.
command -v c++ >/dev/null || need+=(g++)
# ...and run each C test program again, built without sanitizers, under valgrind's memcheck.
command -v valgrind >/dev/null || need+=(valgrind)
command -v objdump >/dev/null || need+=(binutils)
command -v pkg-config >/dev/null || need+=(pkg-config)
# Xen 4.17 headers/libraries and libclang: for the `xen` feature (bindgen at build time).
dpkg-query -W -f='${Status}' libxen-dev 2>/dev/null | grep -q "ok installed" || need+=(libxen-dev)
dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q "ok installed" || need+=(libclang-dev)
# LLVM's Windows tool chain (clang in cl mode, lld-link, llvm-pdbutil): tests/pdb_profiles.rs
# rebuilds the test PDB from fixtures/pdb/kernel.c (fixtures/pdb/build.sh).
command -v clang >/dev/null || need+=(clang)
command -v lld-link >/dev/null || need+=(lld)
command -v llvm-pdbutil >/dev/null || need+=(llvm)
if [ ${#need[@]} -gt 0 ]; then
  :
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
# Real 64-bit PE files for the PE parser tests: Wine's ntoskrnl.exe, hal.dll, ntdll.dll and
# kernel32.dll from Debian's libwine package (LGPL-2.1+: downloaded, never committed).
wine_dir=target/xenvmi-fixtures/wine
if [ ! -s "$wine_dir/ntoskrnl.exe" ]; then
  tmp=$(mktemp -d)
  ( cd "$tmp" && { apt-get download libwine >/dev/null 2>&1 || { ${SUDO:-} apt-get update -qq && apt-get download libwine >/dev/null; }; } )
  dpkg-deb -x "$tmp"/libwine_*.deb "$tmp/x"
  mkdir -p "$wine_dir"
  for f in ntoskrnl.exe hal.dll ntdll.dll kernel32.dll; do
    cp "$tmp/x/usr/lib/x86_64-linux-gnu/wine/x86_64-windows/$f" "$wine_dir/"
  done
  basename "$tmp"/libwine_*.deb > "$wine_dir/SOURCE"
  rm -rf "$tmp"
fi
