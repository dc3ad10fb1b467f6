/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * What the test rootkits (attack.c, attack2.c) share. Control registers read and written with
 * a raw mov (native_write_cr4 would pin SMEP/SMAP; a guard must see the bare write). Stores
 * made with an exception-table entry, as
 * copy_to_kernel_nofault does (which modules cannot call): when a guard refuses CR0.WP's
 * clearing, a store to read-only kernel memory faults, and the move is reported as refused
 * instead of oopsing the guest.
 */
#ifndef XV_ROOTKIT_H
#define XV_ROOTKIT_H
#include <linux/uaccess.h>

static inline unsigned long raw_read_cr4(void)
{
	unsigned long v;
	asm volatile("mov %%cr4, %0" : "=r"(v));
	return v;
}

static inline void raw_write_cr4(unsigned long v)
{
	asm volatile("mov %0, %%cr4" : : "r"(v) : "memory");
}

static inline unsigned long raw_read_cr0(void)
{
	unsigned long v;
	asm volatile("mov %%cr0, %0" : "=r"(v));
	return v;
}

static inline void raw_write_cr0(unsigned long v)
{
	asm volatile("mov %0, %%cr0" : : "r"(v) : "memory");
}


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
