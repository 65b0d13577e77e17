/* SPDX-License-Identifier: MIT */
/*
 * Internal: RCU (liburcu, memb flavour) glue.
 *
 * The memb flavour needs every reader thread registered.  Library code
 * enters a read-side section with vk_rcu_read_lock(), which registers the
 * calling thread on first use and unregisters it when the thread exits, so
 * callers of the public API (vCPU threads, iothreads, foreign threads) need
 * no set-up.  Threads must not call urcu_memb_register_thread() themselves
 * as well: use vk_rcu_register_thread().
 */
#ifndef VMM_MEMORY_RCU_H
#define VMM_MEMORY_RCU_H

#include <urcu/urcu-memb.h>

void vk_rcu_register_thread(void);

/*
 * Run fn(head) after a grace period: once every read-side section that was
 * running when this was called has ended.  Any thread, wait-free apart from
 * a short mutex; callbacks run in the library's reclaimer thread, in the
 * order they were queued.  Used instead of liburcu's call_rcu(), whose
 * worker thread gets glibc's default 8 MiB stack (which a host with THP
 * "always" backs with a 2 MiB page); ours has the library's small stack
 * (util/thread.h).
 */
void vk_rcu_call(struct rcu_head *head, void (*fn)(struct rcu_head *head));

/*
 * ThreadSanitizer cannot see the memb flavour's synchronization (compiler
 * barriers on the read side, membarrier(2) and futexes in the writer), so
 * under TSan a read-side unlock "releases" a token that the code running
 * after a grace period (call_rcu callbacks, after synchronize_rcu)
 * "acquires": the happens-before edge RCU guarantees.
 */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VMM_RCU_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define VMM_RCU_TSAN 1
#endif

#ifdef VMM_RCU_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char vk_rcu_tsan_token;
#define vk_rcu_tsan_release() __tsan_release(&vk_rcu_tsan_token)
#define vk_rcu_tsan_acquire() __tsan_acquire(&vk_rcu_tsan_token)
#else
#define vk_rcu_tsan_release() do { } while (0)
#define vk_rcu_tsan_acquire() do { } while (0)
#endif

static inline void vk_rcu_read_lock(void)
{
    vk_rcu_register_thread();
    urcu_memb_read_lock();
}

static inline void vk_rcu_read_unlock(void)
{
    vk_rcu_tsan_release();
    urcu_memb_read_unlock();
}

#endif
