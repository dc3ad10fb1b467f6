/* The control half of the C ABI on xenvmi's simulated domain (not Xen), over a small guest
 * built here: physical and virtual writes read back, all or nothing, refused on a snapshot,
 * visible through another handle's translations; registers set while paused and read back;
 * pauses counted per handle and resumed when the handle is freed (the guest runs again, seen
 * through a session); altp2m views destroyed through the session before teardown, which then
 * leaves nothing behind; a capture of the domain read back as a snapshot.
 *
 * usage: test_control
 * Prints a line per part and "done"; every value is checked here. */
#include <inttypes.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"

#define IMAGE_SIZE 0x20000u
#define PML4 0x1000u
#define PDPT 0x2000u
#define PD 0x3000u
#define PT 0x4000u
#define PTE_P_RW 0x3u
/* Virtual pages: 0x400000 -> 0x10000, 0x401000 -> 0x11000, 0x402000 not present,
 * 0x403000 -> 0x13000. */
#define VA 0x400000ull

static uint8_t image[IMAGE_SIZE];

static void put64(uint64_t gpa, uint64_t v) {
    for (int i = 0; i < 8; i++)
        image[gpa + i] = (uint8_t)(v >> (8 * i));
}

static void build_guest(xvmi_registers regs[2]) {
    /* Each data page is filled with its frame number's low byte. */
    for (uint32_t a = 0x10000; a < IMAGE_SIZE; a++)
        image[a] = (uint8_t)(a >> 12);
    put64(PML4, PDPT | PTE_P_RW);
    put64(PDPT, PD | PTE_P_RW);
    put64(PD + 2 * 8, PT | PTE_P_RW); /* VA 0x400000 is PD entry 2 */
    put64(PT + 0 * 8, 0x10000 | PTE_P_RW);
    put64(PT + 1 * 8, 0x11000 | PTE_P_RW);
    put64(PT + 3 * 8, 0x13000 | PTE_P_RW);
    memset(regs, 0, 2 * sizeof *regs);
    for (int v = 0; v < 2; v++) {
        regs[v].cr0 = 0x80050033;
        regs[v].cr3 = PML4;
        regs[v].cr4 = 0x20; /* PAE */
        regs[v].efer = 0xd01;
        regs[v].cs_sel = 0x10;
        regs[v].ss_sel = 0x18;
        regs[v].fs_base = 0x7f0000001000ull + (uint64_t)v;
        regs[v].rip = 0xffffffff81000000ull + (uint64_t)v;
        regs[v].rsp = 0xffffc90000004000ull;
    }
}

static void read_phys(const xvmi_memory *m, uint64_t gpa, uint8_t *buf, size_t len) {
    OK(xvmi_memory_read_physical(m, gpa, buf, len));
}

static int all(const uint8_t *p, size_t n, uint8_t v) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static void memory_writes(const xvmi_domain *dom, const xvmi_memory *mem) {
    uint8_t pat[0x40], got[0x40];
    for (size_t i = 0; i < sizeof pat; i++)
        pat[i] = (uint8_t)(0xa0 + i);

    /* Physical, across a page boundary: exactly those bytes change. */
    OK(xvmi_memory_write_physical(mem, 0x10ffc, pat, 8));
    read_phys(mem, 0x10ff8, got, 16);
    CHECK(all(got, 4, 0x10) && memcmp(got + 4, pat, 8) == 0 && all(got + 12, 4, 0x11));

    /* Virtual, across a page boundary: the bytes land where the page tables say. */
    size_t n = 0;
    OK(xvmi_memory_write_virtual(mem, PML4, VA + 0xff0, pat, 0x20));
    memset(got, 0, sizeof got);
    OK(xvmi_memory_read_virtual(mem, PML4, VA + 0xff0, got, 0x20, &n));
    CHECK(n == 0x20 && memcmp(got, pat, 0x20) == 0);
    read_phys(mem, 0x10ff0, got, 0x10);
    CHECK(memcmp(got, pat, 0x10) == 0);
    read_phys(mem, 0x11000, got, 0x10);
    CHECK(memcmp(got, pat + 0x10, 0x10) == 0);

    /* All or nothing: the second page is not mapped, so the first is not written either. */
    CHECK_RC(xvmi_memory_write_virtual(mem, PML4, VA + 0x1ff0, pat, 0x20), XVMI_ERR_NOT_MAPPED);
    CHECK(strstr(last_error(), "nothing was written") != NULL);
    CHECK(strstr(last_error(), "0x402000") != NULL);
    read_phys(mem, 0x11ff0, got, 0x10);
    CHECK(all(got, 0x10, 0x11));
    /* Past the end of guest memory: nothing written. */
    CHECK_RC(xvmi_memory_write_physical(mem, IMAGE_SIZE - 8, pat, 16), XVMI_ERR_NOT_MAPPED);
    read_phys(mem, IMAGE_SIZE - 8, got, 8);
    CHECK(all(got, 8, 0x1f));

    /* Arguments. */
    CHECK_RC(xvmi_memory_write_physical(NULL, 0x10000, pat, 1), XVMI_ERR_NULL_POINTER);
    CHECK_RC(xvmi_memory_write_physical(mem, 0x10000, NULL, 1), XVMI_ERR_NULL_POINTER);
    CHECK(strstr(last_error(), "`buf`") != NULL);
    OK(xvmi_memory_write_physical(mem, 0x10000, NULL, 0));
    CHECK_RC(xvmi_memory_write_virtual(mem, PML4, UINT64_MAX - 3, pat, 8), XVMI_ERR_OVERFLOW);

    /* A write drops the translations every handle on the domain cached: remap a page
     * through one handle, translate through another that had cached the old frame. */
    xvmi_memory *other = NULL;
    OK(xvmi_memory_open_domain(dom, &other));
    uint64_t gpa = 0;
    OK(xvmi_memory_translate(other, PML4, VA + 0x3008, &gpa));
    CHECK(gpa == 0x13008);
    uint64_t pte = 0x14000 | PTE_P_RW;
    uint8_t pte_bytes[8];
    for (int i = 0; i < 8; i++)
        pte_bytes[i] = (uint8_t)(pte >> (8 * i));
    OK(xvmi_memory_write_physical(mem, PT + 3 * 8, pte_bytes, 8));
    OK(xvmi_memory_translate(other, PML4, VA + 0x3008, &gpa));
    CHECK(gpa == 0x14008);
    OK(xvmi_memory_read_virtual(other, PML4, VA + 0x3000, got, 4, &n));
    CHECK(n == 4 && all(got, 4, 0x14));
    OK(xvmi_memory_free(other));
    printf("memory writes ok\n");
}

static void snapshot_is_read_only(void) {
    xvmi_memory *snap = NULL;
    OK(xvmi_memory_open_buffer(image, sizeof image, &snap));
    uint8_t pat[4] = {1, 2, 3, 4}, got[4];
    CHECK_RC(xvmi_memory_write_physical(snap, 0x10000, pat, 4), XVMI_ERR_UNSUPPORTED);
    CHECK(strstr(last_error(), "read-only") != NULL);
    CHECK_RC(xvmi_memory_write_virtual(snap, PML4, VA, pat, 4), XVMI_ERR_UNSUPPORTED);
    /* Also an empty write: the handle is what is refused. */
    CHECK_RC(xvmi_memory_write_physical(snap, 0x10000, NULL, 0), XVMI_ERR_UNSUPPORTED);
    read_phys(snap, 0x10000, got, 4);
    CHECK(all(got, 4, 0x10));
    OK(xvmi_memory_free(snap));
    printf("snapshot read-only ok\n");
}

static void registers(const xvmi_domain *dom, const xvmi_memory *mem) {
    xvmi_registers before0, r, got;
    OK(xvmi_memory_registers(mem, 0, &before0));
    OK(xvmi_memory_registers(mem, 1, &r));
    r.rip = 0xffffffff81234567ull;
    r.rax = 0x1122334455667788ull;
    r.r15 = 15;
    r.rsp -= 0x100;
    r.rflags = 0x246;
    r.cr3 = 0x5000;
    r.cr2 = 0xdead000;

    /* Refused while the domain runs, with nothing changed. */
    CHECK_RC(xvmi_domain_set_registers(dom, 1, &r), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "xvmi_domain_pause") != NULL);
    OK(xvmi_domain_pause(dom));
    /* A vCPU out of range is named. */
    CHECK_RC(xvmi_domain_set_registers(dom, 2, &r), XVMI_ERR_NO_SUCH_VCPU);
    CHECK(strstr(last_error(), "vCPU 2") != NULL);
    /* A register only the simulated domain could set is refused by name. */
    xvmi_registers bad = r;
    bad.fs_base = 0;
    CHECK_RC(xvmi_domain_set_registers(dom, 1, &bad), XVMI_ERR_UNSUPPORTED);
    CHECK(strstr(last_error(), "fs_base") != NULL);
    bad = r;
    bad.reserved = 1;
    CHECK_RC(xvmi_domain_set_registers(dom, 1, &bad), XVMI_ERR_INVALID_ARGUMENT);
    CHECK_RC(xvmi_domain_set_registers(dom, 1, NULL), XVMI_ERR_NULL_POINTER);
    OK(xvmi_memory_registers(mem, 1, &got));
    CHECK(got.rip == 0xffffffff81000001ull && got.cr3 == PML4);

    OK(xvmi_domain_set_registers(dom, 1, &r));
    OK(xvmi_memory_registers(mem, 1, &got));
    CHECK(memcmp(&got, &r, sizeof r) == 0);
    CHECK(got.rip == 0xffffffff81234567ull && got.rax == 0x1122334455667788ull);
    CHECK(got.cr3 == 0x5000 && got.fs_base == 0x7f0000001001ull);
    OK(xvmi_memory_registers(mem, 0, &got));
    CHECK(memcmp(&got, &before0, sizeof got) == 0);
    OK(xvmi_domain_resume(dom));
    CHECK_RC(xvmi_domain_resume(dom), XVMI_ERR_INVALID_ARGUMENT);
    printf("registers ok\n");
}

static void views(const xvmi_domain *dom) {
    xvmi_session *s = NULL;
    xvmi_sim_state st;
    uint16_t v1 = 0, v2 = 0, v3 = 0;
    OK(xvmi_session_open(dom, &s));
    OK(xvmi_session_create_view(s, XVMI_ACCESS_R | XVMI_ACCESS_W | XVMI_ACCESS_X, &v1));
    OK(xvmi_session_create_view(s, XVMI_ACCESS_R | XVMI_ACCESS_W | XVMI_ACCESS_X, &v2));
    CHECK(v1 != 0 && v2 != 0 && v1 != v2);
    OK(xvmi_session_set_mem_access(s, v1, 0x10, XVMI_ACCESS_R));
    OK(xvmi_session_set_mem_access(s, v2, 0x11, XVMI_ACCESS_R | XVMI_ACCESS_X));
    OK(xvmi_session_switch_view(s, v1));

    /* The active view, view 0 and a view the session never made are refused. */
    CHECK_RC(xvmi_session_destroy_view(s, v1), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "switch") != NULL);
    CHECK_RC(xvmi_session_destroy_view(s, 0), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "`view` is 0") != NULL);
    CHECK_RC(xvmi_session_destroy_view(s, 7), XVMI_ERR_NOT_FOUND);
    CHECK(strstr(last_error(), "view 7") != NULL);
    CHECK_RC(xvmi_session_destroy_view(NULL, v2), XVMI_ERR_NULL_POINTER);
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.extra_views == 2 && st.restrictions == 2 && st.vcpus_not_clean == 2);

    /* Back to view 0, then v1 goes, with its restricted frame. */
    OK(xvmi_session_switch_view(s, 0));
    OK(xvmi_session_destroy_view(s, v1));
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.extra_views == 1 && st.restrictions == 1 && st.vcpus_not_clean == 0);
    CHECK_RC(xvmi_session_destroy_view(s, v1), XVMI_ERR_NOT_FOUND);
    /* The id is handed out again: the new view is the session's, undone once at teardown. */
    OK(xvmi_session_create_view(s, XVMI_ACCESS_R | XVMI_ACCESS_X, &v3));
    CHECK(v3 == v1);
    OK(xvmi_session_switch_view(s, v3));
    OK(xvmi_session_teardown(s));
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.extra_views == 0 && st.restrictions == 0 && st.vcpus_not_clean == 0);
    CHECK(st.monitors == 0 && !st.ring_enabled && st.paused_vcpus == 0);
    CHECK_RC(xvmi_session_destroy_view(s, v2), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "torn down") != NULL);
    OK(xvmi_session_free(s));

    /* The hook manager's execute view is its own, also after a switch back to view 0. */
    OK(xvmi_session_open(dom, &s));
    OK(xvmi_session_hooks_enable(s, XVMI_PLACEMENT_STEALTH));
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.extra_views == 1);
    OK(xvmi_session_switch_view(s, 0));
    CHECK_RC(xvmi_session_destroy_view(s, 1), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "hook manager") != NULL);
    OK(xvmi_session_free(s));
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.extra_views == 0 && st.restrictions == 0 && st.vcpus_not_clean == 0);
    printf("views ok\n");
}

static int count_events(void *userdata, const xvmi_event *e, xvmi_response *r) {
    (void)r;
    if (e->kind == XVMI_EVENT_CPUID)
        ++*(int *)userdata;
    return XVMI_RUN_CONTINUE;
}

static void pauses(const xvmi_registers regs[2]) {
    xvmi_domain *dom = NULL;
    xvmi_session *s = NULL;
    uint32_t count = 99;
    OK(xvmi_sim_open_buffer(image, sizeof image, regs, 2, &dom));
    OK(xvmi_sim_pause_count(dom, &count));
    CHECK(count == 0);
    CHECK_RC(xvmi_domain_resume(dom), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "no pause") != NULL);
    OK(xvmi_domain_pause(dom));
    OK(xvmi_domain_pause(dom));
    OK(xvmi_sim_pause_count(dom, &count));
    CHECK(count == 2);
    OK(xvmi_domain_resume(dom));
    OK(xvmi_sim_pause_count(dom, &count));
    CHECK(count == 1);
    OK(xvmi_domain_pause(dom));
    OK(xvmi_sim_pause_count(dom, &count));
    CHECK(count == 2);

    /* Paused: the guest does not run, so its cpuid raises no event. */
    OK(xvmi_session_open(dom, &s));
    xvmi_monitor m = {0};
    m.kind = XVMI_MONITOR_CPUID;
    OK(xvmi_session_monitor(s, &m));
    OK(xvmi_sim_script_cpuid(dom, 0, 1));
    xvmi_run_options o = {0};
    o.poll_ms = 1;
    o.max_idle_polls = 3;
    int events = 0;
    xvmi_run_stats stats;
    OK(xvmi_session_run(s, count_events, &events, &o, &stats));
    CHECK(events == 0 && stats.events == 0);
    xvmi_sim_state st;
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.script_left == 1);

    /* Freeing the handle resumes both of its pauses although the session keeps the domain
     * alive: the guest runs and its cpuid arrives. */
    OK(xvmi_domain_free(dom));
    OK(xvmi_session_run(s, count_events, &events, &o, &stats));
    CHECK(events == 1 && stats.events == 1);
    OK(xvmi_session_free(s));
    printf("pauses ok\n");
}

/* A whole-guest capture of the domain: paused (the handle's own pause nests and is kept) and
 * live; read back as a snapshot, byte for byte against the domain's memory, with every vCPU's
 * registers; an existing file refused unless replaced; a directory refused with nothing left
 * behind; unknown flags refused. */
static void capture(const xvmi_registers regs[2]) {
    xvmi_domain *dom = NULL;
    xvmi_memory *live = NULL, *snap = NULL;
    OK(xvmi_sim_open_buffer(image, sizeof image, regs, 2, &dom));
    OK(xvmi_memory_open_domain(dom, &live));
    char path[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/xvmi-test-capture-%ld.core", tmp && *tmp ? tmp : "/tmp",
             (long)getpid());
    remove(path);

    OK(xvmi_domain_pause(dom));
    xvmi_capture_report r;
    memset(&r, 0xff, sizeof r);
    OK(xvmi_domain_capture(dom, path, XVMI_CAPTURE_PAUSE, &r));
    uint32_t count = 99;
    OK(xvmi_sim_pause_count(dom, &count));
    CHECK(count == 1); /* the capture's pause is undone, the handle's own is not */
    OK(xvmi_domain_resume(dom));
    CHECK(r.consistency == XVMI_CAPTURE_PAUSED);
    CHECK(r.vcpus == 2);
    CHECK(r.bytes_written == IMAGE_SIZE);
    CHECK(r.segments == 1 && r.missing_bytes == 0 && r.missing_ranges == 0);
    CHECK(r.file_bytes > IMAGE_SIZE && r.elapsed_ns >= r.paused_ns);

    OK(xvmi_memory_open_snapshot(path, &snap));
    uint32_t n = 0;
    OK(xvmi_memory_vcpu_count(snap, &n));
    CHECK(n == 2);
    for (uint32_t v = 0; v < 2; v++) {
        xvmi_registers got;
        OK(xvmi_memory_registers(snap, v, &got));
        CHECK(got.cr3 == regs[v].cr3 && got.rip == regs[v].rip && got.rsp == regs[v].rsp);
        CHECK(got.fs_base == regs[v].fs_base && got.cr0 == regs[v].cr0 && got.cr4 == regs[v].cr4);
    }
    static uint8_t a[IMAGE_SIZE], b[IMAGE_SIZE];
    read_phys(live, 0, a, sizeof a);
    read_phys(snap, 0, b, sizeof b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* Nothing past the guest's memory is invented. */
    CHECK_RC(xvmi_memory_read_physical(snap, IMAGE_SIZE, b, 1), XVMI_ERR_NOT_MAPPED);
    OK(xvmi_memory_free(snap));

    /* The file exists: refused and left as it was, unless replaced. */
    CHECK_RC(xvmi_domain_capture(dom, path, 0, &r), XVMI_ERR_IO);
    CHECK(strstr(last_error(), path) != NULL);
    OK(xvmi_domain_capture(dom, path, XVMI_CAPTURE_REPLACE, NULL));
    OK(xvmi_domain_capture(dom, path, XVMI_CAPTURE_REPLACE, &r));
    CHECK(r.consistency == XVMI_CAPTURE_LIVE && r.paused_ns == 0 && r.vcpus == 2);
    OK(xvmi_sim_pause_count(dom, &count));
    CHECK(count == 0);
    CHECK(remove(path) == 0);

    /* A directory: an error naming it, and no partial file beside it. */
    const char *dir = tmp && *tmp ? tmp : "/tmp";
    CHECK_RC(xvmi_domain_capture(dom, dir, XVMI_CAPTURE_PAUSE, NULL), XVMI_ERR_IO);
    CHECK(strstr(last_error(), "directory") != NULL);
    char partial[300];
    snprintf(partial, sizeof partial, "%s.partial", dir);
    CHECK(access(partial, F_OK) != 0);
    OK(xvmi_sim_pause_count(dom, &count));
    CHECK(count == 0);

    CHECK_RC(xvmi_domain_capture(dom, path, 4, NULL), XVMI_ERR_INVALID_ARGUMENT);
    CHECK_RC(xvmi_domain_capture(dom, NULL, 0, NULL), XVMI_ERR_NULL_POINTER);
    CHECK(access(path, F_OK) != 0);
    OK(xvmi_memory_free(live));
    OK(xvmi_domain_free(dom));
    printf("capture ok\n");
}

int main(void) {
    xvmi_registers regs[2];
    build_guest(regs);
    xvmi_domain *dom = NULL;
    xvmi_memory *mem = NULL;
    OK(xvmi_sim_open_buffer(image, sizeof image, regs, 2, &dom));
    OK(xvmi_memory_open_domain(dom, &mem));
    memory_writes(dom, mem);
    snapshot_is_read_only();
    registers(dom, mem);
    views(dom);
    uint32_t count = 99;
    OK(xvmi_sim_pause_count(dom, &count));
    CHECK(count == 0);
    OK(xvmi_memory_free(mem));
    OK(xvmi_domain_free(dom));
    pauses(regs);
    capture(regs);
    printf("done\n");
    return 0;
}
