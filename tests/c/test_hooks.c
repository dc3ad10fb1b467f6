/* The hook manager and event injection through the C ABI, on xenvmi's simulated domain (not
 * Xen) over a real Linux 6.1 snapshot, in both placements: breakpoints on real kernel functions
 * by symbol and by virtual address, one placed and one removed from inside the callback
 * through its context, the guest's own int3 handed back to it, an exception injected with a
 * response and one injected directly, a stale context refused, and nothing left behind.
 *
 * usage: test_hooks VMCORE
 * Prints "hit PLACEMENT NAME" for each breakpoint hit; tests/c_abi.rs checks the sequence. */
#include <inttypes.h>
#include <stdint.h>

#include "check.h"

struct fn {
    const char *name;
    uint64_t va, gpa, id;
};

struct ctx {
    const char *placement;
    const xvmi_os *os;
    struct fn *getpid, *getppid, *schedule;
    uint64_t added_id; /* getppid's breakpoint, placed from the callback */
    int hits, cpuid_events, other_events;
    xvmi_context *kept; /* a context pointer kept past its callback */
};

static const char *name_of(struct ctx *c, uint64_t gpa) {
    if (gpa == c->getpid->gpa)
        return c->getpid->name;
    if (gpa == c->getppid->gpa)
        return c->getppid->name;
    if (gpa == c->schedule->gpa)
        return c->schedule->name;
    return "?";
}

static int on_event(void *userdata, xvmi_context *ctx, const xvmi_event *e, xvmi_response *r) {
    struct ctx *c = userdata;
    c->kept = ctx;
    xvmi_hit hit;
    OK(xvmi_context_hit(ctx, &hit));
    if (hit.kind == XVMI_HIT_BREAKPOINT) {
        CHECK(e->kind == XVMI_EVENT_SOFTWARE_BREAKPOINT);
        CHECK(e->data.software_breakpoint.gfn == hit.gpa >> 12);
        c->hits++;
        printf("hit %s %s\n", c->placement, name_of(c, hit.gpa));
        if (hit.gpa == c->getpid->gpa) {
            CHECK(hit.id == c->getpid->id);
            /* Placed from the callback, live before this vCPU resumes. */
            OK(xvmi_context_hook_add_symbol(ctx, c->os, "__x64_sys_getppid", &c->added_id));
            CHECK_RC(xvmi_context_hook_add_symbol(ctx, c->os, "no_such_function_xyz", &c->added_id),
                     XVMI_ERR_MISSING_SYMBOL);
            CHECK(strstr(last_error(), "no_such_function_xyz") != NULL);
        } else if (hit.gpa == c->getppid->gpa) {
            CHECK(hit.id == c->added_id);
            OK(xvmi_context_hook_remove(ctx, hit.id)); /* one hit only */
        } else {
            CHECK(hit.gpa == c->schedule->gpa && hit.id == c->schedule->id);
        }
        /* The response to a hit is the manager's (step over): an injection here is ignored. */
        return XVMI_RUN_CONTINUE;
    }
    CHECK(hit.kind == XVMI_HIT_NONE);
    /* A return hook outside a breakpoint hit is refused. */
    CHECK_RC(xvmi_context_return_hook(ctx, 7, NULL), XVMI_ERR_UNSUPPORTED);
    if (e->kind == XVMI_EVENT_CPUID) {
        c->cpuid_events++;
        /* Answer the cpuid with a #UD for the guest. */
        r->flags |= XVMI_RESPONSE_INJECT;
        r->inject.vector = 6;
        r->inject.type_ = XVMI_INJECT_HARDWARE_EXCEPTION;
    } else {
        c->other_events++;
    }
    return XVMI_RUN_CONTINUE;
}

static void find(const xvmi_os *os, const xvmi_memory *mem, uint64_t cr3, struct fn *f) {
    OK(xvmi_os_symbol(os, f->name, &f->va));
    OK(xvmi_memory_translate(mem, cr3, f->va, &f->gpa));
}

static uint8_t byte_at(const xvmi_memory *mem, uint64_t gpa) {
    uint8_t b = 0;
    OK(xvmi_memory_flush(mem));
    OK(xvmi_memory_read_physical(mem, gpa, &b, 1));
    return b;
}

static void run_placement(const char *vmcore, uint32_t placement, const char *pname) {
    xvmi_domain *dom = NULL;
    OK(xvmi_sim_open_snapshot(vmcore, &dom));
    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_domain(dom, &mem));
    xvmi_os *os = NULL;
    OK(xvmi_os_linux_discover(mem, NULL, &os));
    xvmi_os_info info;
    OK(xvmi_os_get_info(os, &info));
    struct fn getpid = {"__x64_sys_getpid", 0, 0, 0}, getppid = {"__x64_sys_getppid", 0, 0, 0},
              schedule = {"schedule", 0, 0, 0}, getuid = {"__x64_sys_getuid", 0, 0, 0};
    find(os, mem, info.kernel_cr3, &getpid);
    find(os, mem, info.kernel_cr3, &getppid);
    find(os, mem, info.kernel_cr3, &schedule);
    find(os, mem, info.kernel_cr3, &getuid);
    uint8_t first = byte_at(mem, getpid.gpa);
    CHECK(first != 0xcc);

    xvmi_session *s = NULL;
    OK(xvmi_session_open(dom, &s));
    uint64_t id = 0;
    CHECK_RC(xvmi_session_hook_add(s, getpid.gpa, &id), XVMI_ERR_INVALID_ARGUMENT); /* no hooks */
    CHECK(strstr(last_error(), "xvmi_session_hooks_enable") != NULL);
    CHECK_RC(xvmi_session_hooks_enable(s, 9), XVMI_ERR_INVALID_ARGUMENT);
    OK(xvmi_session_hooks_enable(s, placement));
    CHECK_RC(xvmi_session_hooks_enable(s, placement), XVMI_ERR_INVALID_ARGUMENT);
    OK(xvmi_session_hook_add_symbol(s, os, getpid.name, &getpid.id));
    OK(xvmi_session_hook_add_va(s, info.kernel_cr3, schedule.va, &schedule.id));
    CHECK(getpid.id != schedule.id);
    /* In place, the int3 is in the guest's page; stealth, the page is untouched. */
    CHECK(byte_at(mem, getpid.gpa) == (placement == XVMI_PLACEMENT_IN_PLACE ? 0xcc : first));
    xvmi_monitor m = {0};
    m.kind = XVMI_MONITOR_CPUID;
    OK(xvmi_session_monitor(s, &m));

    /* The guest: getpid (hit; the callback hooks getppid), getppid twice (one hit: the
     * callback removes it), schedule (hit), its own int3 written into getuid and executed,
     * a cpuid (answered with a #UD). */
    OK(xvmi_sim_script_execute(dom, 0, getpid.gpa));
    OK(xvmi_sim_script_execute(dom, 0, getppid.gpa));
    OK(xvmi_sim_script_execute(dom, 0, getppid.gpa));
    OK(xvmi_sim_script_execute(dom, 0, schedule.gpa));
    const uint8_t int3 = 0xcc;
    OK(xvmi_sim_script_write(dom, 0, getuid.gpa, &int3, 1));
    OK(xvmi_sim_script_execute(dom, 0, getuid.gpa));
    OK(xvmi_sim_script_cpuid(dom, 0, 0));
    /* Once more, so that the guest runs after the last injection and takes it. */
    OK(xvmi_sim_script_execute(dom, 0, getppid.gpa));

    struct ctx c = {0};
    c.placement = pname;
    c.os = os;
    c.getpid = &getpid;
    c.getppid = &getppid;
    c.schedule = &schedule;
    xvmi_run_options opts = {0};
    opts.poll_ms = 1;
    opts.max_idle_polls = 2;
    xvmi_run_stats stats;
    OK(xvmi_session_run_context(s, on_event, &c, &opts, &stats));
    CHECK(c.hits == 3);
    CHECK(c.cpuid_events == 1);
    /* A context is valid only during its callback. */
    CHECK(c.kept != NULL);
    CHECK_RC(xvmi_context_hook_remove(c.kept, getpid.id), XVMI_ERR_INVALID_HANDLE);
    CHECK_RC(xvmi_context_stop(c.kept), XVMI_ERR_INVALID_HANDLE);

    xvmi_hook_stats hs;
    OK(xvmi_session_hook_stats(s, &hs));
    CHECK(hs.breakpoints == 2); /* getpid, schedule */
    CHECK(hs.hits == 3);
    CHECK(hs.reinjected == 1); /* the guest's own int3 */
    xvmi_sim_state st;
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.injections_delivered == 2); /* the int3 handed back, the #UD */
    CHECK(st.injections_pending == 0);
    printf("stats %s hits=%" PRIu64 " reinjected=%" PRIu64 " delivered=%" PRIu64 "\n", pname,
           hs.hits, hs.reinjected, st.injections_delivered);

    /* Injected directly: one pending event per vCPU, a second is refused (EBUSY). */
    xvmi_injection pf = {0};
    pf.vector = 14;
    pf.type_ = XVMI_INJECT_HARDWARE_EXCEPTION;
    pf.has_error_code = 1;
    pf.error_code = 4; /* user read */
    pf.cr2 = 0x400000;
    OK(xvmi_domain_inject(dom, 0, &pf));
    CHECK_RC(xvmi_domain_inject(dom, 0, &pf), XVMI_ERR_BACKEND);
    pf.type_ = 1;
    CHECK_RC(xvmi_domain_inject(dom, 0, &pf), XVMI_ERR_INVALID_ARGUMENT);
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.injections_pending == 1);

    OK(xvmi_session_teardown(s));
    CHECK_RC(xvmi_session_hook_add(s, getpid.gpa, &id), XVMI_ERR_INVALID_ARGUMENT);
    OK(xvmi_session_free(s));
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.paused_vcpus == 0 && st.vcpus_not_clean == 0 && st.monitors == 0);
    CHECK(st.extra_views == 0 && st.restrictions == 0 && st.extra_frames == 0);
    CHECK(!st.ring_enabled && st.responses_skipped == 0);
    CHECK(byte_at(mem, getpid.gpa) == first); /* in place: the int3 taken out again */
    OK(xvmi_os_free(os));
    OK(xvmi_memory_free(mem));
    OK(xvmi_domain_free(dom));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_hooks VMCORE\n");
        return 2;
    }
    run_placement(argv[1], XVMI_PLACEMENT_STEALTH, "stealth");
    run_placement(argv[1], XVMI_PLACEMENT_IN_PLACE, "in-place");
    printf("done\n");
    return 0;
}
