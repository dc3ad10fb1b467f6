/* Semantic events through the C ABI, on xenvmi's simulated domain (not Xen) over a real Linux
 * 6.1 snapshot, in both placements: probes placed with xvmi_session_trace_enable; vCPU 0 (in
 * user mode in the dump, so its per-CPU base is KERNEL_GS_BASE) runs finalize_exec, which
 * becomes a process start naming the process on that vCPU with its argv; a filter on another
 * pid drops the same hit; bad arguments, a filter naming a system call the guest lacks, a
 * buffer too small and a context kept past its callback are refused with their codes.
 *
 * usage: test_trace VMCORE
 * Prints "start PLACEMENT pid=P ppid=Q comm=C argc=N", "argv I S" and "exe E" lines;
 * tests/c_abi.rs compares them with the guest's own report. */
#include <inttypes.h>
#include <stdint.h>

#include "check.h"

struct ctx {
    const char *placement;
    int events, not_events;
    uint64_t pid;
    xvmi_context *kept;
};

static int on_event(void *userdata, xvmi_context *ctx, const xvmi_event *e, xvmi_response *r) {
    (void)e;
    (void)r;
    struct ctx *c = userdata;
    c->kept = ctx;
    xvmi_trace_event t;
    xvmi_result rc = xvmi_context_trace_event(ctx, &t);
    if (rc == XVMI_ERR_NOT_FOUND) {
        c->not_events++;
        return XVMI_RUN_CONTINUE;
    }
    OK(rc);
    c->events++;
    CHECK(t.type_ == XVMI_TRACE_PROCESS_START);
    CHECK(t.vcpu == 0 && t.unreadable == 0);
    c->pid = t.pid;
    printf("start %s pid=%" PRIu64 " ppid=%" PRIu64 " comm=%s argc=%u\n", c->placement, t.pid,
           t.ppid, t.comm, t.argc);
    char buf[4096];
    size_t len = 0;
    for (uint32_t i = 0; i < t.argc; i++) {
        OK(xvmi_context_trace_string(ctx, XVMI_TRACE_STRING_ARGV, i, buf, sizeof buf, &len));
        CHECK(len == strlen(buf));
        printf("argv %u %s\n", i, buf);
    }
    CHECK_RC(xvmi_context_trace_string(ctx, XVMI_TRACE_STRING_ARGV, t.argc, buf, sizeof buf, &len),
             XVMI_ERR_NOT_FOUND);
    OK(xvmi_context_trace_string(ctx, XVMI_TRACE_STRING_PATH, 0, buf, sizeof buf, &len));
    printf("exe %s\n", buf);
    /* Too small: refused, with the length needed. */
    CHECK_RC(xvmi_context_trace_string(ctx, XVMI_TRACE_STRING_PATH, 0, buf, 2, &len),
             XVMI_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen(buf));
    CHECK_RC(xvmi_context_trace_string(ctx, XVMI_TRACE_STRING_SYSCALL_ARG, 0, buf, sizeof buf, &len),
             XVMI_ERR_NOT_FOUND);
    CHECK_RC(xvmi_context_trace_string(ctx, 99, 0, buf, sizeof buf, &len), XVMI_ERR_INVALID_ARGUMENT);
    OK(xvmi_context_trace_string(ctx, XVMI_TRACE_STRING_JSON, 0, buf, sizeof buf, &len));
    /* The library's JSON form (what `trace --json` prints; its `time` differs run to run). */
    CHECK(strstr(buf, "\"type\":\"process_start\"") != NULL);
    CHECK(strstr(buf, "\"argv\":[") != NULL);
    char want[64];
    snprintf(want, sizeof want, "\"pid\":%" PRIu64 ",", t.pid);
    CHECK(strstr(buf, want) != NULL);
    return XVMI_RUN_CONTINUE;
}

/* One session: trace with `filter`, vCPU 0 runs finalize_exec once. Returns the events. */
static struct ctx run_once(const char *vmcore, uint32_t placement, const char *pname,
                           const xvmi_trace_filter *filter) {
    xvmi_domain *dom = NULL;
    OK(xvmi_sim_open_snapshot(vmcore, &dom));
    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_domain(dom, &mem));
    xvmi_os *os = NULL;
    OK(xvmi_os_linux_discover(mem, NULL, &os));
    xvmi_os_info info;
    OK(xvmi_os_get_info(os, &info));
    uint64_t va = 0, gpa = 0;
    OK(xvmi_os_symbol(os, "finalize_exec", &va));
    OK(xvmi_memory_translate(mem, info.kernel_cr3, va, &gpa));

    xvmi_session *s = NULL;
    OK(xvmi_session_open(dom, &s));
    uint32_t not_placed = 99;
    /* No hooks yet. */
    CHECK_RC(xvmi_session_trace_enable(s, os, XVMI_PROBE_PROCESS_START, NULL, &not_placed),
             XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "xvmi_session_hooks_enable") != NULL);
    OK(xvmi_session_hooks_enable(s, placement));
    CHECK_RC(xvmi_session_trace_enable(s, os, 0, NULL, NULL), XVMI_ERR_INVALID_ARGUMENT);
    CHECK_RC(xvmi_session_trace_enable(s, os, 1u << 9, NULL, NULL), XVMI_ERR_INVALID_ARGUMENT);
    const char *bogus[] = {"no_such_call"};
    xvmi_trace_filter bad = {0};
    bad.syscalls = bogus;
    bad.syscall_count = 1;
    CHECK_RC(xvmi_session_trace_enable(s, os, XVMI_PROBE_SYSCALL, &bad, NULL), XVMI_ERR_MISSING_SYMBOL);
    CHECK(strstr(last_error(), "sys_no_such_call") != NULL);
    OK(xvmi_session_trace_enable(s, os, XVMI_PROBE_PROCESS_START, filter, &not_placed));
    CHECK(not_placed == 0);
    CHECK_RC(xvmi_session_trace_enable(s, os, XVMI_PROBE_PROCESS_START, NULL, NULL),
             XVMI_ERR_INVALID_ARGUMENT);

    OK(xvmi_sim_script_execute(dom, 0, gpa));
    struct ctx c = {0};
    c.placement = pname;
    xvmi_run_options opts = {0};
    opts.poll_ms = 1;
    opts.max_idle_polls = 2;
    OK(xvmi_session_run_context(s, on_event, &c, &opts, NULL));
    /* A context is valid only during its callback. */
    if (c.kept) {
        xvmi_trace_event t;
        CHECK_RC(xvmi_context_trace_event(c.kept, &t), XVMI_ERR_INVALID_HANDLE);
    }
    OK(xvmi_session_teardown(s));
    OK(xvmi_session_free(s));
    xvmi_sim_state st;
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.paused_vcpus == 0 && st.vcpus_not_clean == 0 && st.monitors == 0);
    CHECK(st.extra_views == 0 && st.restrictions == 0 && st.extra_frames == 0);
    OK(xvmi_os_free(os));
    OK(xvmi_memory_free(mem));
    OK(xvmi_domain_free(dom));
    return c;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_trace VMCORE\n");
        return 2;
    }
    const uint32_t placements[2] = {XVMI_PLACEMENT_STEALTH, XVMI_PLACEMENT_IN_PLACE};
    const char *names[2] = {"stealth", "in-place"};
    for (int i = 0; i < 2; i++) {
        struct ctx c = run_once(argv[1], placements[i], names[i], NULL);
        CHECK(c.events == 1);
        /* The same hit with a filter on another process: no event. */
        uint64_t other = c.pid + 1000;
        xvmi_trace_filter f = {0};
        f.pids = &other;
        f.pid_count = 1;
        struct ctx filtered = run_once(argv[1], placements[i], names[i], &f);
        CHECK(filtered.events == 0 && filtered.not_events == 1);
        printf("filtered %s\n", names[i]);
    }
    printf("done\n");
    return 0;
}
