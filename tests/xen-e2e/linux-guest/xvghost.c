// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The real-Xen suite's second hiding "rootkit": once loaded it takes itself off the kernel's
 * module list (list_del_rcu of THIS_MODULE->list) and also deletes its sysfs kobject
 * (kobject_del of THIS_MODULE->mkobj.kobj: /sys/module/xvghost goes, and the kobject leaves
 * module_kset), the two moves of the common module-hiding rootkits. It stays loaded. Neither
 * /proc/modules nor /sys/module shows it: only its memory, a vmap area of the modules region
 * holding its struct module, is left for the cross-view (policy hidden-modules) to find.
 * It does nothing else, and is never unloaded.
 * Dual-licensed (MIT or GPL-2.0): MIT like the rest of xenvmi, GPL so the kernel loads it untainted.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kobject.h>
#include <linux/rculist.h>

static int __init xvghost_init(void)
{
	list_del_rcu(&THIS_MODULE->list);
	kobject_del(&THIS_MODULE->mkobj.kobj);
	pr_notice("xenvmi-ghost: module %s at %px unlinked from the module list and sysfs\n",
		  THIS_MODULE->name, THIS_MODULE);
	return 0;
}

module_init(xvghost_init);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("xenvmi real-Xen suite: a module that hides itself from the module list and sysfs");
