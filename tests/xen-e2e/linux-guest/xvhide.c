// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The real-Xen suite's hiding "rootkit": once loaded it takes itself off the kernel's module
 * list (list_del_rcu of THIS_MODULE->list, the classic move), so that /proc/modules, lsmod and
 * a walk of `modules` no longer show it, and stays loaded. Its sysfs kobject
 * (/sys/module/xvhide) stays in module_kset: the cross-view check (policy hidden-modules)
 * must find it there. It does nothing else.
 * Dual-licensed (MIT or GPL-2.0): MIT like the rest of xenvmi, GPL so the kernel loads it untainted.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/rculist.h>

static int __init xvhide_init(void)
{
	list_del_rcu(&THIS_MODULE->list);
	pr_notice("xenvmi-hide: module %s at %px unlinked from the module list\n",
		  THIS_MODULE->name, THIS_MODULE);
	return 0;
}

module_init(xvhide_init);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("xenvmi real-Xen suite: a module that hides itself from the module list");
