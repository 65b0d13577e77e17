/* SPDX-License-Identifier: MIT */
/* Interrupts handed to the device lock's holder; see irq-handoff.h. */
#include "machine/irq-handoff.h"
#include "util/atomic.h"

#include <assert.h>

void irq_handoff_init(IrqHandoff *h, IrqHandoffDeliver *deliver, void *opaque)
{
    h->deliver = deliver;
    h->opaque = opaque;
    h->pending = 0;
}

void irq_handoff_raise(IrqHandoff *h, VmmMutex *lock, unsigned src)
{
    assert(src < IRQ_HANDOFF_MAX_SOURCES);
    vk_atomic_fetch_or(&h->pending, 1ull << src);
    /* [R] pairs with [U] in irq_handoff_unlock (header comment). */
    vk_smp_mb();
    if (vk_mutex_trylock(lock)) {
        irq_handoff_unlock(h, lock);
    }
}

/* Deliver every pending source; @lock held. */
static void deliver_all(IrqHandoff *h, VmmMutex *lock) VMM_REQUIRES(*lock)
{
    (void)lock;                 /* names the capability for the analysis */
    uint64_t p = vk_atomic_xchg(&h->pending, 0);
    while (p) {
        unsigned src = (unsigned)__builtin_ctzll(p);
        p &= p - 1;
        h->deliver(h->opaque, src);
    }
}

void irq_handoff_unlock(IrqHandoff *h, VmmMutex *lock)
{
    for (;;) {
        if (vk_atomic_read(&h->pending)) {
            deliver_all(h, lock);
        }
        vk_mutex_unlock(lock);
        /* [U] pairs with [R] in irq_handoff_raise (header comment). */
        vk_smp_mb();
        if (!vk_atomic_load_seq_cst(&h->pending)) {
            return;
        }
        if (!vk_mutex_trylock(lock)) {
            return;     /* the new holder delivers before it releases */
        }
    }
}
