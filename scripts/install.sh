#!/usr/bin/env bash
# Build and install xenvmi's C library the way other C libraries are installed:
#
#   scripts/install.sh --prefix PREFIX [--destdir STAGING] [--libdir DIR] [--features xen]
#
# installs (under STAGING, for packaging, when given):
#   PREFIX/lib/libxenvmi.so.X.Y.Z, with the symlinks libxenvmi.so.ABI (the SONAME build.rs sets:
#     the major version, or 0.MINOR for 0.x releases) and libxenvmi.so
#   PREFIX/lib/libxenvmi.a
#   PREFIX/include/xenvmi/xenvmi.h      (pkg-config's Cflags point at that directory)
#   PREFIX/lib/pkgconfig/xenvmi.pc      (Libs.private: what rustc says the static library needs)
# Then: cc prog.c $(pkg-config --cflags --libs xenvmi)   [--static for libxenvmi.a]
# --features xen builds the Xen backend into the library (needs libxen-dev and libclang-dev;
# Xen's own libraries are still loaded at run time).
set -euo pipefail
usage() { echo "usage: scripts/install.sh --prefix PREFIX [--destdir STAGING] [--libdir DIR] [--features xen]" >&2; exit 2; }
prefix=; destdir=; libdir=; features=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
    --destdir) [ $# -ge 2 ] || usage; destdir=$2; shift 2 ;;
    --libdir) [ $# -ge 2 ] || usage; libdir=$2; shift 2 ;;
    --features) [ $# -ge 2 ] || usage; features=(--features "$2"); shift 2 ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown argument \`$1'" >&2; usage ;;
  esac
done
[ -n "$prefix" ] || { echo "install.sh: --prefix is required" >&2; usage; }
case "$prefix" in /*) ;; *) echo "install.sh: --prefix $prefix: not an absolute path" >&2; exit 2 ;; esac
libdir=${libdir:-$prefix/lib}
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
major=${version%%.*}; rest=${version#*.}; minor=${rest%%.*}
if [ "$major" = 0 ]; then abi=0.$minor; else abi=$major; fi
cargo build --release --lib "${features[@]}"
# What libxenvmi.a needs from the system, as rustc reports it for this build.
static_libs=$(cargo rustc --release --lib "${features[@]}" --crate-type staticlib -- --print native-static-libs 2>&1 \
  | sed -n 's/.*native-static-libs: //p' | tail -n 1)
[ -n "$static_libs" ] || { echo "install.sh: rustc did not report the static library's system libraries" >&2; exit 1; }
so=target/release/libxenvmi.so
grep -q "SONAME.*\[libxenvmi\.so\.$abi\]" <<<"$(readelf -d "$so")" \
  || { echo "install.sh: $so has no SONAME libxenvmi.so.$abi (build.rs sets it)" >&2; exit 1; }
L=$destdir$libdir; I=$destdir$prefix/include/xenvmi
install -d "$L/pkgconfig" "$I"
install -m 0755 "$so" "$L/libxenvmi.so.$version"
ln -sfn "libxenvmi.so.$version" "$L/libxenvmi.so.$abi"
ln -sfn "libxenvmi.so.$abi" "$L/libxenvmi.so"
install -m 0644 target/release/libxenvmi.a "$L/libxenvmi.a"
install -m 0644 include/xenvmi.h "$I/xenvmi.h"
cat > "$L/pkgconfig/xenvmi.pc" <<PC
prefix=$prefix
libdir=$libdir
includedir=\${prefix}/include

Name: xenvmi
Description: Agentless virtual machine introspection for Xen guests (C ABI)
Version: $version
Libs: -L\${libdir} -lxenvmi
Libs.private: $static_libs
Cflags: -I\${includedir}/xenvmi
PC
echo "install.sh: installed xenvmi $version (SONAME libxenvmi.so.$abi) under ${destdir}${prefix}"
