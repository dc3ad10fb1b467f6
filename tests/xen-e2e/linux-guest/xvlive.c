// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The real-Xen suite's module-text target: a module that stays loaded and, every 8 s (a
 * delayed work item), patches a byte of its own text, as a rootkit rewrites its hooks, through
 * a writable alias of the page (vmap: the text itself is mapped read-only), reads it back
 * through the text's own address, and reports whether the write took effect. The patched
 * function is never called, and a write that took effect is undone at once. Under a guard
 * with module-text protection, the write must be refused (text_kept=1).
 * Dual-licensed (MIT or GPL-2.0): MIT like the rest of xenvmi, GPL so the kernel loads it untainted.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
#include <asm/pgtable_types.h>
#include "rootkit.h"

/* Never called: only its bytes matter. */
static noinline int xvlive_target(int x)
{
	return x * 7 + 3;
}

static struct delayed_work work;
static unsigned int round;

static void xvlive_patch(struct work_struct *w)
{
	unsigned long va = (unsigned long)xvlive_target + 4;
	phys_addr_t pa = slow_virt_to_phys((void *)va);
	struct page *page = pfn_to_page(pa >> PAGE_SHIFT);
	u8 *alias = vmap(&page, 1, VM_MAP, PAGE_KERNEL);
	u8 before, after;
	int stored = 0;

	before = *(volatile u8 *)va;
	if (alias) {
		u8 *p = alias + (va & ~PAGE_MASK);

		stored = !put_u8(p, before + 1);
		after = *(volatile u8 *)va;
		if (after != before)
			put_u8(p, before);
		vunmap(alias);
	} else {
		after = before;
	}
	pr_notice("xenvmi-live: round %u text %px %02x -> %02x text_kept=%d stored=%d\n",
		  ++round, (void *)va, before, after, alias && after == before, stored);
	schedule_delayed_work(&work, 8 * HZ);
}

static int __init xvlive_init(void)
{
	INIT_DELAYED_WORK(&work, xvlive_patch);
	schedule_delayed_work(&work, 8 * HZ);
	return 0;
}

static void __exit xvlive_exit(void)
{
	cancel_delayed_work_sync(&work);
}

module_init(xvlive_init);
module_exit(xvlive_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("xenvmi real-Xen suite: a loaded module that patches its own text");
