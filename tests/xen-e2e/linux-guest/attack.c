// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The real-Xen suite's test "rootkit": on load it does what kernel rootkits do to take over a
 * kernel, and reports whether each move took effect. Under kernel-guard every move must be
 * refused and the guest must keep running. It never stays loaded (init returns -EAGAIN), so
 * the guest's init can load it again and again.
 *
 *   1. clear CR4.SMEP and CR4.SMAP (with mov to cr4 directly: native_write_cr4 would pin them);
 *   2. point MSR_LSTAR (the syscall entry) elsewhere;
 *   3. patch kernel text (clear CR0.WP, write one byte of a kernel function, restore CR0.WP).
 *
 * Each move is undone at once if it did take effect, so an unguarded guest survives too.
 * Dual-licensed (MIT or GPL-2.0): MIT like the rest of xenvmi, GPL so the kernel loads it untainted.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <asm/msr.h>
#include <asm/special_insns.h>
#include <asm/processor-flags.h>
#include "rootkit.h"

/* A kernel text function the guest does not call while this runs. */
#define TARGET ((volatile unsigned char *)&memparse)

static int __init attack_init(void)
{
	unsigned long flags, cr4, cr4_after, cr0;
	u64 lstar, lstar_after;
	unsigned char before, after;

	local_irq_save(flags);
	/* 1. SMEP/SMAP off */
	cr4 = raw_read_cr4();
	raw_write_cr4(cr4 & ~(X86_CR4_SMEP | X86_CR4_SMAP));
	cr4_after = raw_read_cr4();
	if (cr4_after != cr4)
		raw_write_cr4(cr4);
	/* 2. LSTAR */
	rdmsrl(MSR_LSTAR, lstar);
	wrmsrl(MSR_LSTAR, lstar + 0x1000);
	rdmsrl(MSR_LSTAR, lstar_after);
	if (lstar_after != lstar)
		wrmsrl(MSR_LSTAR, lstar);
	/* 3. kernel text */
	cr0 = raw_read_cr0();
	raw_write_cr0(cr0 & ~X86_CR0_WP);
	before = *TARGET;
	put_u8((void *)TARGET, before ^ 0xff);   /* faults (reported, no oops) if CR0.WP stayed set */
	after = *TARGET;
	if (after != before)
		put_u8((void *)TARGET, before);
	raw_write_cr0(cr0);
	local_irq_restore(flags);

	pr_notice("xenvmi-attack: cr4 %lx -> %lx smep_smap_kept=%d; lstar %llx -> %llx lstar_kept=%d; text %02x -> %02x text_kept=%d\n",
		cr4, cr4_after, (cr4_after & (X86_CR4_SMEP | X86_CR4_SMAP)) == (cr4 & (X86_CR4_SMEP | X86_CR4_SMAP)),
		lstar, lstar_after, lstar_after == lstar, before, after, after == before);
	return -EAGAIN;
}

module_init(attack_init);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("xenvmi real-Xen suite: rootkit moves for kernel-guard to refuse");
