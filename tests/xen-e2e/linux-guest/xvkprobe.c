// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Test module for the real-Xen suite: arming a kprobe makes the kernel patch its own text
 * (text_poke writes an int3 into __x64_sys_getppid), which is what a hook manager must survive
 * on a page it has hooked; the probe's hits show that the guest runs the patched code, and
 * that the kprobe's int3s reach the guest. Unloading removes the probe (another text_poke)
 * and prints the count. */
#include <linux/atomic.h>
#include <linux/kprobes.h>
#include <linux/module.h>

static atomic_t hits = ATOMIC_INIT(0);

static int pre(struct kprobe *p, struct pt_regs *regs)
{
	atomic_inc(&hits);
	return 0;
}

static struct kprobe kp = {
	.symbol_name = "__x64_sys_getppid",
	.pre_handler = pre,
};

/* pr_notice: the guest boots with loglevel=6, and only levels below it reach the console. */
static int __init xvkprobe_init(void)
{
	int ret = register_kprobe(&kp);

	pr_notice("xvkprobe: armed at %pS: %d\n", kp.addr, ret);
	return ret;
}

static void __exit xvkprobe_exit(void)
{
	unregister_kprobe(&kp);
	pr_notice("xvkprobe: %d hits\n", atomic_read(&hits));
}

module_init(xvkprobe_init);
module_exit(xvkprobe_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("xenvmi real-Xen suite: a kprobe that patches kernel text");
