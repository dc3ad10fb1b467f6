#!/usr/bin/env bash
# The installed C library as a vendor uses it: scripts/install.sh into a staging directory,
# then C programs built with nothing but pkg-config against that copy, linked dynamically (run
# with the staged libxenvmi.so, checked by its SONAME) and statically (pkg-config --static),
# run on the real Linux 6.1 fixture.   bash scripts/check-install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
bash scripts/install.sh --prefix /usr --destdir "$T/stage"
export PKG_CONFIG_PATH=$T/stage/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$T/stage
echo "check-install: pkg-config --cflags --libs xenvmi: $(pkg-config --cflags --libs xenvmi)"
cc=${CC:-cc}
# shellcheck disable=SC2046
$cc -std=c11 -Wall -Wextra -Werror tests/c/version_check.c $(pkg-config --cflags --libs xenvmi) -o "$T/version"
LD_LIBRARY_PATH=$T/stage/usr/lib "$T/version"
# (The output is taken whole before grep reads it: `ldd | grep -q` under pipefail fails when grep
# exits at its match while ldd still writes, a race that a loaded machine loses.)
deps=$(LD_LIBRARY_PATH=$T/stage/usr/lib ldd "$T/version")
grep -q "libxenvmi.so.0.1 => $T/stage/usr/lib/libxenvmi.so.0.1" <<<"$deps" \
  || { echo "check-install: the program does not load the staged libxenvmi.so by its SONAME" >&2; exit 1; }
# The fixture (unpacked by the test suite, or here from its .zst).
F=target/xenvmi-fixtures/linux-6.1/vmcore.elf
[ -f "$F" ] || { mkdir -p "$(dirname "$F")"; zstd -q -d -f fixtures/linux-6.1/vmcore.elf.zst -o "$F"; }
ISF=fixtures/linux-6.1/debian-6.1.0-56-amd64.json.xz
for link in dynamic static; do
  flags=$(pkg-config --cflags --libs xenvmi)
  # Static: the archive, and the system libraries pkg-config --static lists for it.
  [ $link = static ] && flags="$(pkg-config --cflags xenvmi) $(pkg-config --libs-only-L xenvmi) -Wl,-Bstatic -lxenvmi -Wl,-Bdynamic $(pkg-config --static --libs-only-l xenvmi | sed 's/-lxenvmi//')"
  # shellcheck disable=SC2086
  $cc -std=c11 -Wall -Itests/c tests/c/test_snapshot.c $flags -o "$T/snap-$link"
  if [ $link = static ] && grep -q libxenvmi <<<"$(ldd "$T/snap-$link")"; then
    echo "check-install: the static build still loads libxenvmi.so" >&2; exit 1
  fi
  out=$(LD_LIBRARY_PATH=$T/stage/usr/lib "$T/snap-$link" "$F" "$ISF")
  echo "$out" | grep -qx done || { echo "$out" | tail -n 5; echo "check-install: test_snapshot ($link) failed" >&2; exit 1; }
  echo "check-install: test_snapshot built with pkg-config ($link) ran on the fixture: $(echo "$out" | grep -c '^process ') processes"
done
echo "check-install: ok"
