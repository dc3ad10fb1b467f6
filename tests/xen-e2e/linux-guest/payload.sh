#!/bin/sh
# Runs in dom0 (PID 1 calls it with the tiny guest's domain id): the Linux-guest suite.
xl destroy "$1" 2>&1   # the tiny guest is not needed here: give its CPU time to Linux
echo "PAYLOAD: creating the Linux guest"
xl create /payload/linux.cfg 2>&1; echo "PAYLOAD: xl create rc=$?"
# Wait until the guest kernel is up (the OS layer needs its BTF and kallsyms in memory).
sleep "${BOOT_WAIT:-40}"
xl list 2>&1
echo "PAYLOAD: cr3-trace"
/payload/cr3-trace --domain xvguest > /tmp/cr3.out 2>&1 &
P=$!
sleep 20; kill -INT $P; wait $P; echo "PAYLOAD: cr3-trace exit $?"
head -n 40 /tmp/cr3.out; echo "..."; tail -n 5 /tmp/cr3.out
grep -c "xv-alpha" /tmp/cr3.out | sed 's/^/PAYLOAD: cr3 switches to xv-alpha: /'
grep -c "xv-beta" /tmp/cr3.out | sed 's/^/PAYLOAD: cr3 switches to xv-beta: /'
# kernel-guard three ways: the CR4/LSTAR monitors alone; with kernel text write-protected in
# the host p2m (view 0); and (last, see docs/real-xen.md) with an altp2m view of its own.
cputime() { xl list xvguest 2>/dev/null | awk 'NR == 2 {print $6}'; }
for MODE in --no-text --host-view "--text-pages 0"; do
  echo "PAYLOAD: kernel-guard $MODE"
  /payload/kernel-guard --domain xvguest $MODE > /tmp/guard.out 2> /tmp/guard.err &
  P=$!
  sleep 30; kill -INT $P; wait $P; echo "PAYLOAD: kernel-guard exit $?"
  cat /tmp/guard.err; cat /tmp/guard.out
  # The guest must still be running: its vCPU time goes on.
  T1=$(cputime); sleep 10; T2=$(cputime)
  echo "PAYLOAD: after kernel-guard $MODE: guest vCPU time $T1 -> $T2"
done
xl vcpu-list xvguest 2>&1
xl dmesg 2>&1 | tail -n 30
