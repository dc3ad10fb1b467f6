/* Printing a discovered OS's walks, one fact per line, in the formats tests/c_abi.rs parses:
 *   process PID PPID KTHREAD DTB USER_DTB NAME   (then, Windows: dll PID NAME BASE SIZE)
 *   driver NAME BASE SIZE                          (Windows drivers, hex)
 *   module NAME BASE SIZE                          (Linux modules, size in decimal)
 * Shared by test_windows.c and test_discover.c. */
#ifndef XVMI_TEST_PRINT_OS_H
#define XVMI_TEST_PRINT_OS_H

#include <inttypes.h>
#include <stdint.h>

#include "check.h"

struct walk {
    const xvmi_os *os;
    const xvmi_memory *mem;
};

static inline int print_dll(void *userdata, const xvmi_module *m, xvmi_result status) {
    const xvmi_process *p = userdata;
    CHECK(status == XVMI_OK);
    printf("dll %" PRIu64 " %s 0x%" PRIx64 " 0x%" PRIx64 "\n", p->pid, m->name, m->base, m->size);
    return XVMI_WALK_CONTINUE;
}

/* A Windows process and its DLLs. */
static inline int print_process(void *userdata, const xvmi_process *p, xvmi_result status) {
    struct walk *w = userdata;
    CHECK(status == XVMI_OK);
    printf("process %" PRIu64 " %" PRIu64 " %d 0x%" PRIx64 " 0x%" PRIx64 " %s\n", p->pid, p->ppid,
           p->kernel_thread ? 1 : 0, p->dtb, p->has_user_dtb ? p->user_dtb : 0, p->name);
    /* A copy of the record is what xvmi_os_process_modules takes. */
    xvmi_process copy = *p;
    xvmi_result rc = xvmi_os_process_modules(w->os, w->mem, &copy, print_dll, &copy);
    if (p->kernel_thread)
        CHECK(rc == XVMI_ERR_CORRUPT); /* no PEB, no DLLs */
    else
        CHECK(rc == XVMI_OK);
    return XVMI_WALK_CONTINUE;
}

static inline int print_driver(void *userdata, const xvmi_module *m, xvmi_result status) {
    (void)userdata;
    CHECK(status == XVMI_OK);
    printf("driver %s 0x%" PRIx64 " 0x%" PRIx64 "\n", m->name, m->base, m->size);
    return XVMI_WALK_CONTINUE;
}

/* A Linux task (thread-group leader): pid, tgid, ppid, kernel thread, name. */
static inline int print_task(void *userdata, const xvmi_process *p, xvmi_result status) {
    (void)userdata;
    CHECK(status == XVMI_OK);
    printf("task %" PRIu64 " %" PRIu64 " %" PRIu64 " %d %s\n", p->pid, p->tgid, p->ppid,
           p->kernel_thread ? 1 : 0, p->name);
    return XVMI_WALK_CONTINUE;
}

static inline int print_module(void *userdata, const xvmi_module *m, xvmi_result status) {
    (void)userdata;
    CHECK(status == XVMI_OK);
    printf("module %s 0x%" PRIx64 " %" PRIu64 "\n", m->name, m->base, m->size);
    return XVMI_WALK_CONTINUE;
}

#endif
