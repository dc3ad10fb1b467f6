/* Windows through the C ABI: synthetic Windows guests laid out by the real ntoskrnl ISFs
 * (tests/support/windows_guest.rs builds them; tests/c_abi.rs writes them to files):
 * ntoskrnl under KASLR, processes, each process's DLLs, drivers, and the owner of each
 * vCPU's CR3.
 *
 * usage: test_windows IMAGE PROFILE CR0 CR4 EFER LSTAR CR3_0 RIP_0 CS_0 CR3_1 RIP_1 CS_1
 *          a raw image, opened as a simulated domain with these two vCPUs (numbers in hex)
 *        test_windows DUMP PROFILE
 *          a Windows crash dump, opened as a snapshot: discovery from its header
 * (PROFILE is an ISF file or a directory of them.) Prints what it found; tests/c_abi.rs
 * compares it with the spec the guest was built from. */
#include "print_os.h"

static uint64_t hex(const char *s) { return strtoull(s, NULL, 16); }

/* A simulated domain over a raw image with two vCPUs; its memory handle. */
static xvmi_memory *open_sim(char **argv, xvmi_domain **dom) {
    FILE *f = fopen(argv[1], "rb");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long size = ftell(f);
    CHECK(size > 0);
    rewind(f);
    uint8_t *image = malloc((size_t)size);
    CHECK(image != NULL);
    CHECK(fread(image, 1, (size_t)size, f) == (size_t)size);
    fclose(f);

    xvmi_registers regs[2];
    memset(regs, 0, sizeof regs);
    for (int i = 0; i < 2; i++) {
        regs[i].cr0 = hex(argv[3]);
        regs[i].cr4 = hex(argv[4]);
        regs[i].efer = hex(argv[5]);
        regs[i].msr_lstar = hex(argv[6]);
        regs[i].cr3 = hex(argv[7 + 3 * i]);
        regs[i].rip = hex(argv[8 + 3 * i]);
        regs[i].cs_sel = (uint16_t)hex(argv[9 + 3 * i]);
    }
    OK(xvmi_sim_open_buffer(image, (size_t)size, regs, 2, dom));
    free(image); /* the domain has its own copy */
    xvmi_memory *mem = NULL;
    OK(xvmi_memory_open_domain(*dom, &mem));
    return mem;
}

int main(int argc, char **argv) {
    if (argc != 13 && argc != 3) {
        fprintf(stderr, "usage: test_windows IMAGE PROFILE CR0 CR4 EFER LSTAR "
                        "CR3_0 RIP_0 CS_0 CR3_1 RIP_1 CS_1 | test_windows DUMP PROFILE\n");
        return 2;
    }
    xvmi_domain *dom = NULL;
    xvmi_memory *mem = NULL;
    if (argc == 13)
        mem = open_sim(argv, &dom);
    else
        OK(xvmi_memory_open_snapshot(argv[1], &mem));

    CHECK_RC(xvmi_os_windows_discover(mem, NULL, NULL, NULL), XVMI_ERR_NULL_POINTER);
    xvmi_os *os = NULL;
    OK(xvmi_os_windows_discover(mem, argv[2], NULL, &os));
    xvmi_os_info info;
    OK(xvmi_os_get_info(os, &info));
    CHECK(info.kind == XVMI_OS_WINDOWS);
    printf("kernel_base 0x%" PRIx64 "\n", info.kernel_base);
    printf("image_size 0x%" PRIx64 "\n", info.image_size);
    printf("build %u\n", info.build);
    char release[32], banner[512];
    OK(xvmi_os_release(os, release, sizeof release, NULL));
    printf("release %s\n", release);
    OK(xvmi_os_banner(os, banner, sizeof banner, NULL));
    printf("banner %s\n", banner);
    uint64_t head = 0;
    OK(xvmi_os_symbol(os, "PsActiveProcessHead", &head));
    printf("PsActiveProcessHead 0x%" PRIx64 "\n", head);
    /* The kernel is where its physical address says. */
    uint8_t mz[2];
    OK(xvmi_memory_read_physical(mem, info.kernel_base_pa, mz, 2));
    CHECK(mz[0] == 'M' && mz[1] == 'Z');

    struct walk w = {os, mem};
    OK(xvmi_os_processes(os, mem, print_process, &w));
    OK(xvmi_os_modules(os, mem, print_driver, NULL));
    uint32_t vcpus = 0;
    OK(xvmi_memory_vcpu_count(mem, &vcpus));
    for (uint32_t i = 0; i < vcpus; i++) {
        xvmi_registers r;
        OK(xvmi_memory_registers(mem, i, &r));
        xvmi_process p;
        xvmi_result rc = xvmi_os_process_for_cr3(os, mem, r.cr3, &p);
        if (rc == XVMI_OK)
            printf("owner %u %" PRIu64 " %s\n", i, p.pid, p.name);
        else
            printf("owner %u none\n", i);
    }
    /* A process record with a corrupted boolean is refused, not trusted. */
    xvmi_process bogus;
    memset(&bogus, 0, sizeof bogus);
    memset(&bogus.has_dtb, 7, 1);
    CHECK_RC(xvmi_os_process_modules(os, mem, &bogus, print_dll, &bogus),
             XVMI_ERR_INVALID_ARGUMENT);

    /* The Linux walker does not know Windows; the Linux discovery says so. */
    xvmi_os *linux = NULL;
    CHECK_RC(xvmi_os_linux_discover(mem, NULL, &linux), XVMI_ERR_OS_NOT_FOUND);

    xvmi_os_free(os);
    xvmi_memory_free(mem);
    xvmi_domain_free(dom);
    printf("done\n");
    return 0;
}
