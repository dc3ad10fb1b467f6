#!/usr/bin/env python3
"""Write fuzz/seeds/linux_walk/synthetic-guest: a linux_walk input that discovery accepts.

Random bytes almost never hold page tables, a banner and a task list that line up, so without
a seed the fuzzer stays in discovery. This seed is a tiny coherent guest in the input layout
of fuzz_targets/linux_walk.rs (arbitrary 1.5's encoding: fields in order, integers
little-endian, bools one byte; the image, the last field, as the rest of the input with a
"one more byte" flag before each byte, so at most about 64 KiB of image fit the target's
128 KiB inputs): 4 KiB pages mapping 10 pages of "kernel image" at
0xffffffff81000000, a banner, init_task and one process holding a TCP and a UNIX socket, one
module with its own symbol table and its kobject in module_kset (beside a built-in module's),
and a printk ring of three records, and a vmap area list whose lower area holds a module
unlinked from both lists (found only by the vmap view). The field offsets are the input's own (one table below),
so the fuzzer mutates layouts as well as memory.
Usage: python3 fuzz/make-linux-walk-seed.py   (from the repository root)
"""
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT_VA = 0xFFFFFFFF81000000
TEXT_PA = 0x5000
PAGES = 10
S = 0x100  # every struct's size (the target's struct_size)

# FIELDS of the target, in order, then the field size (module name length) and struct size.
FIELDS = [0x10, 0x20, 0x24, 0x30, 0x08, 0x40, 0x48, 0x08, 0x08, 0x18, 0x50, 0x00, 0x08, 0x60, 56, S]

# DETAIL_FIELDS of the target, by name; anything not listed is 0.
D = {
    ("mm_struct", "arg_start"): 0x10, ("mm_struct", "arg_end"): 0x18,
    ("mm_struct", "env_start"): 0x20, ("mm_struct", "env_end"): 0x28,
    ("mm_struct", "exe_file"): 0x30,
    ("path", "dentry"): 0x08, ("dentry", "d_name"): 0x08, ("qstr", "len"): 0x04,
    ("qstr", "name"): 0x08, ("dentry", "d_sb"): 0x18, ("dentry", "d_inode"): 0x20,
    ("mount", "mnt"): 0x10, ("mount", "mnt_mountpoint"): 0x08,
    ("task_struct", "cred"): 0x58, ("cred", "uid"): 0x04, ("cred", "gid"): 0x08,
    ("cred", "euid"): 0x0C, ("cred", "egid"): 0x10, ("task_struct", "__state"): 0x60,
    ("task_struct", "exit_state"): 0x64, ("task_struct", "thread_group"): 0x68,
    ("mm_struct", "start_brk"): 0x40, ("mm_struct", "brk"): 0x48,
    ("mm_struct", "start_stack"): 0x50,
    ("task_struct", "files"): 0x78, ("files_struct", "fdt"): 0x08,
    ("fdtable", "max_fds"): 0x00, ("fdtable", "fd"): 0x08, ("inode", "i_ino"): 0x08,
    ("file", "f_op"): 0x10, ("file", "private_data"): 0x18, ("file", "f_inode"): 0x20,
    ("inode", "i_mode"): 0x00, ("socket", "file"): 0x10, ("socket", "sk"): 0x18,
    ("sock", "__sk_common"): 0x00, ("sock_common", "skc_daddr"): 0x00,
    ("sock_common", "skc_rcv_saddr"): 0x04, ("sock_common", "skc_dport"): 0x0C,
    ("sock_common", "skc_num"): 0x0E, ("sock_common", "skc_family"): 0x10,
    ("sock_common", "skc_state"): 0x12, ("sock_common", "skc_v6_daddr"): 0x38,
    ("sock_common", "skc_v6_rcv_saddr"): 0x48, ("sock", "sk_type"): 0x80,
    ("sock", "sk_protocol"): 0x82, ("unix_sock", "sk"): 0x00, ("unix_sock", "addr"): 0xA0,
    ("unix_sock", "peer"): 0xA8, ("unix_address", "len"): 0x04,
    ("unix_address", "name"): 0x08, ("sockaddr_un", "sun_path"): 0x02,
    ("module", "kallsyms"): 0x70, ("mod_kallsyms", "symtab"): 0x00,
    ("mod_kallsyms", "num_symtab"): 0x08, ("mod_kallsyms", "strtab"): 0x10,
    ("module", "state"): 0x00, ("module_layout", "text_size"): 0x0C,
    ("printk_ringbuffer", "desc_ring"): 0x00, ("printk_ringbuffer", "text_data_ring"): 0x30,
    ("prb_desc_ring", "count_bits"): 0x00, ("prb_desc_ring", "descs"): 0x08,
    ("prb_desc_ring", "infos"): 0x10, ("prb_desc_ring", "head_id"): 0x18,
    ("prb_desc_ring", "tail_id"): 0x20, ("prb_data_ring", "size_bits"): 0x00,
    ("prb_data_ring", "data"): 0x08, ("prb_desc", "state_var"): 0x00,
    ("prb_desc", "text_blk_lpos"): 0x08, ("prb_data_blk_lpos", "begin"): 0x00,
    ("prb_data_blk_lpos", "next"): 0x08, ("printk_info", "seq"): 0x00,
    ("printk_info", "ts_nsec"): 0x08, ("printk_info", "text_len"): 0x10,
    ("printk_info", "facility"): 0x12, ("printk_info", "level"): 0x13,
    ("printk_info", "caller_id"): 0x14,
    ("kset", "list"): 0x00, ("kobject", "entry"): 0x08, ("module_kobject", "kobj"): 0x00,
    ("module_kobject", "mod"): 0x40, ("module", "mkobj"): 0x80, ("module", "state"): 0x00,
    ("vmap_area", "va_start"): 0x00, ("vmap_area", "va_end"): 0x08, ("vmap_area", "list"): 0x20,
    ("vmap_area", "vm"): 0x30, ("vm_struct", "flags"): 0x18, ("vm_struct", "caller"): 0x28,
}


def detail_order():
    """DETAIL_FIELDS as the target lists them (parsed from its source)."""
    src = open(os.path.join(ROOT, "fuzz", "fuzz_targets", "linux_walk.rs")).read()
    body = src[src.index("const DETAIL_FIELDS"):src.index("const FIELDS")]
    out = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith('("'):
            a, b = line.strip("(),").split(", ")
            out.append((a.strip('"'), b.strip('"')))
    return out


# Image offsets (from _text) of everything.
BANNER, POB, INIT, TASK, MM, CRED = 0x0, 0x100, 0x1000, 0x1100, 0x1800, 0x1900
FILES, FDT, FDS = 0x2000, 0x2100, 0x2200
MODULES, MOD, KS, SYMTAB, STRTAB = 0x3000, 0x3100, 0x3300, 0x3400, 0x3500
KSET, MODULE_KSET, BUILTIN = 0x3800, 0x3900, 0x3A00
PRB, RING, DESCS, INFOS, DATA = 0x4000, 0x4100, 0x5000, 0x5400, 0x6000
HIDDEN, VMAP_LIST, AREA_A, AREA_B, VM_A, VM_B = 0x7000, 0x8000, 0x8100, 0x8200, 0x8300, 0x8400
SOCKET_FILE_OPS, END = 0x9000, PAGES * 0x1000
MOD_BASE = 0xFFFFFFFFC0000000

img = bytearray(TEXT_PA + PAGES * 0x1000)


def u64(pa, v):
    struct.pack_into("<Q", img, pa, v & 0xFFFFFFFFFFFFFFFF)


def k(off):  # kernel virtual address of an image offset
    return TEXT_VA + off


def kw(off, data):  # write at an image offset
    img[TEXT_PA + off:TEXT_PA + off + len(data)] = data


def kq(off, v):
    kw(off, struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF))


def kd(off, v):
    kw(off, struct.pack("<I", v))


# Page tables: PML4 0x1000 [511] -> PDPT 0x2000 [510] -> PD 0x3000 [8] -> PT 0x4000.
u64(0x1000 + 511 * 8, 0x2000 | 3)
u64(0x2000 + 510 * 8, 0x3000 | 3)
u64(0x3000 + 8 * 8, 0x4000 | 3)
for i in range(PAGES):
    u64(0x4000 + i * 8, (TEXT_PA + i * 0x1000) | 3)

kw(BANNER, b"Linux version 6.99.0-fuzz (seed) #1 SMP\n\0")
kq(POB, 0xFFFF888000000000)
# init_task (pid 0) and one process (pid 1) on the task list.
kq(INIT + 0x10, k(TASK + 0x10))
kq(TASK + 0x10, k(INIT + 0x10))
kw(INIT + 0x30, b"swapper/0\0")
kd(INIT + 0x08, 0x00200000)
kq(INIT + 0x40, k(INIT))
kd(TASK + 0x20, 1)
kd(TASK + 0x24, 1)
kw(TASK + 0x30, b"init\0")
kq(TASK + 0x40, k(INIT))
kq(TASK + 0x48, k(MM))
kq(MM + 0x08, k(0))  # mm->pgd: a mapped page
kq(TASK + 0x58, k(CRED))
kq(TASK + 0x68, k(TASK + 0x68))  # thread_group: only itself
# Its files: fd 3 a TCP socket, fd 4 a UNIX socket bound to /run/a.sock.
kq(TASK + 0x78, k(FILES))
kq(FILES + 0x08, k(FDT))
kd(FDT + 0x00, 8)
kq(FDT + 0x08, k(FDS))
for fd, slot, ino, family, ty, proto, state in [(3, 0, 4242, 2, 1, 6, 1), (4, 1, 4243, 1, 1, 0, 10)]:
    file, sock, inode, sk = 0x2300 + slot * 0x400, 0x2400 + slot * 0x400, 0x2500 + slot * 0x400, 0x2600 + slot * 0x400
    kq(FDS + fd * 8, k(file))
    kq(file + 0x10, k(SOCKET_FILE_OPS))
    kq(file + 0x18, k(sock))
    kq(file + 0x20, k(inode))
    kd(inode + 0x00, 0o140000)
    kq(inode + 0x08, ino)
    kq(sock + 0x10, k(file))
    kq(sock + 0x18, k(sk))
    kw(sk + 0x10, struct.pack("<H", family))
    kw(sk + 0x12, bytes([state]))
    kw(sk + 0x80, struct.pack("<HH", ty, proto))
    if family == 2:
        kw(sk + 0x00, bytes([10, 0, 0, 2, 10, 0, 0, 1]))  # daddr, rcv_saddr
        kw(sk + 0x0C, struct.pack(">H", 5555) + struct.pack("<H", 22))
    else:
        kq(sk + 0xA0, k(sk + 0x200))  # unix_address right behind
        kd(sk + 0x204, 2 + 12)
        kw(sk + 0x20A, b"/run/a.sock\0")
# One module with a symbol table of two functions.
kq(MODULES, k(MOD + 0x08))
kq(MOD + 0x08, k(MODULES))
kw(MOD + 0x18, b"mod0\0")
kq(MOD + 0x50, MOD_BASE)
kd(MOD + 0x58, 0x4000)
kd(MOD + 0x5C, 0x1000)  # core_layout.text_size; state 0 (LIVE)
kq(MOD + 0x70, k(KS))
kq(KS + 0x00, k(SYMTAB))
kd(KS + 0x08, 3)
kq(KS + 0x10, k(STRTAB))
kw(STRTAB, b"\0mod0_init\0mod0_work\0")
for i, (name, value) in enumerate([(1, MOD_BASE), (11, MOD_BASE + 0x100)]):
    kw(SYMTAB + (i + 1) * 24, struct.pack("<IBBHQQ", name, 0x12, 0, 1, value, 0x80))
# module_kset: the module's kobject (mkobj.kobj, whose mod points back) and a built-in
# module's (mod NULL), linked by kobject.entry.
kq(MODULE_KSET, k(KSET))
kq(KSET, k(MOD + 0x88))
kq(KSET + 0x08, k(BUILTIN + 0x08))
kq(MOD + 0x88, k(BUILTIN + 0x08))
kq(MOD + 0x90, k(KSET))
kq(MOD + 0xC0, k(MOD))
kq(BUILTIN + 0x08, k(KSET))
kq(BUILTIN + 0x10, k(MOD + 0x88))
# vmap_area_list, in address order: area B (a page of the image, above MODULE_REGION_START,
# holding a module unlinked from both lists: found only by its struct module) and area A (the
# listed module's core).
kq(VMAP_LIST, k(AREA_B + 0x20))
kq(VMAP_LIST + 0x08, k(AREA_A + 0x20))
for area, start, end, vm, nxt, prv in [
        (AREA_B, k(HIDDEN), k(HIDDEN + 0x1000), VM_B, k(AREA_A + 0x20), k(VMAP_LIST)),
        (AREA_A, MOD_BASE, MOD_BASE + 0x5000, VM_A, k(VMAP_LIST), k(AREA_B + 0x20))]:
    kq(area + 0x00, start)
    kq(area + 0x08, end)
    kq(area + 0x20, nxt)
    kq(area + 0x28, prv)
    kq(area + 0x30, k(vm))
    kq(vm + 0x18, 0x102)
    kq(vm + 0x28, k(0x10))
kw(HIDDEN + 0x18, b"hid0\0")
kq(HIDDEN + 0x50, k(HIDDEN))
kd(HIDDEN + 0x58, 0x1000)
kq(HIDDEN + 0xC0, k(HIDDEN))  # mkobj.mod: itself
# The printk ring: 4 descriptors, 4 KiB of text, records 0..2.
kq(PRB, k(RING))
kd(RING + 0x00, 2)
kq(RING + 0x08, k(DESCS))
kq(RING + 0x10, k(INFOS))
kq(RING + 0x18, 2)
kq(RING + 0x20, 0)
kd(RING + 0x30, 12)
kq(RING + 0x38, k(DATA))
lpos = 0
for i, text in enumerate([b"Linux version 6.99.0-fuzz", b"Command line: quiet", b"hello"]):
    nxt = lpos + ((8 + len(text) + 7) & ~7)
    kq(DESCS + i * S, 2 << 62 | i)
    kq(DESCS + i * S + 0x08, lpos)
    kq(DESCS + i * S + 0x10, nxt)
    kq(DATA + lpos, i)
    kw(DATA + lpos + 8, text)
    kq(INFOS + i * S, i)
    kq(INFOS + i * S + 0x08, 1000 * i)
    kw(INFOS + i * S + 0x10, struct.pack("<HBB", len(text), 0, 5 << 5))
    lpos = nxt

order = detail_order()
assert len(order) == 115, len(order)
names = ["_text", "linux_banner", "init_top_pgt", "init_task", "modules", "page_offset_base",
         "__start_BTF", "__stop_BTF", "sys_call_table", "syscalls_metadata", "current_task",
         "special_mapping_vmops", "socket_file_ops", "prb", "_end", "module_kset",
         "vmap_area_list"]
sym = {"linux_banner": BANNER, "init_task": INIT, "modules": MODULES, "page_offset_base": POB,
       "socket_file_ops": SOCKET_FILE_OPS, "prb": PRB, "_end": END,
       "module_kset": MODULE_KSET, "vmap_area_list": VMAP_LIST}
seed = struct.pack("<IB", 1, 0)  # cr3 = 1 << 12, no LA57
seed += struct.pack("<16H", *FIELDS)
seed += struct.pack("<115H", *[D.get(f, 0) for f in order])
seed += struct.pack("<17I", *[sym.get(n, 0) for n in names])
seed += struct.pack("<4I", 0x10, 0x120, 0x1234, 0x10)  # lookups: mod0+0x10, _text+...
seed += b"\0"  # in_guest: false (the profile above)
for b in img:  # Vec<u8> as the last field: a continue flag before each element
    seed += bytes([1, b])
out = os.path.join(ROOT, "fuzz", "seeds", "linux_walk")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "synthetic-guest"), "wb") as f:
    f.write(seed)
print(f"{len(seed)} bytes")
