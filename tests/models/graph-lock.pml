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
 *   - NMAIN coroutines (default 1) run in the main loop, on the writer's
 *     thread: they run only while the writer polls (VMM_AIO_WAIT_WHILE runs
 *     the main context's callbacks) or is outside the write lock, and while
 *     the writer waits they pass (block_graph_rdlock_slow: writer_waiting
 *     and the main context).  The main thread has its own store buffer; the
 *     writer reads its own slot through it (store forwarding).
 *   - The block-layer drain around wrlock is left out (it stops new
 *     BlockBackend requests, i.e. it only removes readers).
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
 *      forever, holding the lock across a yield): under weak fairness the
 *      write lock is always taken, LTL <> wrote.  It holds for readers in
 *      IOThreads (-DLIVE -DNMAIN=0).  With a main-loop reader (-DLIVE) it
 *      does not: the reader passes while the writer waits, and if it
 *      re-locks in the same callback as it unlocks, the writer's poll
 *      returns each time with the reader holding the lock again.  The pass
 *      exists so that callbacks of the writer's poll that the holders may
 *      be waiting for can make progress (the header allows them the read
 *      lock); the library's own readers (BlockBackend requests) are stopped
 *      by the drain before the wait, so only a caller's main-loop coroutine
 *      that loops on vmm_graph_co_rdlock can starve the writer.  The suite
 *      checks that the model still shows this limit.
 *
 * -DFALLBACK_FENCES checks the path without membarrier (old kernels, and
 * ThreadSanitizer builds): FENCE_R and FENCE_W are both smp_mb.
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

#define NTHR 3           /* IOThreads A = 0, B = 1, the main loop M = 2 */
#define M 2
#ifndef NCO
#define NCO 2           /* coroutines */
#endif
#ifndef NCYCLE
#define NCYCLE 1        /* lock/unlock cycles per coroutine */
#endif
#ifndef NWRITE
#define NWRITE 1        /* write locks (the suite also checks 2, NMAIN=0) */
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
bool in_wrlock;         /* the writer runs vmm_graph_wrlock..wrunlock */
bool poll_open;         /* the writer's aio_poll may run one main-loop callback */
#ifndef NMAIN
#define NMAIN 1           /* coroutines in the main loop */
#endif
bool queued[NCO + NMAIN];

byte holders;           /* ghost: coroutines holding the read lock */
bool writing;           /* ghost: the writer holds the lock */
bool wrote;             /* ghost: the writer took the lock (P3) */

inline drain(t) { if :: buf_full[t] -> count[t] = buf_val[t]; buf_full[t] = false :: else fi }
inline drain_all() { drain(0); drain(1); drain(2) }

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
/* A coroutine runs on thread t; on the main thread only while the writer
 * is outside its write lock or polls, and each run there is one callback
 * of the writer's poll, after which the poll returns to the writer. */
inline run_on(t)
{
    atomic { !thr_busy[t] && (t != M || !in_wrlock || poll_open) -> thr_busy[t] = true }
}
inline leave(t)
{
    atomic { thr_busy[t] = false; if :: t == M -> poll_open = false :: else fi }
}

/* block_graph_fence_reader(): a compiler barrier with membarrier (nothing
 * to model), smp_mb without (FALLBACK_FENCES: no membarrier, or
 * ThreadSanitizer builds). */
#ifdef FALLBACK_FENCES
#define FENCE_R atomic { drain(t) };
#else
#define FENCE_R
#endif

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
        FENCE_R
        if
        :: !has_writer -> atomic { assert(!writing); holders++ }
        :: else ->                      /* block_graph_rdlock_slow */
            lock_list(t);
            if
            :: !has_writer ->
                atomic { assert(!writing); holders++ };
                unlock_list()
            :: has_writer && writer_waiting && t == M ->
                /* a callback of the writer's own poll: counted, passes */
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
                :: t < M -> t = 0
                :: t < M -> t = 1
                :: t == M -> skip       /* main-loop coroutines stay there */
                fi;
                run_on(t);
                goto retry
            fi
        fi;
        leave(t);
        if                              /* move while holding the lock */
        :: t < M -> t = 1 - t
        :: skip
        fi;
        run_on(t);
        atomic { holders--; slot_add(t, -1) };     /* rdunlock: count - 1 */
        FENCE_R
#ifndef BROKEN_NO_KICK
        if
        :: writer_waiting -> wait_kick(t)
        :: else -> skip
        fi;
#endif
#ifdef LIVE
        if
        :: t == M -> goto retry         /* re-lock in the same callback */
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
    :: atomic { buf_full[2] -> drain(2) }
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
#if !defined(BROKEN_NO_MEMBARRIER) && !defined(FALLBACK_FENCES)
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
        atomic { !thr_busy[M] -> thr_busy[M] = true; in_wrlock = true };
        writer_waiting = true;
        has_writer = true;
        writer_fence();
        num_waiters++;                  /* vmm_aio_wait_begin_ (+ smp_mb) */
        do                              /* VMM_AIO_WAIT_WHILE(readers_active()) */
        :: lock_list(M);                /* reader_count() */
           sum = orphaned + foreign;
           sum = sum + count[0];
           sum = sum + count[1];
           if                          /* its own slot: store forwarding */
           :: buf_full[M] -> sum = sum + buf_val[M]
           :: else -> sum = sum + count[M]
           fi;
           unlock_list();
           assert(sum >= 0);            /* P1: (int32_t)sum >= 0 */
           if
           :: sum == 0 -> break
           :: else ->
#ifdef BROKEN_CLEAR_HAS_WRITER
               has_writer = false;
#endif
               /* aio_poll(main, true): returns after a main-loop callback
                * ran or on the kick's BH */
               atomic { thr_busy[M] = false; poll_open = true };
               atomic { (bh_pending || !poll_open) && !thr_busy[M] ->
                        bh_pending = false; poll_open = false; thr_busy[M] = true }
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
        lock_list(M);                   /* vmm_graph_wrunlock */
        has_writer = false;
        for (c : 0 .. NCO + NMAIN - 1) {
            queued[c] = false
        }
        unlock_list();
        atomic { in_wrlock = false; thr_busy[M] = false }
    }
}

init {
    atomic {
        run coroutine(0, 0);
        run coroutine(1, 1);
#if NCO > 2
        run coroutine(2, 0);
#endif
#if NMAIN > 0
        run coroutine(NCO, M);
#endif
    }
}

#ifdef LIVE
ltl writer_progress { <> wrote }
#endif
