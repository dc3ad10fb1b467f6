/*
 * altp2m-repro DOMID empty|populate SECONDS
 *
 * The smallest program that shows whether an altp2m view lets a guest run, without xenvmi:
 * libxenctrl only, no vm_event ring, no access restriction. It turns altp2m on for the domain,
 * creates one view whose default access is rwx, optionally fills it (populate: every RAM gfn's
 * entry copied from the host p2m now, with xc_altp2m_set_mem_access, instead of lazily on the
 * first EPT violation), switches every vCPU to it, watches the guest's CPU time for SECONDS,
 * then switches back to the host view, destroys the view and turns altp2m off.
 *
 * Under Bochs 3.0 with Xen's APIC virtualization on, the "empty" mode stops a Linux guest and
 * "populate" does not: Bochs's virtual-interrupt delivery does not record IDT-vectoring
 * information, so an EPT violation during that delivery (a lazily copied entry) makes Xen
 * re-inject a stale event and the virtual interrupt is lost (docs/real-xen.md).
 *
 * Output lines start with "REPRO". Exit 0 when every call succeeded (whatever the guest did).
 * Build: gcc -O2 -Wall -Wextra -Werror altp2m-repro.c -lxenctrl -o altp2m-repro
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenctrl.h>

static xc_interface *xch;
static uint32_t dom;

static double cpu_seconds(void)
{
    xc_domaininfo_t info;
    if (xc_domain_getinfolist(xch, dom, 1, &info) != 1 || info.domain != dom)
        return -1.0;
    return (double)info.cpu_time / 1e9;
}

static int set_rwx(uint16_t view, uint64_t gfn)
{
    return xc_altp2m_set_mem_access(xch, dom, view, gfn, XENMEM_access_rwx);
}

/* Copies every RAM gfn in [0, max] into the view. Holes (ESRCH: not ordinary RAM in the host
 * p2m) are skipped by galloping: probe 1, 2, 4, ... gfns ahead until one succeeds, then walk
 * back to the first that does. */
static void populate(uint16_t view, uint64_t max, uint64_t *filled, uint64_t *holes)
{
    uint64_t g = 0;
    *filled = *holes = 0;
    while (g <= max) {
        if (set_rwx(view, g) == 0) {
            (*filled)++;
            g++;
            continue;
        }
        uint64_t bad = g, step = 1, good = max + 1;
        while (bad + step <= max) {
            if (set_rwx(view, bad + step) == 0) {
                good = bad + step;
                break;
            }
            bad += step;
            step *= 2;
        }
        /* bad failed and good succeeded (or is past the end): the first success in between. */
        uint64_t lo = bad, hi = good;
        while (hi - lo > 1) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (set_rwx(view, mid) == 0)
                hi = mid;
            else
                lo = mid;
        }
        *holes += hi - g;
        g = hi;
    }
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[2], "empty") && strcmp(argv[2], "populate"))) {
        fprintf(stderr, "usage: %s DOMID empty|populate SECONDS\n", argv[0]);
        return 2;
    }
    dom = (uint32_t)strtoul(argv[1], NULL, 0);
    int seconds = atoi(argv[3]);
    int fill = !strcmp(argv[2], "populate");
    xch = xc_interface_open(NULL, NULL, 0);
    if (!xch) {
        perror("REPRO xc_interface_open");
        return 1;
    }
    xen_pfn_t max = 0;
    if (xc_domain_maximum_gpfn(xch, dom, &max) < 0) {
        perror("REPRO xc_domain_maximum_gpfn");
        return 1;
    }
    uint16_t view = 0;
    if (xc_altp2m_set_domain_state(xch, dom, 1) < 0 ||
        xc_altp2m_create_view(xch, dom, XENMEM_access_rwx, &view) < 0) {
        perror("REPRO altp2m on / create view");
        return 1;
    }
    uint64_t filled = 0, holes = 0;
    if (fill)
        populate(view, max, &filled, &holes);
    double t0 = cpu_seconds();
    if (xc_altp2m_switch_to_view(xch, dom, view) < 0) {
        perror("REPRO switch");
        return 1;
    }
    printf("REPRO %s view %u: max gpfn %#" PRIx64 ", %" PRIu64 " gfns copied, %" PRIu64
           " not RAM; switched, guest vCPU time %.2f s\n",
           argv[2], view, (uint64_t)max, filled, holes, t0);
    fflush(stdout);
    double last = t0;
    int stalled = 0;
    for (int s = 5; s <= seconds; s += 5) {
        sleep(5);
        double t = cpu_seconds();
        printf("REPRO %s +%ds: guest vCPU time %.2f s (+%.2f)\n", argv[2], s, t, t - last);
        fflush(stdout);
        stalled = t - last < 0.01;
        last = t;
    }
    int rc = 0;
    if (xc_altp2m_switch_to_view(xch, dom, 0) < 0 || xc_altp2m_destroy_view(xch, dom, view) < 0 ||
        xc_altp2m_set_domain_state(xch, dom, 0) < 0) {
        perror("REPRO teardown");
        rc = 1;
    }
    sleep(5);
    double after = cpu_seconds();
    printf("REPRO %s result: guest %s in the view (vCPU time %.2f -> %.2f s); after teardown %.2f s\n",
           argv[2], stalled ? "STOPPED" : "ran", t0, last, after);
    xc_interface_close(xch);
    return rc;
}
