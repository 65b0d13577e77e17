/* SPDX-License-Identifier: MIT */
/*
 * vmm_co_sleep_ns(): a timer in the context the coroutine runs in wakes
 * it; vmm_co_sleep_wake() from any thread ends the sleep early.  Both
 * claim the sleeper with an exchange of w->co, so exactly one of them
 * wakes it (and a wake after the sleep ended does nothing).
 */
#include "coroutine-int.h"
#include "util/atomic.h"
#include "util/log.h"

typedef struct SleepImpl {
    struct VmmCoroutine *co;    /* atomic: the sleeper until claimed */
    void *unused_;
} SleepImpl;

_Static_assert(sizeof(SleepImpl) <= sizeof(VmmCoSleep), "VmmCoSleep too small");

static void sleep_claim_and_wake(SleepImpl *s, const char *who, const void *where)
{
    /* Pairs with the store-release in vmm_co_sleep_ns(). */
    struct VmmCoroutine *co = vk_atomic_xchg(&s->co, NULL);

    if (co) {
        co_wake_by(co, who, where);
    }
}

static void sleep_timer_cb(void *opaque)
{
    sleep_claim_and_wake(opaque, "vmm_co_sleep_ns timer", NULL);
}

void vmm_co_sleep_ns(VmmCoSleep *w, int64_t ns)
{
    struct VmmCoroutine *self = co_current();
    SleepImpl local = { 0 };
    SleepImpl *s = w ? (SleepImpl *)w : &local;
    VmmTimer *t;

    if (!self) {
        VMM_MISUSE("called outside a coroutine");
        return;
    }
    t = vmm_timer_new(vmm_aio_context_current(), sleep_timer_cb, s);
    if (!t) {
        vk_error("vmm_co_sleep_ns: no timer (out of memory); not sleeping");
        return;
    }
    /* Pairs with the exchange in sleep_claim_and_wake(). */
    vk_atomic_store_release(&s->co, self);
    vmm_timer_mod(t, vmm_clock_ns() + (ns > 0 ? ns : 0));
    vmm_coroutine_yield();
    /* We run in our context again (wakers schedule us there), where the
     * timer lives: its callback cannot be running now. */
    vmm_timer_free(t);
}

void vmm_co_sleep_wake(VmmCoSleep *w)
{
    if (!w) {
        VMM_MISUSE("NULL sleep handle");
        return;
    }
    sleep_claim_and_wake((SleepImpl *)w, "vmm_co_sleep_wake",
                         __builtin_return_address(0));
}
