#!/usr/bin/env python3
"""serial-relay.py HOST PORT LOG IDLE_SECS KEYS

Bochs's COM1 as a socket (bochsrc `mode=socket-server`) instead of a file, so that Xen's console
can be typed into: every byte Bochs sends is appended to LOG (what `mode=file` would have
written), and once the log has been idle for IDLE_SECS seconds (0: never), Xen's console keys
KEYS are sent once, each after Ctrl-A three times (which switches the console's input to Xen):
e.g. "qdra" dumps domains and vCPUs, each CPU's registers and stack, the run queues and the
timer queues. A machine that stalls without a word then says where it is, or, if Xen does not
answer, that Xen itself no longer runs. Ends when Bochs closes the socket.
"""
import socket
import sys
import time

host, port, log, idle, keys = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
for _ in range(600):
    try:
        s = socket.create_connection((host, port))
        break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("serial-relay: no connection to %s:%d" % (host, port))
s.settimeout(1.0)
last = time.time()
sent = False
with open(log, "ab", buffering=0) as out:
    while True:
        try:
            data = s.recv(65536)
            if not data:
                break
            out.write(data)
            last = time.time()
        except socket.timeout:
            pass
        if idle > 0 and not sent and keys and time.time() - last > idle:
            sent = True
            out.write(("\n[serial-relay: idle %.0f s; sending Xen console keys %r]\n" % (idle, keys)).encode())
            for k in keys:
                s.sendall(b"\x01\x01\x01")
                time.sleep(2)
                s.sendall(k.encode())
                time.sleep(20)
            s.sendall(b"\x01\x01\x01")
