#!/usr/bin/env python3
"""disk-extract.py IMAGE OUTDIR: take the files that dom0 wrote with payload/to-disk.c out of
the Bochs disk image IMAGE into OUTDIR. Each table line is checked: name, bounds within the
image, and the CRC-32 recomputed over the bytes. Prints one line per file; exit
status 1 if the table is missing or any file fails its check."""
import os
import re
import sys
import zlib

img, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
size = os.path.getsize(img)
with open(img, "rb") as f:
    table = f.read(512).split(b"\0", 1)[0].decode("ascii", "replace")
    lines = table.split("\n")
    if lines[0] != "XVDISK1":
        print(f"disk-extract: {img}: no table (dom0 wrote nothing)")
        sys.exit(1)
    bad = 0
    for line in filter(None, lines[1:]):
        m = re.fullmatch(r"([A-Za-z0-9._-]+) (\d+) (\d+) ([0-9a-f]{8})", line)
        if not m or int(m[2]) + int(m[3]) > size:
            print(f"disk-extract: {img}: bad table line {line!r}")
            bad += 1
            continue
        name, off, length, want = m[1], int(m[2]), int(m[3]), m[4]
        f.seek(off)
        h, left = 0, length
        with open(os.path.join(out, name), "wb") as o:
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    break
                o.write(chunk)
                h = zlib.crc32(chunk, h)
                left -= len(chunk)
        ok = left == 0 and f"{h:08x}" == want
        print(f"disk-extract: {name}: {length} bytes, checksum {'ok' if ok else 'MISMATCH'}")
        bad += 0 if ok else 1
sys.exit(1 if bad else 0)
