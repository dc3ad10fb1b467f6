#!/usr/bin/env python3
"""Seeds for the `capi` fuzz target (fuzz/fuzz_targets/capi.rs documents the input format).

Usage: python3 fuzz/make-capi-seeds.py   (from the repository root; reads the snapshot seed)
"""
import os, struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds", "capi")
os.makedirs(OUT, exist_ok=True)


def vcpus(*cpus):
    b = bytes([len(cpus)])
    for cr3, flags in cpus:
        b += struct.pack("<QB", cr3, flags)
    return b


def image(data):
    return struct.pack("<I", len(data)) + data


def op(code, args=b"", mem=0):
    """One operation: opcode, 16 argument bytes; byte 15 selects the memory handle
    (0 the image's, 1 the simulated domain's, 2 NULL)."""
    a = bytearray(args.ljust(16, b"\0")[:16])
    a[15] = mem
    return bytes([code]) + bytes(a)


def tiny_guest():
    """64 KiB, 4-level page tables at 0x1000 mapping va 0x400000.. to pa 0x8000.. (two
    pages), 'abcdefgh' across the page boundary: the image of src/mem/mod.rs's tests."""
    m = bytearray(0x10000)
    for pa, v in [(0x1000, 0x2007), (0x2000, 0x3007), (0x3010, 0x4007), (0x4000, 0x8007), (0x4008, 0x9007)]:
        struct.pack_into("<Q", m, pa, v)
    m[0x8FFC:0x9004] = b"abcdefgh"
    return bytes(m)


def put(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


cr4 = lambda reg, value: op(15, bytes([0, 0, reg, 0, 0, 0, 0, 0]) + struct.pack("<Q", value))
run = lambda action, flags=0, mask=0: op(24, bytes([mask, action, flags, 0, 0, 0, 0, 63]))

# Memory calls on a tiny guest, then a session on a simulated domain over it: a CR4 monitor
# and a denied write, an MSR monitor, a write-protected page in a view, and teardown.
put("tiny-guest-session",
    vcpus((0x1000, 2))
    + image(tiny_guest())
    + op(0)
    + op(3, struct.pack("<IQB", 0x1000, 0x400FFC, 1))
    + op(4, struct.pack("<QQ", 0x1000, 0x401000))
    + op(6)
    + op(7)
    + op(14)
    + op(16)
    + op(18, bytes([1, 2, 0, 1, 1]))
    + cr4(2, 0x100020)
    + run(1)
    + op(18, bytes([2, 0, 2, 0, 1]))
    + op(15, bytes([0, 1, 2, 0]) + b"\0" * 4 + struct.pack("<Q", 0xFFFFFFFF81000000))
    + run(1)
    + op(19, bytes([7]))
    + op(20, bytes([1, 5, 0, 0, 8, 0, 0, 0]))
    + op(21, bytes([1]))
    + op(15, bytes([0, 2, 4, 0]) + struct.pack("<I", 0x8000) + b"\xcc" * 8)
    + run(3)
    + op(27)
    + op(17)
    + op(13, bytes([40])))

# The real QEMU ELF header and notes (the snapshot seed): regions, vCPU registers from the
# notes, discovery attempts, reads.
with open(os.path.join(ROOT, "fuzz", "seeds", "snapshot", "qemu-elf-notes"), "rb") as f:
    elf = f.read()
put("qemu-elf-notes",
    vcpus()
    + image(elf)
    + op(0)
    + op(6, bytes([1, 0]))
    + op(2, struct.pack("<QI", 0, 4096))
    + op(7)
    + op(9, bytes([8]))
    + op(29)
    + op(13, bytes([255])))

# A callback that answers garbage: the event is answered, the session torn down.
put("garbage-response",
    vcpus((0x1000, 0), (0x1000, 2))
    + image(tiny_guest())
    + op(14)
    + op(16)
    + op(18, bytes([6]))
    + op(15, bytes([0, 5]) + b"\0" * 6 + struct.pack("<I", 1))
    + op(15, bytes([1, 5]) + b"\0" * 6 + struct.pack("<I", 2))
    + run(77, 0, 0x80)
    + op(16)
    + op(26)
    + run(0)
    + op(28)
    + op(30))

# The control calls on a simulated domain over the tiny guest: physical and virtual writes
# (one across the mapped page boundary, one into the unmapped page after it: refused whole),
# a write to the image refused, two pauses, registers set, a resume, a view switched to,
# refused while active, destroyed after the switch back, another created, teardown, and the
# domain freed with a pause held.
put("control-calls",
    vcpus((0x1000, 2), (0x1000, 2))
    + image(tiny_guest())
    + op(0)
    + op(14)
    + op(2, struct.pack("<QIBB", 0x8FF8, 16, 1, 0x77), mem=1)
    + op(2, struct.pack("<QIBB", 0x8FF8, 16, 1, 0x77), mem=0)
    + op(3, struct.pack("<IQBBB", 0x1000, 0x400FF8, 1, 1, 0x5A), mem=1)
    + op(3, struct.pack("<IQBBB", 0x1000, 0x401FF8, 1, 1, 0xA5), mem=1)
    + op(27, bytes([0, 0, 1]))
    + op(27, bytes([0, 0, 1]))
    + op(27, bytes([1, 0, 3, 0]) + b"\0" * 4 + struct.pack("<Q", 0xFFFFFFFF81000010))
    + op(27, bytes([1, 0, 3, 0x10]) + b"\0" * 4 + struct.pack("<Q", 0xFFFFFFFF81000020))
    + op(27, bytes([0, 0, 2]))
    + op(16)
    + op(19, bytes([7]))
    + op(19, bytes([7]))
    + op(21, bytes([1, 0]))
    + op(21, bytes([1, 1]))
    + op(21, bytes([0, 0]))
    + op(21, bytes([1, 1]))
    + op(21, bytes([0, 1]))
    + op(19, bytes([5]))
    + op(20, bytes([2, 5, 0, 0, 8, 0, 0, 0]))
    + op(17)
    + op(28))

# Policy sets and manifests: a specification with a remediation, a guard started with it on
# the simulated domain (refused: no kernel was found in the tiny guest), a bad specification,
# then a manifest that parses (written back, attested against nothing) and one that does not.
def with_byte14(code, args, value, mem=1):
    a = bytearray(op(code, args, mem))
    a[1 + 14] = value
    return bytes(a)

spec = b"cr4=deny,pause,resume; msr; kernel-text=allow"
manifest = (b'{"format":"xenvmi-attest-manifest","version":1,'
            b'"kernel":{"release":"6.1","banner":"Linux version 6.1","btf_sha256":null},'
            b'"executables":[],"modules":[{"name":"ext4","size":1000}]}')
put("policy-and-manifest",
    vcpus((0x1000, 2))
    + image(tiny_guest())
    + op(14)
    + with_byte14(21, bytes([len(spec)]), 0xfe) + spec
    + with_byte14(21, bytes([5]), 0xfe) + b"cr9;x"
    + with_byte14(21, bytes([0, 0, 0, 0]) + struct.pack("<I", len(manifest)), 0xff) + manifest
    + with_byte14(21, bytes([0, 0, 0, 0]) + struct.pack("<I", 12), 0xff) + b'{"format":1}')
