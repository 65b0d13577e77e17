/*
 * graph-lock.pml - the block graph lock (coroutine readers in any
 * AioContext, one writer in the main loop), checked with SPIN.
 * docs/models.md explains the protocol; run it with
 * tests/models/check graph-lock.
 *
 * Mirrors block/graph-lock.c (header comment: pairings (1) and (2)) and
 * block/graph-lock-int.h:
 *   block_graph_rdlock_body()    slot count + 1 (single-writer store);
 *                                block_graph_fence_reader (compiler barrier
 *                                with membarrier); load has_writer  (1)
 *   block_graph_rdlock_slow()    list_lock; has_writer gone -> hold; else
 *                                count - 1, queue, unlock, vmm_aio_wait_kick,
 *                                yield, retry from the start
 *   block_graph_rdunlock_body()  count - 1; fence_reader; load
 *                                writer_waiting -> vmm_aio_wait_kick  (2)
 *   slot_destroy()               under list_lock: orphaned += count; count = 0
 *   block_graph_slot_add_foreign() threads without a context: atomic RMW
 *   vmm_graph_wrlock()           writer_waiting = 1; has_writer = 1;
 *                                fence_writer (membarrier);
 *                                VMM_AIO_WAIT_WHILE(readers_active()) with
 *                                reader_count() under list_lock;
 *                                writer_waiting = 0
 *   vmm_graph_wrunlock()         list_lock; has_writer = 0 (release); take
 *                                the queue; wake every queued reader
 *   aio/aio-wait.c               vmm_aio_wait_begin_ (num_waiters++, smp_mb)
 *                                and vmm_aio_wait_kick (smp_mb, read
 *                                num_waiters, schedule a BH on the main
 *                                context)
 *
 * Memory model
 *   Each reader thread has an x86-TSO store buffer for its slot's count
 *   (plain single-writer stores, only a compiler barrier before the flag
 *   loads); a process drains buffers at any time; locked instructions
 *   (list_lock, the smp_mb in vmm_aio_wait_kick, the foreign counter's
 *   RMW) drain the thread's buffer; the writer's membarrier drains every
 *   buffer in one step.  Everything else is sequentially consistent (the
 *   writer's flag stores are followed by its membarrier, which is also a
 *   full barrier for itself).
 *
 * Abstractions
 *   - Two IOThreads (contexts A = 0, B = 1); coroutines are processes that
 *     run on a thread (a per-thread token: coroutines of one thread never
 *     run at once, and lock/unlock do not yield); a coroutine holding the
 *     read lock may move to the other thread and unlock there (A +1, B -1).
 *   - Context B may be destroyed at any point, with its count unbalanced:
 *     its thread then runs no context and uses the foreign counter.
 *     Recycling its slot for a new context is the same as a fresh slot at
 *     zero and is not modelled separately.
 *   - Readers running in the main loop's own poll (which pass while the
 *     writer waits) and the block-layer drain around wrlock are left out.
 *   - The main context's poll returns when a kick's BH is pending (the
 *     notify model checks that wake-up path); the kick's BH is a flag.
 *   - Counts are small signed integers (the code's uint32 wrap-around sum).
 *
 * Properties
 *   P1 mutual exclusion: no reader holds the lock while the writer does
 *      (assertions on ghost state at both ends); reader_count() never
 *      goes negative.
 *   P2 no lost wake-up, no deadlock: everything terminates (a process
 *      blocked for good is an invalid end state).
 *   P3 no starvation of the writer (with -DLIVE, readers lock and unlock
 *      forever): under weak fairness the write lock is always taken,
 *      LTL <> wrote.
 *
 * Broken variants (tests/models/check must see errors)
 *   BROKEN_NO_MEMBARRIER       fence_writer() as a plain smp_mb while readers
 *                              use a compiler barrier: P1 fails.
 *   BROKEN_NO_ORPHAN           slot_destroy() drops the count instead of
 *                              moving it to `orphaned`: P1 fails.
 *   BROKEN_NO_KICK             rdunlock does not kick the writer: P2 fails.
 *   BROKEN_CLEAR_HAS_WRITER    (with LIVE) the writer clears has_writer while
 *                              it polls (QEMU's older wrlock): P3 fails.
 */

#define NTHR 2
#ifndef NCO
#define NCO 2           /* coroutines */
#endif
#ifndef NCYCLE
#define NCYCLE 1        /* lock/unlock cycles per coroutine */
#endif
#ifndef NWRITE
#define NWRITE 2
#endif

short count[NTHR];      /* the slots' counts as memory holds them */
bool buf_full[NTHR];    /* each reader thread's store buffer */
short buf_val[NTHR];
short orphaned, foreign;
bool dead[NTHR];        /* the thread's context was destroyed */
bool thr_busy[NTHR];    /* a coroutine runs on the thread */
bool list_lock;

bool has_writer, writer_waiting;
byte num_waiters;
bool bh_pending;        /* the kick's BH on the main context */
bool queued[NCO];

byte holders;           /* ghost: coroutines holding the read lock */
bool writing;           /* ghost: the writer holds the lock */
bool wrote;             /* ghost: the writer took the lock (P3) */

inline drain(t) { if :: buf_full[t] -> count[t] = buf_val[t]; buf_full[t] = false :: else fi }
inline drain_all() { drain(0); drain(1) }

/* block_graph_slot_add(): a plain store of view + delta, or the foreign RMW. */
inline slot_add(t, delta)
{
    atomic {
        if
        :: dead[t] -> drain(t); foreign = foreign + delta
        :: else ->
            if
            :: buf_full[t] -> buf_val[t] = buf_val[t] + delta
            :: else -> buf_val[t] = count[t] + delta
            fi;
            buf_full[t] = true
        fi
    }
}

inline lock_list(t) { atomic { !list_lock -> drain(t); list_lock = true } }
inline unlock_list() { list_lock = false }
inline run_on(t) { atomic { !thr_busy[t] -> thr_busy[t] = true } }
inline leave(t) { thr_busy[t] = false }

/* vmm_aio_wait_kick(): smp_mb, then read num_waiters. */
inline wait_kick(t) { atomic { drain(t); if :: num_waiters > 0 -> bh_pending = true :: else fi } }

proctype coroutine(byte id; byte t0)
{
    byte t = t0, n = 0;
#ifdef LIVE
end_co:
#endif
    do
    :: n == NCYCLE -> break
    :: else ->
        run_on(t);
retry:
        slot_add(t, 1);                 /* rdlock: count + 1 */
        /* FENCE_R: compiler barrier */
        if
        :: !has_writer -> atomic { assert(!writing); holders++ }
        :: else ->                      /* block_graph_rdlock_slow */
            lock_list(t);
            if
            :: !has_writer ->
                atomic { assert(!writing); holders++ };
                unlock_list()
            :: else ->
                slot_add(t, -1);
                queued[id] = true;
                unlock_list();
                wait_kick(t);
                leave(t);               /* vmm_coroutine_yield */
                !queued[id];            /* woken by wrunlock */
                if                      /* in whatever thread it is now */
                :: t = 0
                :: t = 1
                fi;
                run_on(t);
                goto retry
            fi
        fi;
        leave(t);
        if                              /* move while holding the lock */
        :: t = 1 - t
        :: skip
        fi;
        run_on(t);
        atomic { holders--; slot_add(t, -1) };     /* rdunlock: count - 1 */
        /* FENCE_R: compiler barrier */
#ifndef BROKEN_NO_KICK
        if
        :: writer_waiting -> wait_kick(t)
        :: else -> skip
        fi;
#endif
        leave(t);
#ifndef LIVE
        n++
#endif
    od
}

active proctype drainer()
{
end_drain:
    do
    :: atomic { buf_full[0] -> drain(0) }
    :: atomic { buf_full[1] -> drain(1) }
    od
}

#ifndef LIVE
/* Context B dies, maybe with readers that locked in it still holding. */
active proctype destroy_b()
{
    if
    :: run_on(1);
       atomic {                         /* slot_destroy() under list_lock */
           !list_lock;
           if :: buf_full[1] -> count[1] = buf_val[1]; buf_full[1] = false :: else fi;
#ifndef BROKEN_NO_ORPHAN
           orphaned = orphaned + count[1];
#endif
           count[1] = 0;
           dead[1] = true
       };
       leave(1)
    :: skip
    fi
}
#endif

inline writer_fence()
{
#ifndef BROKEN_NO_MEMBARRIER
    atomic { drain_all() }              /* membarrier */
#else
    skip                                /* smp_mb: orders the writer's own accesses */
#endif
}

active proctype writer()
{
    byte i, c;
    short sum;
    for (i : 1 .. NWRITE) {
        writer_waiting = true;
        has_writer = true;
        writer_fence();
        num_waiters++;                  /* vmm_aio_wait_begin_ (+ smp_mb) */
        do                              /* VMM_AIO_WAIT_WHILE(readers_active()) */
        :: lock_list(0);                /* reader_count(); the writer has no buffer */
           sum = orphaned + foreign;
           sum = sum + count[0];
           sum = sum + count[1];
           unlock_list();
           assert(sum >= 0);            /* P1: (int32_t)sum >= 0 */
           if
           :: sum == 0 -> break
           :: else ->
#ifdef BROKEN_CLEAR_HAS_WRITER
               has_writer = false;
#endif
               bh_pending;              /* aio_poll(main, true) */
               bh_pending = false
#ifdef BROKEN_CLEAR_HAS_WRITER
               ; has_writer = true;
               writer_fence()
#endif
           fi
        od;
        num_waiters--;
        writer_waiting = false;
        atomic { assert(holders == 0); writing = true; wrote = true };    /* P1 */
        writing = false;
        lock_list(0);                   /* vmm_graph_wrunlock */
        has_writer = false;
        for (c : 0 .. NCO - 1) {
            queued[c] = false
        }
        unlock_list()
    }
}

init {
    atomic {
        run coroutine(0, 0);
        run coroutine(1, 1);
#if NCO > 2
        run coroutine(2, 0);
#endif
    }
}

#ifdef LIVE
ltl writer_progress { <> wrote }
#endif
