/* The C ABI on a real Xen: what a vendor's C program does. Runs in dom0 against the tiny
 * test guest: reads its memory and registers through xvmi_memory, traps its CR3 switches,
 * CR4 writes and MSR 0x174 writes through an xvmi_session whose C callback denies every
 * CR4 write, stops from another thread, tears down, and checks the guest runs on and a second
 * monitor can attach. Prints "CABI ..." lines that tests/xen-e2e/run.sh checks.
 *
 * usage: c-monitor DOMID SECONDS DATA_GFN   (DATA_GFN in hex, as for xen-probe)
 * build: cc -std=c11 -Wall -Wextra -Werror -I include c-monitor.c libxenvmi.a (xen feature)
 *        -lpthread -ldl -lm -lrt -lutil */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xenvmi.h"

static const char *last_error(void) {
    static char buf[1024];
    size_t n = 0;
    if (xvmi_last_error(buf, sizeof buf, &n) != XVMI_OK)
        snprintf(buf, sizeof buf, "(message too long)");
    return buf;
}

#define OK(call)                                                                             \
    do {                                                                                     \
        xvmi_result rc_ = (call);                                                            \
        if (rc_ != XVMI_OK) {                                                                \
            printf("CABI FAIL %s: %s: %s\n", #call, xvmi_result_name(rc_), last_error());   \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

struct counts {
    uint64_t cr3, cr4, msr, other, denied;
    uint64_t cr3_values[8];
    int n_cr3_values;
    uint64_t last_cr4_old;
};

static int on_event(void *userdata, const xvmi_event *e, xvmi_response *r) {
    struct counts *c = userdata;
    if (e->kind == XVMI_EVENT_CONTROL_REGISTER &&
        e->data.control_register.register_id == XVMI_REGISTER_CR3) {
        c->cr3++;
        uint64_t v = e->data.control_register.new_value & ~0xfffull;
        int seen = 0;
        for (int i = 0; i < c->n_cr3_values; i++)
            seen |= c->cr3_values[i] == v;
        if (!seen && c->n_cr3_values < 8)
            c->cr3_values[c->n_cr3_values++] = v;
    } else if (e->kind == XVMI_EVENT_CONTROL_REGISTER) {
        c->cr4++;
        c->last_cr4_old = e->data.control_register.old_value;
        r->action = XVMI_ACTION_DENY;
        c->denied++;
    } else if (e->kind == XVMI_EVENT_MSR) {
        c->msr++;
    } else {
        c->other++;
    }
    return XVMI_RUN_CONTINUE;
}

struct stopper {
    const xvmi_session *s;
    int seconds;
};

static void *stop_after(void *arg) {
    struct stopper *st = arg;
    struct timespec ts = {st->seconds, 0};
    nanosleep(&ts, NULL);
    xvmi_session_stop(st->s);
    return NULL;
}

static uint32_t counter(const xvmi_memory *mem, uint64_t gfn) {
    uint8_t b[4];
    OK(xvmi_memory_read_physical(mem, gfn << 12, b, sizeof b));
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void monitor(const xvmi_session *s, uint32_t kind, uint32_t reg, uint32_t msr) {
    xvmi_monitor m;
    memset(&m, 0, sizeof m);
    m.kind = kind;
    m.control_register = reg;
    m.msr_index = msr;
    m.sync = 1;
    OK(xvmi_session_monitor(s, &m));
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: c-monitor DOMID SECONDS DATA_GFN\n");
        return 2;
    }
    int seconds = atoi(argv[2]);
    uint64_t gfn = strtoull(argv[3], NULL, 16); /* hex, as xen-probe takes it */
    printf("CABI %s\n", xvmi_version());

    xvmi_domain *dom = NULL;
    OK(xvmi_domain_open_xen(argv[1], &dom));
    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_domain(dom, &mem));
    uint32_t vcpus = 0;
    OK(xvmi_memory_vcpu_count(mem, &vcpus));
    xvmi_registers regs;
    OK(xvmi_memory_registers(mem, 0, &regs));
    uint32_t c0 = counter(mem, gfn);
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    uint32_t c1 = counter(mem, gfn);
    printf("CABI domain %s: %" PRIu32 " vCPU(s), vCPU 0 rip 0x%" PRIx64 " cr3 0x%" PRIx64
           ", counter %" PRIu32 " -> %" PRIu32 "\n",
           argv[1], vcpus, regs.rip, regs.cr3, c0, c1);

    xvmi_session *s = NULL;
    OK(xvmi_session_open(dom, &s));
    monitor(s, XVMI_MONITOR_CONTROL_REGISTER, XVMI_REGISTER_CR3, 0);
    monitor(s, XVMI_MONITOR_CONTROL_REGISTER, XVMI_REGISTER_CR4, 0);
    monitor(s, XVMI_MONITOR_MSR, 0, 0x174);
    struct counts c;
    memset(&c, 0, sizeof c);
    struct stopper st = {s, seconds};
    pthread_t t;
    if (pthread_create(&t, NULL, stop_after, &st) != 0) {
        printf("CABI FAIL pthread_create\n");
        return 1;
    }
    xvmi_run_stats stats;
    OK(xvmi_session_run(s, on_event, &c, NULL, &stats));
    pthread_join(t, NULL);
    printf("CABI events %" PRIu64 " cr3 %" PRIu64 " cr4 %" PRIu64 " (denied %" PRIu64
           ") msr %" PRIu64 " other %" PRIu64 " interrupted %d\n",
           stats.events, c.cr3, c.cr4, c.denied, c.msr, c.other, (int)stats.interrupted);
    printf("CABI cr3 values");
    for (int i = 0; i < c.n_cr3_values; i++)
        printf(" 0x%" PRIx64, c.cr3_values[i]);
    printf("\n");
    OK(xvmi_session_teardown(s));
    xvmi_session_free(s);

    uint32_t c2 = counter(mem, gfn);
    nanosleep(&pause, NULL);
    uint32_t c3 = counter(mem, gfn);
    printf("CABI after teardown: counter %" PRIu32 " -> %" PRIu32 " (guest running: %s)\n", c2,
           c3, c3 != c2 ? "true" : "false");

    /* A second monitor attaches at once: nothing was left behind. */
    xvmi_session *again = NULL;
    OK(xvmi_session_open(dom, &again));
    monitor(again, XVMI_MONITOR_CONTROL_REGISTER, XVMI_REGISTER_CR3, 0);
    xvmi_session_free(again);
    printf("CABI re-attach ok\n");
    xvmi_memory_free(mem);
    xvmi_domain_free(dom);
    int pass = c.cr3 > 0 && c.cr4 > 0 && c.msr > 0 && c3 != c2 && c1 != c0;
    printf("CABI RESULT %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
}
