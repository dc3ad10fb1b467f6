/* Policies, the guard and attestation through the C ABI, on xenvmi's simulated domain (not
 * Xen) over a real Linux 6.1 snapshot:
 * - bad input first: an unknown policy name, a bad remediation, a malformed manifest, a
 *   missing file, NULL pointers and bad options, each refused with its code and a message
 *   naming the entry, file or field;
 * - a guard over the policy set "cr4; msr; kernel-text" against kernel-guard's scripted
 *   rootkit (clear SMEP/SMAP, point LSTAR at its own code, patch kernel text, between benign
 *   actions): the alerts that reach the callback are checked here by value against what the
 *   script did (registers, MSR value, address and symbol written), the same alerts are in the
 *   JSON-lines file, and the guest's state is kept and fully released;
 * - a manifest learned from the snapshot, written out, loaded back: the same guest attests
 *   clean; with one module's size changed in the file, exactly that module deviates.
 *
 * usage: test_policy VMCORE TMPDIR
 * Prints "alert WHAT POLICY ACTION" and "deviation KIND FIELD MODULE EXPECTED SEEN" lines;
 * tests/c_abi.rs compares the module with the guest's own report. */
#include <inttypes.h>
#include <stdint.h>

#include "check.h"

#define CR4_SMEP (1ull << 20)
#define CR4_SMAP (1ull << 21)
#define CR4_PGE (1ull << 7)
#define MSR_LSTAR 0xc0000082u
#define EVIL_LSTAR 0xffffffffc041c000ull

static const char *dir;

static char *path_in(const char *name) {
    static char buf[4][4096];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    CHECK(fputs(text, f) >= 0);
    CHECK(fclose(f) == 0);
}

/* ---- bad input ---- */

static void bad_input(const char *vmcore) {
    xvmi_policy_set *set = NULL;
    CHECK_RC(xvmi_policy_set_parse("cr4; rootkit-hider", &set), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(set == NULL);
    CHECK(strstr(last_error(), "policy \"rootkit-hider\": unknown policy") != NULL);
    CHECK_RC(xvmi_policy_set_parse("cr4=deny,explode", &set), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "unknown step \"explode\"") != NULL);
    CHECK_RC(xvmi_policy_set_parse("msr;msr", &set), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "policy \"msr\": given twice") != NULL);
    CHECK_RC(xvmi_policy_set_parse(NULL, &set), XVMI_ERR_NULL_POINTER);
    CHECK(strstr(last_error(), "`spec`") != NULL);
    CHECK_RC(xvmi_policy_set_parse("cr4", NULL), XVMI_ERR_NULL_POINTER);
    CHECK(strstr(last_error(), "`out`") != NULL);
    OK(xvmi_policy_set_new(&set));
    CHECK_RC(xvmi_policy_set_add(set, "cr5", NULL), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "policy \"cr5\"") != NULL);
    CHECK_RC(xvmi_policy_set_add(set, NULL, NULL), XVMI_ERR_NULL_POINTER);
    CHECK(strstr(last_error(), "`name`") != NULL);
    size_t n = 99;
    OK(xvmi_policy_set_count(set, &n));
    CHECK(n == 0);
    /* The cross-view policies by name. */
    xvmi_policy_set *hidden = NULL;
    OK(xvmi_policy_set_parse("hidden-modules; hidden-processes", &hidden));
    OK(xvmi_policy_set_count(hidden, &n));
    CHECK(n == 2);
    OK(xvmi_policy_set_free(hidden));

    /* A manifest whose module size is a string: refused naming the file and the field. */
    const char *bad = path_in("bad-manifest.json");
    write_file(bad,
               "{\"format\":\"xenvmi-attest-manifest\",\"version\":1,"
               "\"kernel\":{\"release\":\"6.1\",\"banner\":\"Linux version 6.1\",\"btf_sha256\":null},"
               "\"executables\":[],\"modules\":[{\"name\":\"ext4\",\"size\":\"big\"}]}");
    xvmi_manifest *m = NULL;
    CHECK_RC(xvmi_manifest_load(bad, &m), XVMI_ERR_MALFORMED);
    CHECK(m == NULL);
    CHECK(strstr(last_error(), bad) != NULL);
    CHECK(strstr(last_error(), "size") != NULL);
    fprintf(stderr, "malformed manifest: %s\n", last_error());
    CHECK_RC(xvmi_manifest_load(path_in("no-such-manifest.json"), &m), XVMI_ERR_IO);
    CHECK(strstr(last_error(), "no-such-manifest.json") != NULL);
    CHECK_RC(xvmi_manifest_load(NULL, &m), XVMI_ERR_NULL_POINTER);
    CHECK(strstr(last_error(), "`path`") != NULL);
    CHECK_RC(xvmi_manifest_parse((const uint8_t *)"{", 1, "inline", &m), XVMI_ERR_MALFORMED);
    CHECK(strstr(last_error(), "inline") != NULL);

    /* Guards: NULL handles, no sink, bad options, a capture with nowhere to go. */
    xvmi_domain *dom = NULL;
    OK(xvmi_sim_open_snapshot(vmcore, &dom));
    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_domain(dom, &mem));
    xvmi_os *os = NULL;
    OK(xvmi_os_linux_discover(mem, NULL, &os));
    OK(xvmi_policy_set_add(set, "cr4", NULL));
    xvmi_guard *g = NULL;
    CHECK_RC(xvmi_guard_start(NULL, os, set, NULL, NULL, NULL, &g), XVMI_ERR_NULL_POINTER);
    CHECK(strstr(last_error(), "`domain`") != NULL);
    CHECK_RC(xvmi_guard_start(dom, os, NULL, NULL, NULL, NULL, &g), XVMI_ERR_NULL_POINTER);
    CHECK(strstr(last_error(), "`policies`") != NULL);
    CHECK_RC(xvmi_guard_start(dom, os, set, NULL, NULL, NULL, &g), XVMI_ERR_NULL_POINTER);
    CHECK(strstr(last_error(), "`callback` is NULL") != NULL);
    xvmi_guard_options o;
    memset(&o, 0, sizeof o);
    o.view = 7;
    o.json_lines = path_in("unused.jsonl");
    CHECK_RC(xvmi_guard_start(dom, os, set, &o, NULL, NULL, &g), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "`options.view` is 7") != NULL);
    xvmi_policy_set *capture = NULL;
    OK(xvmi_policy_set_parse("msr=deny,capture", &capture));
    o.view = XVMI_GUARD_VIEW_OWN;
    CHECK_RC(xvmi_guard_start(dom, os, capture, &o, NULL, NULL, &g), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "policy \"msr\"") != NULL);
    CHECK(strstr(last_error(), "no capture directory") != NULL);
    o.json_lines = dir; /* a directory */
    CHECK_RC(xvmi_guard_start(dom, os, set, &o, NULL, NULL, &g), XVMI_ERR_IO);
    CHECK(strstr(last_error(), dir) != NULL);
    o.json_lines = path_in("unused.jsonl");
    o.syslog = "carrier-pigeon://loft";
    CHECK_RC(xvmi_guard_start(dom, os, set, &o, NULL, NULL, &g), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "carrier-pigeon://loft") != NULL);
    CHECK(g == NULL);
    /* Nothing was left changed, and the domain is free for a session. */
    xvmi_sim_state st;
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.monitors == 0 && st.extra_views == 0 && st.restrictions == 0);
    xvmi_session *s = NULL;
    OK(xvmi_session_open(dom, &s));
    OK(xvmi_session_free(s));

    CHECK_RC(xvmi_guard_run(NULL, NULL), XVMI_ERR_NULL_POINTER);
    CHECK_RC(xvmi_guard_stop(NULL), XVMI_ERR_NULL_POINTER);
    OK(xvmi_guard_free(NULL));
    OK(xvmi_manifest_free(NULL));
    OK(xvmi_policy_set_free(NULL));
    OK(xvmi_policy_set_free(capture));
    OK(xvmi_policy_set_free(set));
    CHECK_RC(xvmi_policy_set_free(set), XVMI_ERR_INVALID_HANDLE);
    OK(xvmi_os_free(os));
    OK(xvmi_memory_free(mem));
    OK(xvmi_domain_free(dom));
    printf("bad input ok\n");
}

/* ---- the guard ---- */

#define MAX_ALERTS 16

struct alerts {
    int n;
    char *json[MAX_ALERTS];
};

static void on_alert(void *userdata, const char *alert_json) {
    struct alerts *a = userdata;
    if (a->n < MAX_ALERTS) {
        a->json[a->n] = strdup(alert_json);
        CHECK(a->json[a->n] != NULL);
    }
    a->n++;
}

/* `"key":value` is in the JSON object. */
static int has(const char *json, const char *key, const char *value) {
    char want[512];
    snprintf(want, sizeof want, "\"%s\":%s", key, value);
    return strstr(json, want) != NULL;
}

static int has_hex(const char *json, const char *key, uint64_t v) {
    char value[64];
    snprintf(value, sizeof value, "\"0x%" PRIx64 "\"", v);
    return has(json, key, value);
}

static const char *find_alert(const struct alerts *a, const char *what) {
    char want[128];
    snprintf(want, sizeof want, "\"%s\"", what);
    for (int i = 0; i < a->n && i < MAX_ALERTS; i++)
        if (has(a->json[i], "what", want))
            return a->json[i];
    fprintf(stderr, "no alert %s among %d\n", what, a->n);
    exit(1);
}

static void guard(const char *vmcore) {
    xvmi_domain *dom = NULL;
    OK(xvmi_sim_open_snapshot(vmcore, &dom));
    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_domain(dom, &mem));
    uint32_t vcpus = 0;
    OK(xvmi_memory_vcpu_count(mem, &vcpus));
    CHECK(vcpus >= 1);
    /* Modern x86 CPUs run Linux with SMEP and SMAP on; the dump's emulated CPU lacked them. */
    OK(xvmi_domain_pause(dom));
    for (uint32_t v = 0; v < vcpus; v++) {
        xvmi_registers r;
        OK(xvmi_memory_registers(mem, v, &r));
        r.cr4 |= CR4_SMEP | CR4_SMAP;
        OK(xvmi_domain_set_registers(dom, v, &r));
    }
    OK(xvmi_domain_resume(dom));
    xvmi_os *os = NULL;
    OK(xvmi_os_linux_discover(mem, NULL, &os));
    xvmi_os_info info;
    OK(xvmi_os_get_info(os, &info));
    uint64_t getpid = 0, gpa = 0;
    OK(xvmi_os_symbol(os, "__x64_sys_getpid", &getpid));
    OK(xvmi_memory_translate(mem, info.kernel_cr3, getpid, &gpa));
    uint8_t text_before[16], text_after[16];
    OK(xvmi_memory_read_physical(mem, gpa, text_before, sizeof text_before));
    const uint32_t last = vcpus - 1;
    /* The vCPU the CR4 attack runs on, and PGE toggled on vCPU 0 (benign). */
    xvmi_registers rl, r0;
    OK(xvmi_memory_registers(mem, last, &rl));
    OK(xvmi_memory_registers(mem, 0, &r0));
    const uint64_t cr4 = rl.cr4;

    xvmi_policy_set *set = NULL;
    OK(xvmi_policy_set_parse("cr4; msr; kernel-text", &set));
    const char *jsonl = path_in("alerts.jsonl");
    remove(jsonl);
    xvmi_guard_options o;
    memset(&o, 0, sizeof o);
    o.run.poll_ms = 1;
    o.run.max_idle_polls = 2;
    o.vm_name = "simulated";
    o.json_lines = jsonl;
    struct alerts a = {0};
    xvmi_guard *g = NULL;
    OK(xvmi_guard_start(dom, os, set, &o, on_alert, &a, &g));
    /* The set is a description: the guard has its own policies. */
    OK(xvmi_policy_set_free(set));
    /* One session or guard per domain. */
    xvmi_session *s = NULL;
    CHECK_RC(xvmi_session_open(dom, &s), XVMI_ERR_INVALID_ARGUMENT);
    xvmi_guard *g2 = NULL;
    xvmi_policy_set *set2 = NULL;
    OK(xvmi_policy_set_parse("cr0-wp", &set2));
    CHECK_RC(xvmi_guard_start(dom, os, set2, &o, on_alert, &a, &g2), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "already open on this domain") != NULL);
    OK(xvmi_policy_set_free(set2));

    /* The scripted guest: benign work around a rootkit's three moves. */
    static const uint8_t jmp[5] = {0xe9, 0, 0, 0, 0};
    OK(xvmi_sim_script_read(dom, 0, gpa));                                   /* fine */
    OK(xvmi_sim_script_write_cr(dom, 0, XVMI_REGISTER_CR4, r0.cr4 ^ CR4_PGE)); /* fine */
    OK(xvmi_sim_script_write_cr(dom, last, XVMI_REGISTER_CR4, cr4 & ~(CR4_SMEP | CR4_SMAP)));
    OK(xvmi_sim_script_write_msr(dom, 0, MSR_LSTAR, EVIL_LSTAR));
    OK(xvmi_sim_script_write(dom, last, gpa, jmp, sizeof jmp));
    OK(xvmi_sim_script_execute(dom, 0, gpa));                                /* fine */

    xvmi_guard_stats stats;
    OK(xvmi_guard_run(g, &stats));
    CHECK(a.n == 3);
    CHECK(stats.alerts == 3 && stats.denied == 3 && stats.undelivered == 0);
    CHECK(stats.domain_paused == 0 && stats.protected_pages > 0);
    CHECK(stats.run.events >= 4); /* three attacks and the PGE toggle, at least */

    /* Each alert, by value: what the script did. */
    const char *c = find_alert(&a, "cr4_smep_smap_clear");
    CHECK(has(c, "policy", "\"cr4\"") && has(c, "action", "\"denied\""));
    CHECK(has_hex(c, "old", cr4) && has_hex(c, "new", cr4 & ~(CR4_SMEP | CR4_SMAP)));
    char v[16];
    snprintf(v, sizeof v, "%u", last);
    CHECK(has(c, "vcpu", v));
    CHECK(has(c, "schema", "1") && strstr(c, "\"name\":\"simulated\"") != NULL);
    const char *l = find_alert(&a, "msr_lstar_write");
    CHECK(has(l, "policy", "\"msr\"") && has(l, "action", "\"denied\"") && has(l, "vcpu", "0"));
    CHECK(has(l, "target", "\"msr_lstar\"") && has_hex(l, "new", EVIL_LSTAR));
    const char *t = find_alert(&a, "kernel_text_write");
    CHECK(has(t, "policy", "\"kernel-text\"") && has(t, "action", "\"denied\"") && has(t, "vcpu", v));
    CHECK(has_hex(t, "gpa", gpa) && has_hex(t, "gva", getpid));
    /* The symbol written: one whose address is __x64_sys_getpid's (the kernel has aliases). */
    char sym[256];
    const char *sp = strstr(t, "\"symbol\":\"");
    CHECK(sp != NULL);
    sp += strlen("\"symbol\":\"");
    size_t sn = strcspn(sp, "\"");
    CHECK(sn < sizeof sym && sn > 4 && memcmp(sp + sn - 4, "+0x0", 4) == 0);
    memcpy(sym, sp, sn - 4);
    sym[sn - 4] = 0;
    uint64_t at = 0;
    OK(xvmi_os_symbol(os, sym, &at));
    CHECK(at == getpid);
    for (int i = 0; i < a.n; i++) {
        char *w = strstr(a.json[i], "\"what\":\"");
        char *p = strstr(a.json[i], "\"policy\":\"");
        char *ac = strstr(a.json[i], "\"action\":\"");
        CHECK(w && p && ac);
        printf("alert %.*s %.*s %.*s\n", (int)strcspn(w + 8, "\""), w + 8,
               (int)strcspn(p + 10, "\""), p + 10, (int)strcspn(ac + 10, "\""), ac + 10);
    }

    /* Another run: nothing more happens; a stop asked before it returns at once. */
    OK(xvmi_guard_stop(g));
    OK(xvmi_guard_run(g, &stats));
    CHECK(stats.alerts == 3 && stats.run.interrupted);
    OK(xvmi_guard_teardown(g));
    OK(xvmi_guard_teardown(g));
    CHECK_RC(xvmi_guard_run(g, NULL), XVMI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "torn down") != NULL);
    OK(xvmi_guard_free(g));
    CHECK_RC(xvmi_guard_free(g), XVMI_ERR_INVALID_HANDLE);

    /* The guest's state was kept, and everything released. */
    OK(xvmi_memory_read_physical(mem, gpa, text_after, sizeof text_after));
    CHECK(memcmp(text_before, text_after, sizeof text_before) == 0);
    for (uint32_t vc = 0; vc < vcpus; vc++) {
        xvmi_registers r;
        OK(xvmi_memory_registers(mem, vc, &r));
        CHECK((r.cr4 & (CR4_SMEP | CR4_SMAP)) == (CR4_SMEP | CR4_SMAP));
        uint64_t lstar = 0;
        xvmi_result rc = xvmi_sim_msr(dom, vc, MSR_LSTAR, &lstar);
        CHECK(rc == XVMI_ERR_NOT_FOUND || (rc == XVMI_OK && lstar != EVIL_LSTAR));
    }
    xvmi_sim_state st;
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.paused_vcpus == 0 && st.vcpus_not_clean == 0 && st.monitors == 0);
    CHECK(st.extra_views == 0 && st.restrictions == 0 && st.script_left == 0);
    /* The domain is free for a session again. */
    OK(xvmi_session_open(dom, &s));
    OK(xvmi_session_free(s));

    /* The JSON-lines sink got the same alerts, one per line, in order. */
    FILE *f = fopen(jsonl, "r");
    CHECK(f != NULL);
    static char line[65536];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        CHECK(lines < a.n && strcmp(line, a.json[lines]) == 0);
        lines++;
    }
    fclose(f);
    CHECK(lines == 3);

    for (int i = 0; i < a.n && i < MAX_ALERTS; i++)
        free(a.json[i]);
    OK(xvmi_os_free(os));
    OK(xvmi_memory_free(mem));
    OK(xvmi_domain_free(dom));
    printf("guard ok\n");
}

/* A remediation that pauses without resuming: the run ends with the domain held paused (no
 * event left waiting) and the guard stopped; xvmi_guard_resume_domain releases the pause,
 * and the teardown leaves nothing behind. */
static void pause_remediation(const char *vmcore) {
    xvmi_domain *dom = NULL;
    OK(xvmi_sim_open_snapshot(vmcore, &dom));
    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_domain(dom, &mem));
    xvmi_os *os = NULL;
    OK(xvmi_os_linux_discover(mem, NULL, &os));
    xvmi_registers r;
    OK(xvmi_memory_registers(mem, 0, &r));
    xvmi_policy_set *set = NULL;
    OK(xvmi_policy_set_new(&set));
    OK(xvmi_policy_set_add(set, "cr0-wp", "deny,pause"));
    xvmi_guard_options o;
    memset(&o, 0, sizeof o);
    o.run.poll_ms = 1;
    o.run.max_idle_polls = 2;
    struct alerts a = {0};
    xvmi_guard *g = NULL;
    OK(xvmi_guard_start(dom, os, set, &o, on_alert, &a, &g));
    OK(xvmi_policy_set_free(set));
    const uint64_t wp = 1ull << 16;
    OK(xvmi_sim_script_write_cr(dom, 0, XVMI_REGISTER_CR0, r.cr0 & ~wp));
    xvmi_guard_stats stats;
    OK(xvmi_guard_run(g, &stats));
    CHECK(a.n == 1 && stats.alerts == 1 && stats.domain_paused == 1);
    CHECK(has(a.json[0], "what", "\"cr0_wp_clear\"") && has(a.json[0], "remediation", "[\"paused\"]"));
    uint32_t pauses = 0;
    OK(xvmi_sim_pause_count(dom, &pauses));
    CHECK(pauses == 1);
    xvmi_sim_state st;
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.paused_vcpus == 0); /* the event was answered; the domain is what is paused */
    OK(xvmi_guard_resume_domain(g));
    OK(xvmi_sim_pause_count(dom, &pauses));
    CHECK(pauses == 0);
    /* The guard stopped monitoring at the pause (the library's rule): a later run returns
     * at once. */
    OK(xvmi_guard_run(g, &stats));
    CHECK(a.n == 1 && stats.run.interrupted && stats.domain_paused == 0);
    OK(xvmi_guard_teardown(g));
    OK(xvmi_sim_pause_count(dom, &pauses));
    CHECK(pauses == 0);
    OK(xvmi_sim_get_state(dom, &st));
    CHECK(st.paused_vcpus == 0 && st.monitors == 0 && st.extra_views == 0 && st.restrictions == 0);
    OK(xvmi_memory_registers(mem, 0, &r));
    CHECK((r.cr0 & wp) == wp);
    OK(xvmi_guard_free(g));
    for (int i = 0; i < a.n && i < MAX_ALERTS; i++)
        free(a.json[i]);
    OK(xvmi_os_free(os));
    OK(xvmi_memory_free(mem));
    OK(xvmi_domain_free(dom));
    printf("pause ok\n");
}

/* ---- attestation ---- */

struct findings {
    int deviations, unverified, warnings;
    char first[4096];
};

static void on_finding(void *userdata, uint32_t kind, const char *json) {
    struct findings *f = userdata;
    if (kind == XVMI_ATTEST_DEVIATION) {
        if (f->deviations++ == 0)
            snprintf(f->first, sizeof f->first, "%s", json);
    } else if (kind == XVMI_ATTEST_UNVERIFIED) {
        f->unverified++;
    } else {
        CHECK(kind == XVMI_ATTEST_WARNING);
        f->warnings++;
    }
}

/* The string value of `"key":"..."` after `from`, into out. */
static void string_field(const char *from, const char *key, char *out, size_t len) {
    char want[64];
    snprintf(want, sizeof want, "\"%s\":\"", key);
    const char *p = strstr(from, want);
    CHECK(p != NULL);
    p += strlen(want);
    size_t n = strcspn(p, "\"");
    CHECK(n < len);
    memcpy(out, p, n);
    out[n] = 0;
}

static void attestation(const char *vmcore) {
    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_snapshot(vmcore, &mem));
    xvmi_os *os = NULL;
    OK(xvmi_os_linux_discover(mem, NULL, &os));
    xvmi_manifest *learned = NULL;
    OK(xvmi_manifest_learn(mem, os, &learned));
    size_t len = 0;
    CHECK_RC(xvmi_manifest_json(learned, NULL, 0, &len), XVMI_ERR_BUFFER_TOO_SMALL);
    char *json = malloc(len + 1);
    CHECK(json != NULL);
    OK(xvmi_manifest_json(learned, json, len + 1, NULL));
    CHECK(strlen(json) == len);
    OK(xvmi_manifest_free(learned));

    /* Written out and loaded back: the same guest attests clean. */
    const char *same = path_in("learned.json");
    write_file(same, json);
    xvmi_manifest *m = NULL;
    OK(xvmi_manifest_load(same, &m));
    struct findings f = {0};
    xvmi_attestation at;
    OK(xvmi_manifest_attest(m, mem, os, on_finding, &f, &at));
    CHECK(at.attested == 1 && at.deviations == 0 && f.deviations == 0);
    CHECK(at.processes_checked > 0 && at.modules_checked > 0);
    CHECK((int)at.unverified == f.unverified && (int)at.warnings == f.warnings);
    uint64_t modules = at.modules_checked;
    OK(xvmi_manifest_free(m));

    /* The first module's size, plus one. */
    char *mods = strstr(json, "\"modules\": [");
    CHECK(mods != NULL);
    char *size = strstr(mods, "\"size\": ");
    CHECK(size != NULL);
    size += strlen("\"size\": ");
    char *end = NULL;
    unsigned long long was = strtoull(size, &end, 10);
    CHECK(end > size);
    char *changed = malloc(len + 32);
    CHECK(changed != NULL);
    snprintf(changed, len + 32, "%.*s%llu%s", (int)(size - json), json, was + 1, end);
    const char *cpath = path_in("changed.json");
    write_file(cpath, changed);
    OK(xvmi_manifest_load(cpath, &m));
    memset(&f, 0, sizeof f);
    OK(xvmi_manifest_attest(m, mem, os, on_finding, &f, &at));
    CHECK(at.attested == 0 && at.deviations == 1 && f.deviations == 1);
    CHECK(at.modules_checked == modules);
    char kind[64], field[64], name[256], expected[64], seen[64];
    string_field(f.first, "kind", kind, sizeof kind);
    string_field(f.first, "field", field, sizeof field);
    string_field(strstr(f.first, "\"module\""), "name", name, sizeof name);
    string_field(f.first, "expected", expected, sizeof expected);
    string_field(f.first, "seen", seen, sizeof seen);
    CHECK(strcmp(kind, "module_mismatch") == 0 && strcmp(field, "size") == 0);
    CHECK(strtoull(expected, NULL, 10) == was + 1 && strtoull(seen, NULL, 10) == was);
    printf("deviation %s %s %s %s %s\n", kind, field, name, expected, seen);
    /* Attesting with no callback and no summary is allowed. */
    OK(xvmi_manifest_attest(m, mem, os, NULL, NULL, NULL));
    OK(xvmi_manifest_free(m));
    free(changed);
    free(json);
    OK(xvmi_os_free(os));
    OK(xvmi_memory_free(mem));
    printf("attestation ok\n");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_policy VMCORE TMPDIR\n");
        return 2;
    }
    dir = argv[2];
    bad_input(argv[1]);
    guard(argv[1]);
    pause_remediation(argv[1]);
    attestation(argv[1]);
    printf("done\n");
    return 0;
}
