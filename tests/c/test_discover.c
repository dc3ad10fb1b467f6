/* One entry point for either OS: xvmi_os_discover tells Linux from Windows by itself and
 * finds the kernel; the walks then work the same.
 *
 * usage: test_discover IMAGE LINUX_ISF WINDOWS_PROFILE
 *   IMAGE is a snapshot file (Linux or Windows or neither); LINUX_ISF and WINDOWS_PROFILE
 *   are paths, or `-` for NULL (Linux: the kernel's own kallsyms and BTF; Windows: the
 *   default place, $XENVMI_WINDOWS_PROFILES, ...).
 * Prints `os linux` or `os windows`, what the walks found (print_os.h's formats) and
 * symbols at addresses (xvmi_os_symbol_at: in each Windows driver, past linux_banner), or
 * `error NAME MESSAGE` when discovery fails; tests/c_abi.rs compares the lines with the
 * fixture's ground truth or the spec the synthetic guest was built from. */
#include "print_os.h"

/* Symbolize a few addresses inside each driver (not ntoskrnl):
 *   symbol_at DRIVER OFFSET SYMBOL */
static int symbolize_driver(void *userdata, const xvmi_module *m, xvmi_result status) {
    const struct walk *w = userdata;
    CHECK(status == XVMI_OK);
    if (strcmp(m->name, "ntoskrnl.exe") == 0)
        return XVMI_WALK_CONTINUE;
    static const uint64_t offsets[] = {0x10, 0x2345, 0x3100, 0x8024, 0x2a000};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        if (offsets[i] >= m->size)
            continue;
        char sym[256];
        size_t n = 0;
        OK(xvmi_os_symbol_at(w->os, w->mem, m->base + offsets[i], sym, sizeof sym, &n));
        CHECK(n == strlen(sym));
        printf("symbol_at %s 0x%" PRIx64 " %s\n", m->name, offsets[i], sym);
    }
    /* Past its end is not the driver's. */
    char sym[256];
    if (xvmi_os_symbol_at(w->os, w->mem, m->base + m->size, sym, sizeof sym, NULL) == XVMI_OK)
        CHECK(strncmp(sym, m->name, strlen(m->name) - 4) != 0);
    return XVMI_WALK_CONTINUE;
}

static const char *path_arg(const char *s) { return strcmp(s, "-") == 0 ? NULL : s; }

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: test_discover IMAGE LINUX_ISF|- WINDOWS_PROFILE|-\n");
        return 2;
    }
    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_snapshot(argv[1], &mem));
    xvmi_os *os = NULL;

    /* Argument errors come before any work. */
    CHECK_RC(xvmi_os_discover(NULL, NULL, NULL, NULL, &os), XVMI_ERR_NULL_POINTER);
    CHECK_RC(xvmi_os_discover(mem, NULL, NULL, NULL, NULL), XVMI_ERR_NULL_POINTER);
    CHECK(os == NULL);

    xvmi_result rc = xvmi_os_discover(mem, path_arg(argv[2]), path_arg(argv[3]), NULL, &os);
    if (rc != XVMI_OK) {
        CHECK(os == NULL); /* outputs are written only on success */
        printf("error %s %s\n", xvmi_result_name(rc), last_error());
        xvmi_memory_free(mem);
        printf("done\n");
        return 0;
    }
    xvmi_os_info info;
    OK(xvmi_os_get_info(os, &info));
    char release[64], banner[512];
    OK(xvmi_os_release(os, release, sizeof release, NULL));
    OK(xvmi_os_banner(os, banner, sizeof banner, NULL));
    printf("kernel_base 0x%" PRIx64 "\n", info.kernel_base);
    printf("release %s\n", release);
    printf("banner %s\n", banner);
    /* The kernel is where its physical address says. */
    uint8_t head[2];
    OK(xvmi_memory_read_physical(mem, info.kernel_base_pa, head, 2));
    struct walk w = {os, mem};
    if (info.kind == XVMI_OS_LINUX) {
        printf("os linux\n");
        printf("kaslr_offset 0x%" PRIx64 "\n", info.kaslr_offset);
        uint64_t banner_va = 0;
        OK(xvmi_os_symbol(os, "linux_banner", &banner_va));
        char sym[256];
        OK(xvmi_os_symbol_at(os, mem, banner_va + 8, sym, sizeof sym, NULL));
        printf("symbol_at linux_banner+8 %s\n", sym);
        OK(xvmi_os_processes(os, mem, print_task, NULL));
        OK(xvmi_os_modules(os, mem, print_module, NULL));
    } else {
        CHECK(info.kind == XVMI_OS_WINDOWS);
        CHECK(head[0] == 'M' && head[1] == 'Z');
        printf("os windows\n");
        printf("image_size 0x%" PRIx64 "\n", info.image_size);
        printf("build %u\n", info.build);
        OK(xvmi_os_processes(os, mem, print_process, &w));
        OK(xvmi_os_modules(os, mem, print_driver, NULL));
        /* Driver names are taken once the driver symbols are read (by xvmi_os_symbol_at). */
        uint64_t va = 0;
        CHECK_RC(xvmi_os_symbol(os, "ACPI!AcpiGetTable", &va), XVMI_ERR_NOT_FOUND);
        CHECK_RC(xvmi_os_symbol_at(os, NULL, info.kernel_base, NULL, 0, NULL),
                 XVMI_ERR_NULL_POINTER);
        OK(xvmi_os_modules(os, mem, symbolize_driver, &w));
        OK(xvmi_os_symbol(os, "ACPI!AcpiGetTable", &va));
        printf("symbol ACPI!AcpiGetTable 0x%" PRIx64 "\n", va);
        /* A short buffer: the length, nothing written. */
        char small[4] = "xyz";
        size_t n = 0;
        CHECK_RC(xvmi_os_symbol_at(os, mem, va, small, sizeof small, &n),
                 XVMI_ERR_BUFFER_TOO_SMALL);
        CHECK(n == strlen("ACPI!AcpiGetTable+0x0") && strcmp(small, "xyz") == 0);
    }
    OK(xvmi_os_free(os));
    xvmi_memory_free(mem);
    printf("done\n");
    return 0;
}
