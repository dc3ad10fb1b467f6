#!/usr/bin/env python3
"""Seeds for the os_identify fuzz target (layout: fuzz/os_identify_harness.rs), made from the
windows_dtb seeds (layout: fuzz/windows_walk_harness.rs), whose memory holds small guests laid
out by the real ntoskrnl ISFs, each with a low stub and a self-referencing table:
  <build>-raw     no vCPU, no hint: the memory alone;
  <build>-lstar   one vCPU whose MSR_LSTAR is the seed's kernel base + 0x1000 (Windows region);
  <build>-banner  the memory with its low stub page zeroed and `Linux version 6.1.0` written
                  at 0x18000 (the banner tell, then a Linux search that fails).
Run from fuzz/: python3 make-os-identify-seeds.py"""
import os
import struct

HEADER = 8 + 8 + 1 + 2 * 19 + 4 * 5
CPU_HEADER = 2 * 9 + 4 * 2
os.makedirs("seeds/os_identify", exist_ok=True)
for name in sorted(os.listdir("seeds/windows_dtb")):
    data = open(os.path.join("seeds/windows_dtb", name), "rb").read()
    root, base, mode = struct.unpack_from("<QQB", data, 0)
    mem = bytearray(data[HEADER + (CPU_HEADER if mode & 4 else 0):])
    build = name.split("-")[0]
    no_regs = bytes([0]) + struct.pack("<Q", 0)
    open(f"seeds/os_identify/{build}-raw", "wb").write(no_regs + mem)
    vcpu = struct.pack("<QQQQQ", 0x80050033, root, 0x6f8, 0xd01, base + 0x1000)
    open(f"seeds/os_identify/{build}-lstar", "wb").write(bytes([1]) + vcpu + struct.pack("<Q", 0) + mem)
    linux = bytearray(mem)
    for page in range(0x1000, min(0x100000, len(linux)), 0x1000):
        if linux[page] == 0xE9 or linux[page:page + 2] == b"\xeb\x06":
            linux[page:page + 0x1000] = bytes(0x1000)
    if len(linux) > 0x18020:
        linux[0x18000:0x18013] = b"Linux version 6.1.0"
        open(f"seeds/os_identify/{build}-banner", "wb").write(no_regs + linux)
