#!/bin/sh
# Runs in dom0 (PID 1 calls it with the test guest's domain id).
D="$1"
echo "PAYLOAD: xen-probe on domain $D"
BP=$(cat /payload/bp_gpa 2>/dev/null || true)
/payload/xen-probe "$D" "${PROBE_SECONDS:-15}" 110 $BP 2>&1
echo "PAYLOAD: probe exit $?"
xl list 2>&1
