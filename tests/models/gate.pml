/*
 * gate.pml - the accel-blocker gate (ioctl begin/end against inhibit),
 * checked with SPIN.  docs/models.md explains the protocol; run it with
 * tests/models/check gate.
 *
 * Mirrors accel/accel-blocker.c (header comment: pairs D1, D2, D3) and
 * accel/accel-internal.h:
 *   owner       accel_owner_begin()   store count; owner_fence (compiler
 *                                         barrier: fence_free); load inhibited
 *                                         (D1) -> accel_slot_begin_slow()
 *                                         (store-release 0, event_set,
 *                                         gate_wait_open, count = 1, smp_mb,
 *                                         re-check)
 *               accel_owner_end()     store-release count; owner_fence;
 *                                         load inhibited (D2) -> event_set
 *   shared      shared_begin/shared_end() atomic inc/dec of shared_count,
 *                                         load inhibited (D3); back off,
 *                                         event_set, gate_wait_open, retry
 *   non-owner   vmm_accel_cpu_ioctl_begin/end() on a slot the calling thread
 *                                         does not own (a slot never bound)
 *   inhibitor   vmm_accel_ioctl_inhibit_begin()  store inhibited;
 *                                         inhibitor_fence (membarrier);
 *                                         gate_wait_idle: gate_event_reset
 *                                         (xchg), gate_busy (scan, kick each
 *                                         busy slot), wait for the event
 *               vmm_accel_ioctl_inhibit_end()  store-release inhibited = 0,
 *                                         wake all
 *               accel_gate_event_set() xchg(event, 1) (full barrier)
 *
 * The fixed protocol for a vCPU ioctl made on a slot by a thread that does
 * not own it (a slot created with a kick but never bound): it is counted
 * on the slot (an atomic RMW, a full barrier, as on the shared path), so
 * the scan sees the slot busy and kicks it.  Counting it in the gate's
 * shared_count instead (shared_begin, the path vmm_accel_cpu_ioctl_begin
 * takes when slot != tls_slot), which the scan cannot kick, is the
 * variant BROKEN_UNBOUND_SHARED.
 *
 * Memory model
 *   SPIN is sequentially consistent; the gate's owner fast path is not
 *   (its stores are plain and its only fence is a compiler barrier).  So
 *   the owner thread has an x86-TSO store buffer for its slot's count: its
 *   stores go to the buffer, a separate process drains it at any time, and
 *   a full barrier (smp_mb, or the xchg in event_set) drains it at once.
 *   The owner reads its own count from its local copy (single writer).
 *   membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) runs a full barrier on
 *   every running thread of the process: modelled as draining every store
 *   buffer in one step of the inhibitor, so each owner's program order is
 *   cut at its current point (the argument of the D1-D3 comment).  Every
 *   other access in the protocol is an atomic RMW or sits behind one, and
 *   stays sequentially consistent.  Release/acquire annotations are
 *   free on x86 and have no effect on the interleavings modelled.
 *
 * Abstractions
 *   - One gate, one inhibitor (inhibits are serialised by gate->lock; the
 *     inhibitor's own bypass, nesting and depth counters are left out).
 *   - Slot 0 is bound to its vCPU thread (owner fast path), slot 1 never
 *     bound (its vCPU thread takes the non-owner path); one more thread
 *     issues a VM ioctl on the shared path.  No nesting: a nested begin is
 *     counted already and never waits, so the inhibitor only sees a larger
 *     count (a nested shared ioctl doubled the state space for nothing).
 *   - A vCPU ioctl is KVM_RUN: the guest either exits by itself or halts
 *     until kicked.  A kick is sticky (KVM's immediate_exit / pending
 *     signal): a kick that arrives before the vCPU enters KVM_RUN makes
 *     that KVM_RUN return at once.  A VM ioctl always ends by itself.
 *   - futex waits are blocking guards on the level they wait for.
 *
 * Properties
 *   P1 inhibit_begin returns only when no section runs, and no section
 *      starts while inhibited: assertions at both ends (ghost counters).
 *   P2 every running section is kicked and nothing deadlocks: a thread
 *      blocked for good anywhere but in a halted guest (or the drainer) is
 *      an invalid end state.  Every loop is bounded by the threads'
 *      iteration counts, so inhibit_begin terminates.
 *
 * -DFALLBACK_FENCES checks the path without membarrier (old kernels,
 * VMM_ACCEL_NO_MEMBARRIER=1): owner_fence and inhibitor_fence are smp_mb.
 *
 * Broken variants (tests/models/check must see errors)
 *   BROKEN_NO_MEMBARRIER   inhibitor_fence() as a plain smp_mb while owners
 *                          stay fence-free: D1 fails, P1 is violated.
 *   BROKEN_UNBOUND_SHARED  a slot's vCPU ioctl from a thread that does not
 *                          own it counts in shared_count (shared_begin):
 *                          its halted guest is never kicked, P2 fails.
 *   BROKEN_NO_KICK         gate_busy() does not kick: P2 fails.
 *   BROKEN_RESET_AFTER_SCAN the inhibitor resets the event after its scan,
 *                          not before: an ioctl that ends in between is
 *                          lost, P2 fails.
 */

#ifndef NRUN
#define NRUN 2          /* KVM_RUNs per vCPU thread */
#endif
#ifndef NINHIBIT
#define NINHIBIT 2
#endif

byte count[2];          /* the slots' counts as memory holds them */
byte xcount[2];         /* non-owner vCPU ioctls counted on the slot (fix) */
byte shared_count;
bool inhibited;
bool event;
bool kicked[2];

bool buf_full;          /* the owner's store buffer (slot 0's count) */
byte buf_val;

byte running;           /* ghost: ioctls between begin and end */
bool inhibiting;        /* ghost: between inhibit_begin and inhibit_end */

inline drain() { if :: buf_full -> count[0] = buf_val; buf_full = false :: else fi }
inline owner_store(v) { atomic { buf_full = true; buf_val = v } }

/* accel_gate_event_set(): xchg is a full barrier. */
inline event_set() { atomic { drain(); event = true } }

/* accel_owner_fence(): a compiler barrier with membarrier (fence_free:
 * nothing to model), smp_mb without (FALLBACK_FENCES: no membarrier,
 * VMM_ACCEL_NO_MEMBARRIER=1). */
#ifdef FALLBACK_FENCES
#define OWNER_FENCE atomic { drain() };
#else
#define OWNER_FENCE
#endif

inline section(s)
{
    atomic { assert(!inhibiting); running++ };          /* P1 */
    if
    :: skip                                             /* the guest exits */
    :: s < 2 ->                                         /* the guest halts */
end_halt:
        kicked[s]
    fi;
    atomic { if :: s < 2 -> kicked[s] = false :: else fi; running-- }
}

/* Slot 0's owner thread: the fence-free path. */
active proctype vcpu_owner()
{
    byte i;
    for (i : 1 .. NRUN) {
        owner_store(1);                 /* accel_owner_begin: count = 1 */
        OWNER_FENCE
        if
        :: inhibited ->                 /* D1 -> accel_slot_begin_slow */
            do
            :: owner_store(0);          /* store-release count = 0 */
               event_set();
               !inhibited;              /* gate_wait_open */
               atomic { owner_store(1); drain() };     /* count = 1; smp_mb */
               if
               :: inhibited -> skip
               :: else -> break
               fi
            od
        :: else -> skip
        fi;
        section(0);
        owner_store(0);                 /* accel_owner_end */
        OWNER_FENCE
        if
        :: inhibited -> event_set()     /* D2 */
        :: else -> skip
        fi
    }
}

/* The store buffer drains at any time. */
active proctype drainer()
{
end_drain:
    do
    :: atomic { buf_full -> drain() }
    od
}

/* shared_begin/shared_end on a counter; the counter is an atomic RMW. */
inline counted_begin(ctr)
{
    ctr++;
    do
    :: inhibited ->
        ctr--;
        event_set();
        !inhibited;
        ctr++
    :: else -> break
    od
}

inline counted_end(ctr)
{
    ctr--;
    if
    :: inhibited -> event_set()
    :: else -> skip
    fi
}

/* Slot 1's vCPU thread: the slot was never bound. */
active proctype vcpu_unbound()
{
    byte i;
    for (i : 1 .. NRUN) {
#ifdef BROKEN_UNBOUND_SHARED
        counted_begin(shared_count);
        section(1);
        counted_end(shared_count)
#else
        counted_begin(xcount[1]);
        section(1);
        counted_end(xcount[1])
#endif
    }
}

/* A thread issuing a VM ioctl (shared path). */
active proctype vm_ioctl()
{
    counted_begin(shared_count);
    section(2);
    counted_end(shared_count)
}

active proctype inhibitor()
{
    byte i, s;
    bool busy;
    for (i : 1 .. NINHIBIT) {
        inhibited = true;
#if !defined(BROKEN_NO_MEMBARRIER) && !defined(FALLBACK_FENCES)
        atomic { drain() };             /* inhibitor_fence: membarrier */
#endif                                  /* else smp_mb: the inhibitor's own */
        do                              /* gate_wait_idle */
        ::
#ifndef BROKEN_RESET_AFTER_SCAN
           event = false;               /* gate_event_reset: xchg */
#endif
           busy = (shared_count != 0);  /* gate_busy */
           for (s : 0 .. 1) {
               if
               :: count[s] + xcount[s] != 0 ->
                   busy = true;
#ifndef BROKEN_NO_KICK
                   kicked[s] = true     /* s->kick() */
#endif
               :: else -> skip
               fi
           }
#ifdef BROKEN_RESET_AFTER_SCAN
           event = false;
#endif
           if
           :: !busy -> break
           :: else -> event             /* futex wait on the event */
           fi
        od;
        atomic { assert(running == 0); inhibiting = true };     /* P1 */
        /* the inhibitor's update */
        inhibiting = false;
        inhibited = false               /* inhibit_end: store-release, wake all */
    }
}
