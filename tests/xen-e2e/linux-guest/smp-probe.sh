#!/bin/sh
# Diagnostic payload (LINUX_PAYLOAD=tests/xen-e2e/linux-guest/smp-probe.sh bash tests/xen-e2e/run-linux.sh):
# boots the suite's Linux guest with 2 vCPUs, then reports what each vCPU is doing: the guest's
# console, xl vcpu-list (CPU time per vCPU: stalled or slow?), xenctx with the guest's
# System.map (booted nokaslr), xen-hvmctx, and Xen's own view (debug-keys q).
xl destroy "$1" 2>&1
gunzip -c /payload/System.map.gz > /tmp/System.map
for V in ${SMP_VARIANTS:-plain}; do
  extra=; [ "$V" = plain ] || extra=$(echo "$V" | tr ',' ' ')
  sed -e 's/^vcpus = .*/vcpus = 2/' -e "s|rdinit=/init|rdinit=/init nokaslr $extra|" /payload/linux.cfg > /tmp/smp.cfg
  grep -E "^(vcpus|cmdline)" /tmp/smp.cfg | sed "s/^/SMP $V: cfg: /"
  xl create /tmp/smp.cfg 2>&1 | sed "s/^/SMP $V: /"
  D=$(xl domid xvguest)
  for t in 1 2 3; do
    sleep "${SMP_WAIT:-40}"
    echo "SMP $V: round $t"
    xl vcpu-list xvguest 2>&1 | sed "s/^/SMP $V: /"
    xl dmesg -c 2>/dev/null | grep -a -v "^(XEN) \*\*\*" | tail -n 60 | sed "s/^/SMP $V: dmesg: /"
    for v in 0 1; do
      xenctx -s /tmp/System.map -S "$D" "$v" 2>&1 | head -n 40 | sed "s/^/SMP $V: xenctx v$v: /"
    done
  done
  xen-hvmctx "$D" 2>&1 | grep -a -i -E "cpu|rip|cr0|cr4|efer|cs|lapic|pending|intr" | head -n 60 | sed "s/^/SMP $V: hvmctx: /"
  xl debug-keys q; xl dmesg -c 2>/dev/null | grep -a -A12 -E "VCPU[01]:|d$D" | head -n 80 | sed "s/^/SMP $V: xen: /"
  xl destroy xvguest 2>&1
done
