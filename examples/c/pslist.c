/* pslist in C: the kernel, its processes, its modules and who owns each vCPU's address space,
 * from a memory snapshot, with no profile (or with a Volatility3 ISF).
 *
 * Build (from the repository root; see docs/ffi.md):
 *   cargo build --release
 *   cc -Wall -Wextra -O2 -I include examples/c/pslist.c target/release/libxenvmi.a \
 *      -lpthread -ldl -lm -lrt -lutil -o pslist
 * or against the shared library:
 *   cc -Wall -Wextra -O2 -I include examples/c/pslist.c -L target/release -lxenvmi -o pslist
 *   LD_LIBRARY_PATH=target/release ./pslist IMAGE
 *
 * usage: pslist IMAGE [ISF]
 *   IMAGE  a raw dump, a QEMU dump-guest-memory ELF core or a LiME capture
 *   ISF    a Volatility3 profile (.json or .json.xz); without it the kernel's own kallsyms
 *          and BTF are read from guest memory */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include "xenvmi.h"

static int fail(const char *what, xvmi_result rc) {
    char msg[1024];
    xvmi_last_error(msg, sizeof msg, NULL);
    fprintf(stderr, "pslist: %s: %s (%s)\n", what, msg, xvmi_result_name(rc));
    return 1;
}

static int print_process(void *userdata, const xvmi_process *p, xvmi_result status) {
    (void)userdata;
    if (status != XVMI_OK) {
        char msg[512];
        xvmi_last_error(msg, sizeof msg, NULL);
        printf("  (unreadable process: %s)\n", msg);
        return XVMI_WALK_CONTINUE;
    }
    if (p->has_dtb)
        printf("%7" PRIu64 " %7" PRIu64 " %7" PRIu64 "  0x%-12" PRIx64 " %s\n", p->pid, p->tgid,
               p->ppid, p->dtb, p->name);
    else
        printf("%7" PRIu64 " %7" PRIu64 " %7" PRIu64 "  %-14s [%s]\n", p->pid, p->tgid, p->ppid,
               "-", p->name);
    return XVMI_WALK_CONTINUE;
}

static int print_module(void *userdata, const xvmi_module *m, xvmi_result status) {
    (void)userdata;
    if (status != XVMI_OK)
        return XVMI_WALK_CONTINUE;
    printf("  %-24s 0x%016" PRIx64 " %8" PRIu64 "\n", m->name, m->base, m->size);
    return XVMI_WALK_CONTINUE;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: pslist IMAGE [ISF]\n");
        return 2;
    }
    xvmi_memory *mem = NULL;
    xvmi_os *os = NULL;
    int status = 1;
    xvmi_result rc = xvmi_memory_open_snapshot(argv[1], &mem);
    if (rc != XVMI_OK)
        return fail("opening the image", rc);
    rc = xvmi_os_linux_discover(mem, argc == 3 ? argv[2] : NULL, &os);
    if (rc != XVMI_OK) {
        status = fail("finding the kernel", rc);
        goto out;
    }

    xvmi_os_info info;
    char release[128];
    if ((rc = xvmi_os_get_info(os, &info)) != XVMI_OK ||
        (rc = xvmi_os_release(os, release, sizeof release, NULL)) != XVMI_OK) {
        status = fail("kernel information", rc);
        goto out;
    }
    printf("Linux %s, kernel at 0x%" PRIx64 " (physical 0x%" PRIx64 "), KASLR offset 0x%" PRIx64
           ", %u-level paging\n\n",
           release, info.kernel_base, info.kernel_base_pa, info.kaslr_offset, info.paging_levels);

    printf("%7s %7s %7s  %-14s %s\n", "PID", "TGID", "PPID", "DTB", "NAME");
    rc = xvmi_os_processes(os, mem, print_process, NULL);
    if (rc != XVMI_OK)
        fail("process list (incomplete)", rc);

    printf("\nmodules (most recent first):\n");
    rc = xvmi_os_modules(os, mem, print_module, NULL);
    if (rc != XVMI_OK)
        fail("module list (incomplete)", rc);

    uint32_t vcpus = 0;
    xvmi_memory_vcpu_count(mem, &vcpus);
    printf("\nvCPU owners:\n");
    for (uint32_t i = 0; i < vcpus; i++) {
        xvmi_registers regs;
        xvmi_process p;
        if (xvmi_memory_registers(mem, i, &regs) != XVMI_OK)
            continue;
        if (xvmi_os_process_for_cr3(os, mem, regs.cr3, &p) == XVMI_OK)
            printf("  vCPU %u: CR3 0x%" PRIx64 " -> %" PRIu64 " %s\n", i, regs.cr3, p.pid, p.name);
        else
            printf("  vCPU %u: CR3 0x%" PRIx64 " -> (kernel or unknown)\n", i, regs.cr3);
    }
    status = 0;
out:
    xvmi_os_free(os);
    xvmi_memory_free(mem);
    return status;
}
