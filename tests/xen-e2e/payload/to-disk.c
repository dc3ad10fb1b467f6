/* to-disk DEVICE NAME FILE: append FILE to DEVICE under NAME, so that the host can take it
 * out of the emulator after Bochs exits (tests/xen-e2e/disk-extract.py reads it back).
 *
 * Layout (little to parse, nothing to trust): sector 0 is a text table,
 *   "XVDISK1\n" then one "NAME OFFSET LENGTH CRC32\n" line per file;
 * each file's bytes start at OFFSET, 1 MiB aligned. The device starts zeroed (a fresh sparse
 * image on the host), so 64 KiB blocks that are all zero are skipped, not written: a memory
 * capture is mostly free, never-touched pages, and every sector written costs emulated I/O.
 * The table is rewritten last, after fsync, so a table line means the file is complete.
 * The checksum is the file's CRC-32 (zlib's; the host recomputes it with zlib.crc32). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK (64 * 1024)
#define ALIGN (1024 * 1024)

static int fail(const char *what, const char *name) {
  fprintf(stderr, "to-disk: %s: %s: %s\n", name, what, strerror(errno));
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 4 || strchr(argv[2], ' ') || strchr(argv[2], '\n')) {
    fprintf(stderr, "usage: to-disk DEVICE NAME FILE (NAME without spaces)\n");
    return 2;
  }
  int dev = open(argv[1], O_RDWR);
  if (dev < 0) return fail("open", argv[1]);
  char table[512];
  memset(table, 0, sizeof table);
  if (pread(dev, table, sizeof table - 1, 0) != (ssize_t)sizeof table - 1) return fail("read table", argv[1]);
  if (strncmp(table, "XVDISK1\n", 8) != 0) { memset(table, 0, sizeof table); strcpy(table, "XVDISK1\n"); }
  /* The next free offset: after the last file. */
  uint64_t next = ALIGN;
  for (char *l = strchr(table, '\n'); l && l[1]; l = strchr(l + 1, '\n')) {
    unsigned long long off, len;
    if (sscanf(l + 1, "%*s %llu %llu", &off, &len) == 2 && off + len > next)
      next = (off + len + ALIGN - 1) / ALIGN * ALIGN;
  }
  int in = open(argv[3], O_RDONLY);
  if (in < 0) return fail("open", argv[3]);
  static unsigned char buf[BLOCK], zero[BLOCK];
  uint64_t len = 0, skipped = 0;
  uint32_t crc_table[256], h = 0xffffffffu;
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
  for (;;) {
    ssize_t n = read(in, buf, BLOCK);
    if (n < 0) return fail("read", argv[3]);
    if (n == 0) break;
    for (ssize_t i = 0; i < n; i++) h = crc_table[(h ^ buf[i]) & 0xff] ^ (h >> 8);
    if (n == BLOCK && memcmp(buf, zero, BLOCK) == 0) skipped += n;
    else if (pwrite(dev, buf, n, next + len) != n) return fail("write", argv[1]);
    len += n;
  }
  if (fsync(dev) != 0) return fail("fsync", argv[1]);
  char line[160];
  h ^= 0xffffffffu;
  snprintf(line, sizeof line, "%s %llu %llu %08x\n", argv[2], (unsigned long long)next,
           (unsigned long long)len, (unsigned)h);
  if (strlen(table) + strlen(line) >= sizeof table) { errno = ENOSPC; return fail("table full", argv[1]); }
  strcat(table, line);
  if (pwrite(dev, table, sizeof table, 0) != (ssize_t)sizeof table || fsync(dev) != 0) return fail("write table", argv[1]);
  printf("to-disk: %s: %llu bytes at %llu (%llu in zero blocks not written), crc32 %08x\n",
         argv[2], (unsigned long long)len, (unsigned long long)next, (unsigned long long)skipped,
         (unsigned)h);
  return 0;
}
