#!/usr/bin/env python3
"""Make small fuzz seeds from the real fixtures (run after `cargo test` has unpacked them).

Seeds are committed under fuzz/seeds/<target>/; this script documents where each came from.
Usage: python3 fuzz/make-seeds.py   (from the repository root)
"""
import json, lzma, os, struct, subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures", "linux-6.1")
CACHE = os.path.join(ROOT, "target", "xenvmi-fixtures", "linux-6.1")
OUT = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def zstd_d(path):
    return subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout


# snapshot: the real ELF header + program headers + notes, with PT_LOADs shrunk to fit,
# followed by 4 KiB of real memory; plus a LiME wrapper of the same memory.
with open(os.path.join(CACHE, "vmcore.elf"), "rb") as f:
    head = bytearray(f.read(8192))
phoff, = struct.unpack_from("<Q", head, 32)
phnum, = struct.unpack_from("<H", head, 56)
data_off = 4096
for i in range(phnum):
    o = phoff + 56 * i
    if struct.unpack_from("<I", head, o)[0] == 1:
        struct.pack_into("<QQQQ", head, o + 8, data_off, 0, struct.unpack_from("<Q", head, o + 24)[0], 2048)
        data_off += 2048
put("snapshot", "qemu-elf-notes", bytes(head[:data_off]))
lime = struct.pack("<IIQQ8x", 0x4C694D45, 1, 0x1000, 0x1fff) + bytes(head[4096:8192])
put("snapshot", "lime", lime)

# snapshot: 64-bit Windows crash dumps (PAGEDU64). No real Windows dump is available: the
# containers are synthetic, written by the layout in src/backend/snapshot/crashdump.rs
# (kdmp-parser's DUMP_HEADER64 / BMP_HEADER64), holding real pages of the Linux fixture: vCPU 1's
# top-level page table, two pages of kernel text and the banner's page. Header fields a dump
# writer leaves unset keep Windows' "PAGE" fill.
def read_pa(pa, n=4096):  # the fixture's first PT_LOAD maps paddr 0 at file offset 1992
    with open(os.path.join(CACHE, "vmcore.elf"), "rb") as f:
        f.seek(1992 + pa)
        return f.read(n)

CR3, TEXT, BANNER = 0x28f0000, 0xae00000, 0xbf61000

def dmp_header(dump_type):
    h = bytearray(b"PAGE" * 0x800)
    h[4:8] = b"DU64"
    struct.pack_into("<IIQQQQII", h, 8, 0xf, 19045, CR3, 0xffffc80000000000,
                     0xfffff8061a42a2d0, 0xfffff8061a41e1c0, 0x8664, 2)
    struct.pack_into("<II4Q", h, 0x38, 0xe2, 0, 1, 2, 3, 4)
    struct.pack_into("<Q", h, 0x80, 0xfffff8061a400b20)
    ctx = bytearray(0x4d0)  # x64 CONTEXT: flags, MxCsr, selectors, EFlags, rax..r15, rip
    struct.pack_into("<II6HI", ctx, 0x30, 0x10000b, 0x1f80, 0x10, 0x2b, 0x2b, 0x53, 0x2b, 0x18, 0x246)
    struct.pack_into("<16Q", ctx, 0x78, *range(1, 17))
    struct.pack_into("<Q", ctx, 0xf8, 0xffffffff870592eb)  # the fixture's vCPU 1 rip
    struct.pack_into("<I", ctx, 0x118, 0x1f80)
    h[0x348:0x348 + 0x4d0] = ctx
    struct.pack_into("<I", h, 0xf98, dump_type)
    return h

full = dmp_header(1)  # DumpType 1: two runs, their pages from 0x2000 on
runs = [(CR3 >> 12, 1), (TEXT >> 12, 2)]
struct.pack_into("<IIQ", full, 0x88, len(runs), 0, sum(c for _, c in runs))
for i, (base, count) in enumerate(runs):
    struct.pack_into("<QQ", full, 0x98 + 16 * i, base, count)
full += read_pa(CR3) + read_pa(TEXT, 8192)
put("snapshot", "windows-full-dump", bytes(full))

frames = [CR3 >> 12, TEXT >> 12, (TEXT >> 12) + 1, BANNER >> 12]
pages = frames[-1] + 1
bitmap = bytearray((pages + 7) // 8)
for f in frames:
    bitmap[f // 8] |= 1 << (f % 8)
first = (0x2038 + len(bitmap) + 0xfff) & ~0xfff
bmp = dmp_header(5) + b"FDMP" + b"DUMP" + bytes(0x18) + struct.pack("<QQQ", first, len(frames), pages) + bitmap
bmp += bytes(first - len(bmp))
for f in frames:
    bmp += read_pa(f << 12)
put("snapshot", "windows-bitmap-dump", bytes(bmp))

# btf: a real module's split BTF (small) and the header of vmlinux's.
import tarfile, io
SHARED_BTF = os.path.join(ROOT, "..", "shared", "fixtures", "linux-6.1", "btf.tar.zst")
tar = tarfile.open(fileobj=io.BytesIO(zstd_d(SHARED_BTF))) if os.path.exists(SHARED_BTF) else None
btf = zstd_d(os.path.join(FIX, "btf-vmlinux.zst"))
# First types of vmlinux BTF: keep the header, cut the type section after whole records and
# keep the strings those types name.
hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<IIIII", btf, 4)
ts = hdr_len + type_off
extra = {1: 4, 3: 12, 4: 12, 5: 12, 6: 8, 13: 8, 14: 4, 15: 12, 17: 4, 19: 12}
off, count = ts, 0
while off < ts + type_len and count < 60:
    info, = struct.unpack_from("<I", btf, off + 4)
    kind, vlen = (info >> 24) & 0x1f, info & 0xffff
    per = extra.get(kind, 0)
    off += 12 + (per * vlen if kind in (4, 5, 6, 13, 15, 19) else per)
    count += 1
types = btf[ts:off]
max_name = 0
o = 0
while o < len(types):
    name_off, info = struct.unpack_from("<II", types, o)
    max_name = max(max_name, name_off)
    kind, vlen = (info >> 24) & 0x1f, info & 0xffff
    per = extra.get(kind, 0)
    if kind in (4, 5, 6, 13, 19):
        for m in range(vlen):
            max_name = max(max_name, struct.unpack_from("<I", types, o + 12 + per * m)[0])
    o += 12 + (per * vlen if kind in (4, 5, 6, 13, 15, 19) else per)
sbase = hdr_len + str_off
end = btf.index(b"\0", sbase + max_name) + 1
strings = btf[sbase:end]
small = bytearray(btf[:hdr_len])
struct.pack_into("<IIII", small, 8, 0, len(types), len(types), len(strings))
put("btf", "vmlinux-prefix", bytes(small) + types + strings)
if tar:
    for m in tar.getmembers():
        if m.name.endswith("/crc7") or m.name.endswith("/dummy"):
            put("btf", "module-" + os.path.basename(m.name), tar.extractfile(m).read())

# symbol_text: the first 300 lines of the real /proc/kallsyms.
ks = zstd_d(os.path.join(FIX, "kallsyms.zst")).decode()
lines = ks.splitlines()
put("symbol_text", "kallsyms-head", ("\n".join(lines[:300]) + "\n").encode())
put("symbol_text", "kallsyms-modules", ("\n".join([l for l in lines if "[" in l][:100]) + "\n").encode())

# kallsyms_image: a 6.1-layout table of 600 real symbol names and addresses (the layout the
# decoder expects; the real tables are 3 MB, too large to mutate usefully).
syms = []
percpu = 0
for l in lines:
    a, t, n = l.split()[:3]
    if "[" in l or not n.isidentifier():
        continue
    if int(a, 16) < 1 << 32:
        if percpu >= 40:
            continue
        percpu += 1
    syms.append((int(a, 16), t + n))
    if len(syms) >= 600:
        break
syms.sort()
base = 0xffffffff86600000
out = bytearray()
def pad():
    while len(out) % 8:
        out.append(0)
for a, _ in syms:
    o = a if a < 1 << 32 else -((a - base)) - 1
    out += struct.pack("<i", max(min(o, 2**31 - 1), -2**31))
pad(); out += struct.pack("<Q", base); out += struct.pack("<I", len(syms)); pad()
names_start = len(out); markers = []
for i, (_, n) in enumerate(syms):
    if i % 256 == 0:
        markers.append(len(out) - names_start)
    b = n.encode()
    out.append(len(b)); out += b
pad()
for m in markers:
    out += struct.pack("<I", m)
pad()
table = len(out); idx = []
for i in range(256):
    idx.append(len(out) - table)
    out += (bytes([i]) if 0x21 <= i < 0x7f else b"#") + b"\0"
pad()
for i in idx:
    out += struct.pack("<H", i)
put("kallsyms_image", "table-600", bytes(out))

# isf: the real ISF reduced to the types and symbols the walkers use.
isf = json.loads(lzma.open(os.path.join(FIX, "debian-6.1.0-56-amd64.json.xz")).read())
keep = ["task_struct", "mm_struct", "module", "module_layout", "list_head", "uts_namespace", "new_utsname"]
todo = list(keep)
while todo:  # plus the anonymous struct/union types their unnamed_field_* members use
    t = todo.pop()
    for f in isf["user_types"][t]["fields"].values():
        n = f["type"].get("name", "")
        if n.startswith("unnamed_") and n not in keep:
            keep.append(n)
            todo.append(n)
small = {"metadata": isf["metadata"], "base_types": isf["base_types"],
         "user_types": {k: isf["user_types"][k] for k in keep},
         "symbols": {k: isf["symbols"][k] for k in ["_text", "init_task", "modules", "linux_banner", "init_top_pgt"]}}
put("isf", "linux-6.1-reduced.json", json.dumps(small).encode())
put("isf", "linux-6.1-reduced.json.xz", lzma.compress(json.dumps(small).encode(), format=lzma.FORMAT_XZ))
# journal: the one xen-detach left when it was killed with SIGKILL on real Xen
# (docs/real-xen.md), with the pid and start time it had there.
put("journal", "xen-detach", b"xenvmi-journal 1 pid=134 start=1234 target=xen:domain-1\n"
    b"monitor cr 3 sync=1 change=1 mask=0x0\nmonitor cr 4 sync=1 change=1 mask=0x0\n"
    b"monitor msr 0x174 change=0\nmonitor int3\nview 1\naccess 1 0x110 rwx\nswitched\n")
# ...and the same changes in the format-2 header (bound to a host boot and a domain UUID, made
# up here) that journals have had since recovery checks that binding.
put("journal", "xen-detach-bound", b"xenvmi-journal 2 pid=134 start=1234 "
    b"boot=6f1c2a0e-5b7d-4c1e-9a43-2d8e0f6b7c15 domain=c3e4f0a2-1b2c-4d5e-8f90-0a1b2c3d4e5f "
    b"target=xen:domain-1\n"
    b"monitor cr 3 sync=1 change=1 mask=0x0\nmonitor cr 4 sync=1 change=1 mask=0x0\n"
    b"monitor msr 0x174 change=0\nmonitor int3\nview 1\naccess 1 0x110 rwx\nswitched\n")
print("seeds written to", OUT)

# manifest: `xenvmi attest learn fixtures/linux-6.1/vmcore.elf.zst --manifest
# fuzz/seeds/manifest/linux-6.1-learned.json` (a run of the command, a seed only: nothing is
# compared with it), and a small one with each form of code page (none, not present).
put("manifest", "small", json.dumps({
    "format": "xenvmi-attest-manifest", "version": 1,
    "kernel": {"release": "r", "banner": "b", "btf_sha256": None},
    "executables": [{"path": "/bin/a", "code_page": None},
                    {"path": "/bin/b", "code_page": {"file_offset": 0, "present": False, "sha256": None}}],
    "modules": []}).encode())
