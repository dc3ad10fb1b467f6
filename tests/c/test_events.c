/* The event half of the C ABI on xenvmi's simulated domain (not Xen) over a real snapshot:
 * monitors, an altp2m view with a write-protected page, a C callback that denies, emulates,
 * switches views and names the process behind each CR3 write; then the guarantees: a callback
 * filling in garbage still gets its event answered and the session torn down, a callback can
 * stop the loop, another thread can stop it, and nothing is left behind.
 *
 * usage: test_events VMCORE
 * Prints "cr3 VALUE PID NAME" for each CR3 event; tests/c_abi.rs checks them against the
 * fixture's ground truth. */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "check.h"

#define SMEP (1ull << 20)
#define MSR_LSTAR 0xc0000082u

struct ctx {
    const xvmi_session *session;
    const xvmi_os *os;
    const xvmi_memory *mem;
    uint64_t protected_gpa;
    int cr3_events, cr4_events, msr_events, mem_events, cpuid_events, other_events;
    int garbage; /* fill in an invalid response */
    int stop_on_cpuid;
};

static int on_event(void *userdata, const xvmi_event *e, xvmi_response *r) {
    struct ctx *c = userdata;
    /* The response comes pre-set: continue, no flags, the event's registers. */
    CHECK(r->action == XVMI_ACTION_CONTINUE && r->flags == 0);
    CHECK(r->regs.rip == e->regs.rip && r->regs.cr3 == e->regs.cr3);
    if (c->garbage) {
        r->action = 77;
        return XVMI_RUN_CONTINUE;
    }
    switch (e->kind) {
    case XVMI_EVENT_CONTROL_REGISTER:
        CHECK(e->paused);
        if (e->data.control_register.register_id == XVMI_REGISTER_CR3) {
            c->cr3_events++;
            /* The callback may use the library: name the process this CR3 belongs to. */
            xvmi_process p;
            xvmi_result rc =
                xvmi_os_process_for_cr3(c->os, c->mem, e->data.control_register.new_value, &p);
            if (rc == XVMI_OK)
                printf("cr3 0x%" PRIx64 " %" PRIu64 " %s\n", e->data.control_register.new_value,
                       p.pid, p.name);
            else
                printf("cr3 0x%" PRIx64 " none %s\n", e->data.control_register.new_value,
                       xvmi_result_name(rc));
            /* ...but not its own session, which is busy answering. */
            xvmi_monitor m = {0};
            m.kind = XVMI_MONITOR_CPUID;
            CHECK_RC(xvmi_session_monitor(c->session, &m), XVMI_ERR_INVALID_ARGUMENT);
            /* Freeing it from here would pull it from under the loop: refused. */
            CHECK_RC(xvmi_session_free((xvmi_session *)c->session), XVMI_ERR_INVALID_HANDLE);
            CHECK(strstr(last_error(), "in use") != NULL);
        } else if (e->data.control_register.register_id == XVMI_REGISTER_CR4) {
            c->cr4_events++;
            uint64_t old = e->data.control_register.old_value;
            uint64_t new_ = e->data.control_register.new_value;
            if ((old & SMEP) && !(new_ & SMEP))
                r->action = XVMI_ACTION_DENY; /* refuse to turn SMEP off */
        }
        break;
    case XVMI_EVENT_MSR:
        c->msr_events++;
        CHECK(e->data.msr.index == MSR_LSTAR);
        r->action = XVMI_ACTION_DENY; /* refuse any syscall-entry hook */
        break;
    case XVMI_EVENT_MEMORY_ACCESS:
        c->mem_events++;
        CHECK(e->data.memory_access.gfn == c->protected_gpa >> 12);
        CHECK(e->data.memory_access.access & XVMI_ACCESS_W);
        CHECK(e->has_view && e->view != 0);
        if (c->mem_events == 1) {
            r->action = XVMI_ACTION_EMULATE_NOWRITE; /* the write is discarded */
        } else {
            r->flags = XVMI_RESPONSE_SWITCH_VIEW; /* let this one through, in view 0 */
            r->view = 0;
        }
        break;
    case XVMI_EVENT_CPUID:
        c->cpuid_events++;
        if (c->stop_on_cpuid)
            return XVMI_RUN_STOP;
        break;
    default:
        c->other_events++;
    }
    return XVMI_RUN_CONTINUE;
}

struct seen_users {
    uint64_t dtb[3];
    int n;
};

static int collect_users(void *userdata, const xvmi_process *p, xvmi_result status) {
    struct seen_users *s = userdata;
    if (status == XVMI_OK && p->has_dtb) {
        s->dtb[s->n++] = p->dtb;
        if (s->n == 3)
            return XVMI_WALK_STOP;
    }
    return XVMI_WALK_CONTINUE;
}

static void monitor(const xvmi_session *s, uint32_t kind, uint32_t reg, uint32_t msr) {
    xvmi_monitor m = {0};
    m.kind = kind;
    m.control_register = reg;
    m.msr_index = msr;
    m.sync = 1;
    m.on_change_only = 1;
    OK(xvmi_session_monitor(s, &m));
}

static void check_clean(const xvmi_domain *dom) {
    xvmi_sim_state st;
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.paused_vcpus == 0);
    CHECK(st.vcpus_not_clean == 0);
    CHECK(st.monitors == 0);
    CHECK(st.extra_views == 0);
    CHECK(st.restrictions == 0);
    CHECK(st.extra_frames == 0);
    CHECK(!st.ring_enabled);
    CHECK(st.responses_skipped == 0);
}

static void *stop_later(void *arg) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    CHECK_RC(xvmi_session_stop((const xvmi_session *)arg), XVMI_OK);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_events VMCORE\n");
        return 2;
    }
    /* Xen: unsupported in a build without the xen feature, a backend error without Xen. */
    xvmi_domain *xen = NULL;
    xvmi_result xr = xvmi_domain_open_xen("1", &xen);
    CHECK(xr == XVMI_ERR_UNSUPPORTED || xr == XVMI_ERR_BACKEND);
    CHECK(xen == NULL);
    printf("xen %s %s\n", xvmi_result_name(xr), last_error());

    xvmi_domain *dom = NULL;
    OK(xvmi_sim_open_snapshot(argv[1], &dom));
    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_domain(dom, &mem));
    xvmi_os *os = NULL;
    OK(xvmi_os_linux_discover(mem, NULL, &os));
    xvmi_os_info info;
    OK(xvmi_os_get_info(os, &info));
    struct seen_users users = {{0}, 0};
    OK(xvmi_os_processes(os, mem, collect_users, &users));
    CHECK(users.n == 3);
    xvmi_registers r0;
    OK(xvmi_memory_registers(mem, 0, &r0));
    CHECK(!(r0.cr4 & SMEP));

    /* A page to protect: the kernel's first page (its bytes are checked below). */
    uint64_t gpa = info.kernel_base_pa;
    uint8_t before[4], after[4];
    OK(xvmi_memory_read_physical(mem, gpa, before, sizeof before));

    xvmi_session *s = NULL;
    OK(xvmi_session_open(dom, &s));
    xvmi_session *second = NULL;
    CHECK_RC(xvmi_session_open(dom, &second), XVMI_ERR_INVALID_ARGUMENT); /* one at a time */
    monitor(s, XVMI_MONITOR_CONTROL_REGISTER, XVMI_REGISTER_CR3, 0);
    monitor(s, XVMI_MONITOR_CONTROL_REGISTER, XVMI_REGISTER_CR4, 0);
    monitor(s, XVMI_MONITOR_MSR, 0, MSR_LSTAR);
    xvmi_monitor bad = {0};
    CHECK_RC(xvmi_session_monitor(s, &bad), XVMI_ERR_INVALID_ARGUMENT); /* kind 0 */
    bad.kind = XVMI_MONITOR_CONTROL_REGISTER;
    bad.sync = 7;
    CHECK_RC(xvmi_session_monitor(s, &bad), XVMI_ERR_INVALID_ARGUMENT); /* not a boolean */
    uint16_t view = 0;
    CHECK_RC(xvmi_session_create_view(s, 8, &view), XVMI_ERR_INVALID_ARGUMENT);
    OK(xvmi_session_create_view(s, XVMI_ACCESS_R | XVMI_ACCESS_W | XVMI_ACCESS_X, &view));
    CHECK(view != 0);
    OK(xvmi_session_set_mem_access(s, view, gpa >> 12, XVMI_ACCESS_R | XVMI_ACCESS_X));
    OK(xvmi_session_switch_view(s, view));

    /* The guest: three address-space switches, SMEP on then off, an LSTAR hook, two writes
     * to the protected page. */
    for (int i = 0; i < 3; i++)
        OK(xvmi_sim_script_write_cr(dom, 0, XVMI_REGISTER_CR3, users.dtb[i]));
    OK(xvmi_sim_script_write_cr(dom, 0, XVMI_REGISTER_CR4, r0.cr4 | SMEP));
    OK(xvmi_sim_script_write_cr(dom, 0, XVMI_REGISTER_CR4, r0.cr4));
    OK(xvmi_sim_script_write_msr(dom, 0, MSR_LSTAR, 0xffffffffdeadbeefull));
    const uint8_t evil[4] = {0xcc, 0xcc, 0xcc, 0xcc};
    OK(xvmi_sim_script_write(dom, 0, gpa, evil, sizeof evil));
    OK(xvmi_sim_script_write(dom, 0, gpa, evil, sizeof evil));
    CHECK_RC(xvmi_sim_script_write_cr(dom, 99, XVMI_REGISTER_CR4, 0), XVMI_ERR_NO_SUCH_VCPU);
    CHECK_RC(xvmi_sim_script_write_cr(dom, 0, 9, 0), XVMI_ERR_INVALID_ARGUMENT);

    struct ctx c = {0};
    c.session = s;
    c.os = os;
    c.mem = mem;
    c.protected_gpa = gpa;
    xvmi_run_options opts = {0};
    opts.max_idle_polls = 1; /* return once the script is done */
    xvmi_run_stats stats;
    OK(xvmi_session_run(s, on_event, &c, &opts, &stats));
    printf("run1 events %" PRIu64 " cr3 %d cr4 %d msr %d mem %d\n", stats.events, c.cr3_events,
           c.cr4_events, c.msr_events, c.mem_events);
    CHECK(c.cr3_events == 3 && c.cr4_events == 2 && c.msr_events == 1 && c.mem_events == 2);
    CHECK(stats.events == 8 && !stats.interrupted);

    /* What the answers did. */
    xvmi_sim_state st;
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.paused_vcpus == 0);
    CHECK(st.denied == 2);   /* SMEP off, LSTAR */
    CHECK(st.emulated == 1); /* the discarded write */
    xvmi_registers r1;
    OK(xvmi_memory_registers(mem, 0, &r1));
    CHECK(r1.cr4 & SMEP);              /* SMEP stayed on */
    CHECK(r1.cr3 == users.dtb[2]);     /* the switches happened */
    uint64_t lstar = 0;
    CHECK_RC(xvmi_sim_msr(dom, 0, MSR_LSTAR, &lstar), XVMI_ERR_NOT_FOUND); /* never written */
    OK(xvmi_memory_read_physical(mem, gpa, after, sizeof after));
    CHECK(memcmp(after, evil, 4) == 0); /* the second write went through in view 0 */

    /* A callback that fills in garbage: its event is answered, the session torn down. */
    OK(xvmi_sim_script_write_cr(dom, 0, XVMI_REGISTER_CR4, r1.cr4 & ~SMEP));
    c.garbage = 1;
    CHECK_RC(xvmi_session_run(s, on_event, &c, &opts, NULL), XVMI_ERR_HANDLER);
    CHECK(strstr(last_error(), "action 77") != NULL);
    printf("garbage %s\n", last_error());
    check_clean(dom);
    CHECK_RC(xvmi_session_run(s, on_event, &c, &opts, NULL), XVMI_ERR_INVALID_ARGUMENT);
    CHECK_RC(xvmi_session_switch_view(s, view), XVMI_ERR_INVALID_ARGUMENT);
    OK(xvmi_session_teardown(s)); /* idempotent */
    xvmi_session_free(s);
    OK(xvmi_sim_get_state(dom, &st));
    /* The safe answer let the write through (nothing denied it). */
    OK(xvmi_memory_registers(mem, 0, &r1));
    CHECK(!(r1.cr4 & SMEP));

    /* A new session on the same domain; the callback stops the loop. */
    OK(xvmi_session_open(dom, &s));
    c.session = s;
    c.garbage = 0;
    c.stop_on_cpuid = 1;
    monitor(s, XVMI_MONITOR_CPUID, 0, 0);
    for (int i = 0; i < 3; i++)
        OK(xvmi_sim_script_cpuid(dom, 0, (uint32_t)i));
    OK(xvmi_session_run(s, on_event, &c, NULL, &stats));
    CHECK(stats.interrupted && stats.events >= 1);
    CHECK(c.cpuid_events == (int)stats.events);
    /* Stopped for good: a later run returns at once. */
    OK(xvmi_session_run(s, on_event, &c, NULL, &stats));
    CHECK(stats.interrupted && stats.events == 0);
    OK(xvmi_session_teardown(s));
    check_clean(dom);
    xvmi_session_free(s);

    /* Another thread stops a loop that has nothing to do. */
    OK(xvmi_session_open(dom, &s));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, stop_later, s) == 0);
    OK(xvmi_session_run(s, on_event, &c, NULL, &stats));
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(stats.interrupted);
    OK(xvmi_session_free(s)); /* tears down */
    check_clean(dom);
    /* Freed: using it again, or freeing it twice, is refused. */
    CHECK_RC(xvmi_session_teardown(s), XVMI_ERR_INVALID_HANDLE);
    CHECK_RC(xvmi_session_free(s), XVMI_ERR_INVALID_HANDLE);

    /* The domain handle may go first: the memory handle keeps the domain alive. */
    OK(xvmi_domain_free(dom));
    CHECK_RC(xvmi_domain_free(dom), XVMI_ERR_INVALID_HANDLE);
    OK(xvmi_memory_read_physical(mem, gpa, after, sizeof after));
    xvmi_os_free(os);
    xvmi_memory_free(mem);
    printf("done\n");
    return 0;
}
