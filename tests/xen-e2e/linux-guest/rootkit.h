/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Stores the test rootkits (attack.c, attack2.c) make with an exception-table entry, as
 * copy_to_kernel_nofault does (which modules cannot call): when a guard refuses CR0.WP's
 * clearing, a store to read-only kernel memory faults, and the move is reported as refused
 * instead of oopsing the guest.
 */
#ifndef XV_NOFAULT_H
#define XV_NOFAULT_H
#include <linux/uaccess.h>

/* Store with an exception-table entry: 0, or -EFAULT if the store faulted. */
#define PUT_NOFAULT(dst, val, type)                                  \
	({                                                           \
		int __r = 0;                                                 \
		type __v = (val);                                            \
		pagefault_disable();                                         \
		__put_kernel_nofault((type *)(dst), &__v, type, fault_##type); \
		goto done_##type;                                            \
fault_##type:                                                        \
		__r = -EFAULT;                                               \
done_##type:                                                         \
		pagefault_enable();                                          \
		__r;                                                         \
	})

static inline int put_u16(void *dst, u16 v) { return PUT_NOFAULT(dst, v, u16); }
static inline int put_u64(void *dst, u64 v) { return PUT_NOFAULT(dst, v, u64); }
static inline int put_u8(void *dst, u8 v) { return PUT_NOFAULT(dst, v, u8); }

#endif
