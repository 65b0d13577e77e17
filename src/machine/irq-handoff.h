/* SPDX-License-Identifier: MIT */
/*
 * Internal: interrupts raised from any thread - including one that already
 * holds the device lock, inside a register write - delivered under that
 * lock without ever waiting for it.
 *
 * A raiser sets its source's bit in @pending and tries the lock.  When the
 * lock is free it takes it, delivers everything pending and releases it.
 * When it is busy - held by another thread, or by the raiser itself further
 * up its stack (a register write whose device raised synchronously) - the
 * holder delivers before it releases: every holder leaves through
 * irq_handoff_unlock(), which delivers, unlocks and looks again.  So an
 * interrupt raised inside a locked register write is delivered by that
 * thread, with the lock still held, before the write returns to the guest;
 * and a raiser never blocks behind a register write.
 *
 * Barriers (all sequentially consistent):
 *   [R] raise:  fetch_or(pending); fence; trylock (reads the lock word)
 *   [U] unlock: unlock (writes the lock word); fence; load(pending)
 * [R] pairs with [U]: of the two fences, whichever comes first in the
 * total order makes the other side see its write - the raiser's trylock
 * sees the lock released (and delivers itself), or the holder's load after
 * unlocking sees the bit (and takes the lock again to deliver it).  A bit
 * is never left pending with the lock free.
 */
#ifndef VMM_MACHINE_IRQ_HANDOFF_H
#define VMM_MACHINE_IRQ_HANDOFF_H

#include <stdint.h>

#include "util/lock.h"

#define IRQ_HANDOFF_MAX_SOURCES 64

/* Deliver source @src's interrupts.  Called with the handoff's lock held
 * (the annotation cannot ride on a function pointer: implementations
 * assert the capability themselves). */
typedef void IrqHandoffDeliver(void *opaque, unsigned src);

typedef struct IrqHandoff {
    IrqHandoffDeliver *deliver;
    void *opaque;
    uint64_t pending;           /* atomic: bit n = source n raised */
} IrqHandoff;

void irq_handoff_init(IrqHandoff *h, IrqHandoffDeliver *deliver, void *opaque);

/* Source @src (< IRQ_HANDOFF_MAX_SOURCES) raised an interrupt.  Any
 * thread, whether or not it holds @lock (always the same lock for @h);
 * never waits for the lock. */
void irq_handoff_raise(IrqHandoff *h, VmmMutex *lock, unsigned src);

/* Leave @lock: deliver what is pending, release it, and deliver again
 * whatever a raiser left while it was held.  The only way to release @lock. */
void irq_handoff_unlock(IrqHandoff *h, VmmMutex *lock) VMM_RELEASE(*lock);

#endif
