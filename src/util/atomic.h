/* SPDX-License-Identifier: MIT */
/*
 * Internal: atomics and barriers, as thin wrappers over the GCC/clang
 * __atomic builtins (which ThreadSanitizer understands).
 *
 * Rule: every barrier in the library carries a comment that names the
 * barrier (or atomic) it pairs with.
 */
#ifndef VMM_UTIL_ATOMIC_H
#define VMM_UTIL_ATOMIC_H

#define vk_atomic_read(p)        __atomic_load_n(p, __ATOMIC_RELAXED)
#define vk_atomic_set(p, v)      __atomic_store_n(p, v, __ATOMIC_RELAXED)
#define vk_atomic_load_acquire(p)   __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define vk_atomic_store_release(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)
/* Sequentially consistent load and store: for the Dekker-style pairs
 * (store one flag, then load the other) where each side needs both. */
#define vk_atomic_load_seq_cst(p)     __atomic_load_n(p, __ATOMIC_SEQ_CST)
#define vk_atomic_store_seq_cst(p, v) __atomic_store_n(p, v, __ATOMIC_SEQ_CST)
/* A counter only read for statistics: atomic, no ordering. */
#define vk_atomic_stat_add(p, v)   ((void)__atomic_fetch_add(p, v, __ATOMIC_RELAXED))

/* Read-modify-write operations are sequentially consistent (full barriers). */
#define vk_atomic_xchg(p, v)       __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST)
#define vk_atomic_fetch_add(p, v)  __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST)
#define vk_atomic_fetch_sub(p, v)  __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST)
#define vk_atomic_fetch_or(p, v)   __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST)
#define vk_atomic_fetch_and(p, v)  __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST)
#define vk_atomic_add_fetch(p, v)  __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST)
#define vk_atomic_sub_fetch(p, v)  __atomic_sub_fetch(p, v, __ATOMIC_SEQ_CST)
#define vk_atomic_inc(p)           ((void)vk_atomic_fetch_add(p, 1))
#define vk_atomic_dec(p)           ((void)vk_atomic_fetch_sub(p, 1))
/* Test-and-set for a lock: acquire only (the unlock is a release store). */
#define vk_atomic_xchg_acquire(p, v) __atomic_exchange_n(p, v, __ATOMIC_ACQUIRE)

/* Returns the value found; the swap happened iff it equals @old. */
#define vk_atomic_cmpxchg(p, old, new) ({                                  \
    __typeof__(*(p)) _old = (old);                                          \
    (void)__atomic_compare_exchange_n(p, &_old, new, false,                 \
                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);  \
    _old;                                                                   \
})

/*
 * Ask for the cache line of @p in a writable state before a load of it
 * that an RMW on the same line follows: one coherence transfer instead of
 * a shared read and then an upgrade.  Only a hint (no ordering, no fault;
 * x86 orders PREFETCHW with nothing, so it may also overlap a locked
 * instruction that comes after it).  CPUs without PRFCHW execute it as a
 * NOP.
 */
#if defined(__x86_64__) || defined(__i386__)
#define vk_prefetchw(p) __asm__ volatile("prefetchw %0" : : "m"(*(const char *)(p)))
#else
#define vk_prefetchw(p) __builtin_prefetch(p, 1)
#endif

#define vk_smp_mb()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define vk_smp_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#define vk_smp_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
/* Compiler-only barrier: orders against a signal handler on this thread. */
#define vk_barrier() __atomic_signal_fence(__ATOMIC_SEQ_CST)

#endif
