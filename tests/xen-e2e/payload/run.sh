#!/bin/sh
# Runs in dom0 (PID 1 calls it with the test guest's domain id).
D="$1"
G=110   # the tiny guest's data page (it counts there)
echo "PAYLOAD: xen-probe on domain $D"
BP=$(cat /payload/bp_gpa 2>/dev/null || true)
BPC=$(cat /payload/bp_count_gpa 2>/dev/null || true)
/payload/xen-probe "$D" "${PROBE_SECONDS:-15}" $G $BP $BPC 2>&1
echo "PAYLOAD: probe exit $?"

# The same from C, through include/xenvmi.h and libxenvmi.a.
/payload/c-monitor "$D" "${CABI_SECONDS:-5}" $G 2>&1
echo "PAYLOAD: c-monitor exit $?"

# Crash-safe detach: interrupt a monitor in the middle of its event stream, then check that the
# guest runs on, no view or access restriction is left and a new monitor attaches at once.
export XENVMI_JOURNAL_DIR=/run/xenvmi
for SIG in INT TERM; do
  /payload/xen-detach "$D" run $G > /tmp/detach.out 2>&1 &
  P=$!
  sleep 4
  kill -$SIG $P
  wait $P; echo "PAYLOAD: monitor exit $? after SIG$SIG"
  cat /tmp/detach.out
  /payload/xen-detach "$D" check $G "after-SIG$SIG" 2>&1
done
/payload/xen-detach "$D" run $G --panic-after 2000 2>&1
echo "PAYLOAD: monitor exit $? after a handler panic"
/payload/xen-detach "$D" check $G after-panic 2>&1

# SIGKILL: no teardown. The journal lets the next run undo what was left.
/payload/xen-detach "$D" run $G > /tmp/detach.out 2>&1 &
P=$!
sleep 4
kill -KILL $P
wait $P; echo "PAYLOAD: monitor exit $? after SIGKILL"
cat /tmp/detach.out
ls -l /run/xenvmi 2>&1
/payload/xen-detach "$D" check $G after-SIGKILL-before-recovery 2>&1
xl list 2>&1
/payload/xen-detach "$D" recover 2>&1
/payload/xen-detach "$D" check $G after-recovery 2>&1
xl list 2>&1
