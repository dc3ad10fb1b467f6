#!/usr/bin/env bash
# Real-Xen end-to-end test: boot Debian's Xen 4.17 with a dom0 inside Bochs 3.0 (software VMX +
# EPT, from a debootstrapped Debian 13 folder), create the tiny PVH test guest, run
# `xen-probe` against it in dom0, and turn the serial log into a verdict.
#   bash tests/xen-e2e/run.sh            # ~2-3 min once the downloads are cached
#   XEN=4.20 bash tests/xen-e2e/run.sh   # Debian 13's Xen 4.20 instead: same binaries, same checks
# Work files: target/xen-e2e/ (or $XEN_E2E_WORK). Needs root (apt, debootstrap, chroot).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${XEN_E2E_WORK:-$ROOT/target/xen-e2e}
cd "$ROOT"
bash scripts/setup.sh
[ "$(id -u)" -eq 0 ] || { echo "real-xen: needs root (apt-get, debootstrap, chroot for Bochs 3.0)" >&2; exit 1; }
apt-get update -qq -o DPkg::Lock::Timeout=600
# (xen,cli: the same build of the library as run-linux.sh and `cargo bench --all-features`.)
# XENVMI_E2E_BUILT=DIR: those built already, in DIR (scripts/test-all.sh stages them there, so
# that its other steps may rebuild target/release while this suite runs).
if [ -n "${XENVMI_E2E_BUILT:-}" ]; then R=$XENVMI_E2E_BUILT; else
  cargo build --release --features xen,cli --lib --example xen-probe --example xen-detach; R=target/release
fi
mkdir -p "$WORK/payload"
cp "$R/examples/xen-probe" "$R/examples/xen-detach" tests/xen-e2e/payload/run.sh "$WORK/payload/"
# The C ABI as a vendor's program uses it: libxenvmi.a (xen feature; cli adds nothing it links) and the committed header.
gcc -std=c11 -Wall -Wextra -Werror -O2 -I include tests/xen-e2e/payload/c-monitor.c \
  "$R/libxenvmi.a" -lpthread -ldl -lm -lrt -lutil -o "$WORK/payload/c-monitor"
# The stealth breakpoint goes on the guest's loop head: build the guest as the recipe does and
# read the label's address (PVH loads the ELF at its physical addresses; paging is identity).
gcc -m32 -c tests/xen-e2e/recipe/guest/tiny.S -o "$WORK/tiny-probe.o"
ld -m elf_i386 -T tests/xen-e2e/recipe/guest/tiny.ld -o "$WORK/tiny-probe.elf" "$WORK/tiny-probe.o"
nm "$WORK/tiny-probe.elf" | awk '$3 == "loop" {print $1}' > "$WORK/payload/bp_gpa"
# Where the guest's #BP handler counts the int3s it takes (the hooks hand the guest's own back).
nm "$WORK/tiny-probe.elf" | awk '$3 == "bp_count" {print $1}' > "$WORK/payload/bp_count_gpa"
sym() { printf '%x' "0x$(nm "$WORK/tiny-probe.elf" | awk -v n="$1" '$3 == n {print $1}')"; }
PD_A=$(sym pd_a); PD_B=$(sym pd_b); INT3_SITE=$(sym int3_site)
echo "stealth breakpoint at gpa 0x$(cat "$WORK/payload/bp_gpa")"
XEN=${XEN:-4.17}   # 4.17: Debian 12's Xen; 4.20: Debian 13's (see recipe/run.sh)
LOG="$WORK/serial.txt"; [ "$XEN" = 4.17 ] || LOG="$WORK/serial-$XEN.txt"
if ! XEN=$XEN BOCHS=debian13 bash tests/xen-e2e/recipe/run.sh "$WORK/work" "$WORK/payload" > "$LOG" 2>&1; then
  tail -n 20 "$LOG"
  echo "real-xen: the recipe failed before Bochs ran (its last lines are above; log: $LOG)"
  exit 1
fi
grep -a -E "bochs finished|PAYLOAD|PROBE|DETACH|CABI|xen-probe:" "$LOG" || true

fail=0
check() { # description, extended regex that must match the log
  if grep -a -qE "$2" "$LOG"; then echo "ok   - $1"; else echo "FAIL - $1"; fail=$((fail+1)); fi
}
count_of() { grep -a -oE "\"$1\": [0-9]+" "$LOG" | head -1 | grep -oE "[0-9]+$" || echo 0; }
check "Xen $XEN with vm_event interface 7, HVM/HAP, altp2m external" "PROBE caps .*xen_version: \\(${XEN%%.*}, ${XEN#*.}\\), vm_event_version: 7, hvm: true, hap: true, altp2m_mode: 2"
check "registers of vCPU 0 read (paging on)" "PROBE vcpu0 rip=0x[0-9a-f]+ cr0=0x8[0-9a-f]+ cr3=0x[0-9a-f]+"
check "foreign memory reads see the guest running" "PROBE data page counter [0-9]+ -> [0-9]+ \(guest running: true\)"
for k in cr0 cr3 cr4 msr int3 mem_write_data_gfn; do
  n=$(count_of "$k")
  if [ "${n:-0}" -gt 0 ]; then echo "ok   - $k events: $n"; else echo "FAIL - no $k events"; fail=$((fail+1)); fi
done
check "a CR4 write and an MSR write were denied" "PROBE denied cr4 Some\(.*\) msr Some\(.*\)"
check "DENY kept CR4 and the MSR as they were (the next write saw the old value)" "PROBE deny held: cr4 true msr true"
check "CR3 events carry exactly the guest's two page directories (0x$PD_A, 0x$PD_B)" "PROBE cr3 values \{$PD_A, $PD_B\}"
check "int3 events report the guest's int3 instruction (0x$INT3_SITE)" "PROBE cr3 values .* int3 at \{$INT3_SITE\}"
check "CR4 events carry the guest's PGE toggle (0x10 <-> 0x90) and MSR events index 0x174" "PROBE denied cr4 Some\(\((10, 90|90, 10)\)\) msr Some\(\(174, "
check "guest still running after teardown" "PROBE after teardown: counter [0-9]+ -> [0-9]+ \(guest running: true\)"
check "a second monitor attaches at once (no EBUSY)" "PROBE re-attach: ok"
check "hooks, stealth: hits at the loop head, the original byte in guest memory while armed, guest running" \
  "PROBE hooks stealth: hits [1-9][0-9]* .*armed byte in guest memory (0x[0-9a-f]+) \(original \1\); after teardown byte \1, .*\(guest running: true\)"
check "hooks, in place: hits stepped over by Xen's emulator, the int3 in guest memory while armed, restored, guest running" \
  "PROBE hooks in-place: hits [1-9][0-9]* .*armed byte in guest memory 0xcc \(original (0x[0-9a-f]+)\); after teardown byte \1, .*\(guest running: true\)"
check "the guest's own int3s reach it: its #BP handler took one per int3 it executed, at every hit (stealth)" \
  "PROBE hooks stealth: .*handed back [1-9][0-9]*, guest #BPs = int3s executed at every hit: true"
check "the guest's own int3s reach it: its #BP handler took one per int3 it executed, at every hit (in place)" \
  "PROBE hooks in-place: .*handed back [1-9][0-9]*, guest #BPs = int3s executed at every hit: true"
check "probe verdict" "PROBE RESULT PASS"
check "C ABI: a C program traps CR3, CR4 and MSR writes and denies every CR4 write" \
  "CABI events [1-9][0-9]* cr3 [1-9][0-9]* cr4 [1-9][0-9]* \(denied [1-9][0-9]*\) msr [1-9][0-9]* other 0 interrupted 1"
check "C ABI: its CR3 events carry exactly the guest's two page directories" \
  "CABI cr3 values 0x($PD_A|$PD_B) 0x($PD_A|$PD_B)\s*$"
check "C ABI: after its teardown the guest runs and a new monitor attaches" "CABI after teardown: .*guest running: true"
check "C ABI verdict" "CABI RESULT PASS"
clean='guest running=true \([0-9]+ -> [0-9]+\) views=\[\] access=rwx journal=absent attach=ok'
for sig in INT TERM; do
  check "SIG$sig in the middle of the event stream: the monitor stops and tears down" \
    "PAYLOAD: monitor exit 0 after SIG$sig"
  check "after SIG$sig: guest runs, no view, gfn rwx again, no journal, a new monitor attaches" \
    "DETACH check after-SIG$sig: $clean"
done
check "a panicking handler: its event answered, the session torn down" \
  "DETACH run ended with error after [0-9]+ events: the event handler panicked \(deliberate panic"
check "after the panic: guest runs, no view, gfn rwx again, no journal, a new monitor attaches" \
  "DETACH check after-panic: $clean"
check "SIGKILL leaves the journal behind" "DETACH check after-SIGKILL-before-recovery: .*journal=present"
check "the next run recovers from the journal" "DETACH recovered: journal of pid [0-9]+ \([0-9]+ changes\), ring was enabled: true"
check "after recovery: guest runs, no view, gfn rwx again, no journal, a new monitor attaches" \
  "DETACH check after-recovery: $clean"
if [ "$fail" -eq 0 ]; then echo "real-xen: all checks passed"; else echo "real-xen: $fail check(s) failed (log: $LOG)"; exit 1; fi
