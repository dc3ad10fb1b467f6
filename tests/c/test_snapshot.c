/* The C ABI on a real snapshot: discovery without a profile and with an ISF, processes,
 * modules, vCPU owners, translation and reads; and the error paths (NULL arguments, a missing
 * file, invalid values, short buffers, partial reads).
 *
 * usage: test_snapshot VMCORE ISF
 * Prints what it found, one fact per line; tests/c_abi.rs compares the lines with the
 * fixture's ground-truth.json. Checks that need no ground truth are made here. */
#include <stdint.h>
#include <inttypes.h>

#include "check.h"

static int print_process(void *userdata, const xvmi_process *p, xvmi_result status) {
    size_t *count = userdata;
    if (status != XVMI_OK) {
        printf("process-error %s %s\n", xvmi_result_name(status), last_error());
        return XVMI_WALK_CONTINUE;
    }
    CHECK(p != NULL);
    CHECK(p->has_dtb == !p->kernel_thread);
    CHECK(p->has_dtb || p->dtb == 0);
    printf("process %" PRIu64 " %" PRIu64 " %" PRIu64 " %d %s\n", p->pid, p->tgid, p->ppid,
           p->kernel_thread ? 1 : 0, p->name);
    ++*count;
    return XVMI_WALK_CONTINUE;
}

static int print_module(void *userdata, const xvmi_module *m, xvmi_result status) {
    size_t *count = userdata;
    if (status != XVMI_OK) {
        printf("module-error %s %s\n", xvmi_result_name(status), last_error());
        return XVMI_WALK_CONTINUE;
    }
    printf("module %s 0x%" PRIx64 " %" PRIu64 "\n", m->name, m->base, m->size);
    ++*count;
    return XVMI_WALK_CONTINUE;
}

/* Stops after three processes. */
static int stop_after_three(void *userdata, const xvmi_process *p, xvmi_result status) {
    size_t *count = userdata;
    (void)p;
    (void)status;
    return ++*count == 3 ? XVMI_WALK_STOP : XVMI_WALK_CONTINUE;
}

/* Tries to free the handles it walks over from inside the walk: refused, the walk goes on. */
struct free_inside {
    xvmi_os *os;
    xvmi_memory *mem;
    size_t seen;
};

static int free_inside_walk(void *userdata, const xvmi_process *p, xvmi_result status) {
    struct free_inside *f = userdata;
    (void)p;
    (void)status;
    if (f->seen++ == 0) {
        CHECK_RC(xvmi_os_free(f->os), XVMI_ERR_INVALID_HANDLE);
        CHECK(strstr(last_error(), "in use") != NULL);
        CHECK_RC(xvmi_memory_free(f->mem), XVMI_ERR_INVALID_HANDLE);
    }
    return XVMI_WALK_CONTINUE;
}

struct first_user {
    uint64_t dtb;
    uint64_t pid;
};

static int find_user(void *userdata, const xvmi_process *p, xvmi_result status) {
    struct first_user *u = userdata;
    if (status == XVMI_OK && p->has_dtb) {
        u->dtb = p->dtb;
        u->pid = p->pid;
        return XVMI_WALK_STOP;
    }
    return XVMI_WALK_CONTINUE;
}

static size_t count_processes(const xvmi_os *os, const xvmi_memory *mem) {
    size_t n = 0;
    OK(xvmi_os_processes(os, mem, print_process, &n));
    return n;
}

static void error_paths(const char *vmcore) {
    xvmi_memory *mem = NULL;
    /* NULL arguments. */
    CHECK_RC(xvmi_memory_open_snapshot(NULL, &mem), XVMI_ERR_NULL_POINTER);
    CHECK(strstr(last_error(), "path") != NULL);
    CHECK_RC(xvmi_memory_open_snapshot(vmcore, NULL), XVMI_ERR_NULL_POINTER);
    CHECK(mem == NULL);
    /* A missing file: XVMI_ERR_IO, and the message names the file and the errno. */
    CHECK_RC(xvmi_memory_open_snapshot("/nonexistent/xenvmi-c-test.elf", &mem), XVMI_ERR_IO);
    CHECK(mem == NULL);
    CHECK(strstr(last_error(), "/nonexistent/xenvmi-c-test.elf") != NULL);
    CHECK(strstr(last_error(), "No such file") != NULL);
    printf("io-error %s\n", last_error());
    /* A path that is not UTF-8. */
    CHECK_RC(xvmi_memory_open_snapshot("/tmp/\xff\xfe", &mem), XVMI_ERR_MALFORMED);
    /* An empty in-memory image. */
    CHECK_RC(xvmi_memory_open_buffer(NULL, 0, &mem), XVMI_ERR_MALFORMED);
    /* _free(NULL) is a no-op for every handle. */
    xvmi_memory_free(NULL);
    xvmi_os_free(NULL);
    xvmi_domain_free(NULL);
    xvmi_session_free(NULL);
    /* Calls on NULL handles. */
    uint8_t b[8];
    CHECK_RC(xvmi_memory_read_physical(NULL, 0, b, sizeof b), XVMI_ERR_NULL_POINTER);
    CHECK_RC(xvmi_os_get_info(NULL, NULL), XVMI_ERR_NULL_POINTER);
    CHECK_RC(xvmi_os_processes(NULL, NULL, print_process, NULL), XVMI_ERR_NULL_POINTER);
    CHECK_RC(xvmi_session_stop(NULL), XVMI_ERR_NULL_POINTER);
    /* Names of codes, known and unknown. */
    CHECK(strcmp(xvmi_result_name(XVMI_ERR_IO), "XVMI_ERR_IO") == 0);
    CHECK(strcmp(xvmi_result_name(12345), "XVMI_ERR_UNKNOWN") == 0);
    CHECK(strlen(xvmi_version()) > 0);
    /* The last error is cut to the buffer, NUL-terminated, with the whole length reported. */
    CHECK_RC(xvmi_memory_open_snapshot("/nonexistent/xenvmi-c-test.elf", &mem), XVMI_ERR_IO);
    char small[8];
    size_t full = 0;
    CHECK_RC(xvmi_last_error(small, sizeof small, &full), XVMI_ERR_BUFFER_TOO_SMALL);
    CHECK(strlen(small) == 7 && full > 7);
    CHECK(memcmp(small, "/nonexi", 7) == 0);
    size_t again = 0;
    CHECK_RC(xvmi_last_error(NULL, 0, &again), XVMI_ERR_BUFFER_TOO_SMALL);
    CHECK(again == full);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_snapshot VMCORE ISF\n");
        return 2;
    }
    const char *vmcore = argv[1];
    const char *isf = argv[2];
    error_paths(vmcore);

    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_snapshot(vmcore, &mem));
    CHECK(mem != NULL);

    /* vCPUs and their registers. */
    uint32_t vcpus = 0;
    OK(xvmi_memory_vcpu_count(mem, &vcpus));
    printf("vcpus %u\n", vcpus);
    xvmi_registers regs[16];
    CHECK(vcpus > 0 && vcpus <= 16);
    for (uint32_t i = 0; i < vcpus; i++) {
        OK(xvmi_memory_registers(mem, i, &regs[i]));
        printf("vcpu %u cr3 0x%" PRIx64 " cr4 0x%" PRIx64 " rip 0x%" PRIx64 "\n", i, regs[i].cr3,
               regs[i].cr4, regs[i].rip);
    }
    xvmi_registers none;
    CHECK_RC(xvmi_memory_registers(mem, vcpus, &none), XVMI_ERR_NO_SUCH_VCPU);

    /* Regions. */
    size_t nregions = 0;
    OK(xvmi_memory_region_count(mem, &nregions));
    CHECK(nregions > 0);
    uint64_t end = 0;
    for (size_t i = 0; i < nregions; i++) {
        xvmi_region r;
        OK(xvmi_memory_region(mem, i, &r));
        printf("region 0x%" PRIx64 " 0x%" PRIx64 "\n", r.start, r.length);
        end = r.start + r.length;
    }
    xvmi_region past;
    CHECK_RC(xvmi_memory_region(mem, nregions, &past), XVMI_ERR_NOT_FOUND);
    uint8_t b[16];
    CHECK_RC(xvmi_memory_read_physical(mem, end, b, sizeof b), XVMI_ERR_NOT_MAPPED);
    CHECK_RC(xvmi_memory_set_paging_levels(mem, 3), XVMI_ERR_INVALID_ARGUMENT);

    /* Linux without a profile. */
    xvmi_os *os = NULL;
    OK(xvmi_os_linux_discover(mem, NULL, &os));
    xvmi_os_info info;
    OK(xvmi_os_get_info(os, &info));
    CHECK(info.kind == XVMI_OS_LINUX);
    printf("kaslr_offset 0x%" PRIx64 "\n", info.kaslr_offset);
    printf("kernel_base 0x%" PRIx64 "\n", info.kernel_base);
    printf("kernel_base_pa 0x%" PRIx64 "\n", info.kernel_base_pa);
    printf("phys_base 0x%" PRIx64 "\n", info.phys_base);
    printf("page_offset_base 0x%" PRIx64 "\n", info.page_offset_base);
    printf("paging_levels %u\n", info.paging_levels);

    /* Strings into caller buffers: too small leaves the buffer alone and reports the length. */
    char release[128];
    size_t len = 0;
    memcpy(release, "xyz", 4);
    CHECK_RC(xvmi_os_release(os, release, 4, &len), XVMI_ERR_BUFFER_TOO_SMALL);
    CHECK(strcmp(release, "xyz") == 0 && len > 3);
    OK(xvmi_os_release(os, release, sizeof release, &len));
    CHECK(strlen(release) == len);
    printf("release %s\n", release);
    size_t banner_len = 0;
    CHECK_RC(xvmi_os_banner(os, NULL, 0, &banner_len), XVMI_ERR_BUFFER_TOO_SMALL);
    char *banner = malloc(banner_len + 1);
    CHECK(banner != NULL);
    OK(xvmi_os_banner(os, banner, banner_len + 1, NULL));
    /* The banner ends with a newline; print it without. */
    if (banner_len > 0 && banner[banner_len - 1] == '\n')
        banner[banner_len - 1] = 0;
    printf("banner %s\n", banner);
    free(banner);

    /* Symbols and translation through the kernel's page tables. */
    uint64_t sym = 0;
    OK(xvmi_os_symbol(os, "linux_banner", &sym));
    uint64_t pa = 0;
    OK(xvmi_memory_translate(mem, info.kernel_cr3, sym, &pa));
    printf("symbol linux_banner 0x%" PRIx64 " 0x%" PRIx64 "\n", sym, pa);
    OK(xvmi_memory_translate(mem, info.kernel_cr3, info.kernel_base, &pa));
    CHECK(pa == info.kernel_base_pa);
    CHECK_RC(xvmi_os_symbol(os, "no_such_symbol_xvmi", &sym), XVMI_ERR_NOT_FOUND);
    /* The virtual read of the banner equals its physical bytes. */
    char vbuf[64], pbuf[64];
    size_t got = 0;
    OK(xvmi_os_symbol(os, "linux_banner", &sym));
    OK(xvmi_memory_read_virtual(mem, info.kernel_cr3, sym, (uint8_t *)vbuf, sizeof vbuf, &got));
    CHECK(got == sizeof vbuf);
    OK(xvmi_memory_translate(mem, info.kernel_cr3, sym, &pa));
    OK(xvmi_memory_read_physical(mem, pa, (uint8_t *)pbuf, sizeof pbuf));
    CHECK(memcmp(vbuf, pbuf, sizeof vbuf) == 0);
    CHECK(memcmp(vbuf, "Linux version ", 14) == 0);
    /* A partial read: the page below _text is not mapped, _text is. */
    uint8_t two[8192];
    memset(two, 0xaa, sizeof two);
    got = 12345;
    CHECK_RC(xvmi_memory_read_virtual(mem, info.kernel_cr3, info.kernel_base - 4096, two,
                                      sizeof two, &got),
             XVMI_ERR_NOT_MAPPED);
    CHECK(got == 4096);
    CHECK(two[0] == 0 && two[4095] == 0);
    OK(xvmi_memory_read_physical(mem, info.kernel_base_pa, b, sizeof b));
    CHECK(memcmp(two + 4096, b, sizeof b) == 0);
    printf("partial-read %s\n", last_error());
    uint64_t unmapped = 0;
    CHECK_RC(xvmi_memory_translate(mem, info.kernel_cr3, 0x1000, &unmapped), XVMI_ERR_NOT_MAPPED);

    /* Processes, modules. */
    size_t nproc = count_processes(os, mem);
    printf("process-count %zu\n", nproc);
    size_t nmod = 0;
    OK(xvmi_os_modules(os, mem, print_module, &nmod));
    printf("module-count %zu\n", nmod);
    size_t seen = 0;
    OK(xvmi_os_processes(os, mem, stop_after_three, &seen));
    CHECK(seen == 3);
    CHECK_RC(xvmi_os_processes(os, mem, NULL, NULL), XVMI_ERR_NULL_POINTER);

    /* Owners of the vCPUs' address spaces. */
    for (uint32_t i = 0; i < vcpus; i++) {
        xvmi_process p;
        xvmi_result rc = xvmi_os_process_for_cr3(os, mem, regs[i].cr3, &p);
        if (rc == XVMI_OK)
            printf("owner %u %" PRIu64 " %s\n", i, p.pid, p.name);
        else
            printf("owner %u none %s\n", i, xvmi_result_name(rc));
    }
    xvmi_process k;
    CHECK_RC(xvmi_os_process_for_cr3(os, mem, info.kernel_cr3, &k), XVMI_ERR_NOT_FOUND);
    CHECK(strstr(last_error(), "kernel") != NULL);

    /* A user process's own address space: its CR3 translates the kernel too. */
    struct first_user u = {0, 0};
    OK(xvmi_os_processes(os, mem, find_user, &u));
    CHECK(u.dtb != 0);
    OK(xvmi_memory_translate(mem, u.dtb, info.kernel_base, &pa));
    CHECK(pa == info.kernel_base_pa);

    /* The same through a Volatility3 ISF profile: the same kernel and the same tasks. */
    xvmi_os *os_isf = NULL;
    OK(xvmi_os_linux_discover(mem, isf, &os_isf));
    xvmi_os_info info_isf;
    OK(xvmi_os_get_info(os_isf, &info_isf));
    CHECK(info_isf.kaslr_offset == info.kaslr_offset);
    CHECK(info_isf.kernel_base == info.kernel_base);
    size_t n_isf = 0;
    OK(xvmi_os_processes(os_isf, mem, stop_after_three, &n_isf));
    CHECK(n_isf == 3);
    printf("isf-kernel-base 0x%" PRIx64 "\n", info_isf.kernel_base);
    CHECK_RC(xvmi_os_linux_discover(mem, "/nonexistent/profile.json.xz", &os_isf),
             XVMI_ERR_IO);

    /* A handle cannot be freed by the walk that uses it: the walk sees every process. */
    struct free_inside fi = {os_isf, mem, 0};
    OK(xvmi_os_processes(os_isf, mem, free_inside_walk, &fi));
    CHECK(fi.seen == nproc);

    /* A failed physical read leaves the caller's buffer as it was. */
    uint8_t keep[64];
    memset(keep, 0xaa, sizeof keep);
    CHECK_RC(xvmi_memory_read_physical(mem, UINT64_C(1) << 60, keep, sizeof keep),
             XVMI_ERR_NOT_MAPPED);
    for (size_t i = 0; i < sizeof keep; i++)
        CHECK(keep[i] == 0xaa);

    /* Handles in any order: the OS handle outlives its memory and works on a fresh one. */
    OK(xvmi_memory_free(mem));
    /* Use after free and double free are refused, not dereferenced. */
    size_t stale = 0;
    CHECK_RC(xvmi_memory_region_count(mem, &stale), XVMI_ERR_INVALID_HANDLE);
    CHECK(strstr(last_error(), "not a live xvmi_memory handle") != NULL);
    CHECK_RC(xvmi_memory_free(mem), XVMI_ERR_INVALID_HANDLE);
    /* A handle of another type is refused too. */
    CHECK_RC(xvmi_os_free((xvmi_os *)(void *)mem), XVMI_ERR_INVALID_HANDLE);
    OK(xvmi_memory_open_snapshot(vmcore, &mem));
    size_t again = 0;
    OK(xvmi_os_processes(os_isf, mem, stop_after_three, &again));
    CHECK(again == 3);
    OK(xvmi_os_free(os_isf));
    CHECK_RC(xvmi_os_free(os_isf), XVMI_ERR_INVALID_HANDLE);
    xvmi_os_info gone;
    CHECK_RC(xvmi_os_get_info(os_isf, &gone), XVMI_ERR_INVALID_HANDLE);
    OK(xvmi_os_free(os));
    OK(xvmi_memory_free(mem));
    printf("done\n");
    return 0;
}
