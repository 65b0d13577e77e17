/*
 * quiesce.pml - the device quiesce protocol (requests queued in order,
 * delivered to a quiesced device by one thread at a time, then resume),
 * checked with SPIN.  docs/models.md explains the protocol; run it with
 * tests/models/check quiesce.
 *
 * Mirrors src/device/device.c (header comment: the state machine and
 * "whoever changes something ... calls device_run()"):
 *   device_request()       queue under dev->lock, then device_run()
 *   device_run()           become the deliverer unless one runs (it then
 *                          re-checks before it stops), loop device_step()
 *   device_step()          RUNNING + queue: QUIESCING, quiesce callback with
 *                          the lock dropped, 0 -> QUIESCED ("r == 0 &&
 *                          dev->state == DEV_QUIESCING"), -EBUSY -> leave it
 *                          to vmm_device_quiesced(); QUIESCING: stop;
 *                          QUIESCED: pop one request, count a pause, deliver
 *                          it and its done with the lock dropped; queue empty
 *                          and no pause: RUNNING, resume callback
 *   vmm_device_quiesced()  QUIESCING -> QUIESCED (0) or RUNNING with every
 *                          queued request failed (error), then delivery
 *   vmm_device_unpause()   drop a pause, device_run()
 *   device_dma_allowed() the DMA rule (state != QUIESCED)
 *
 * The completion's contract modelled is the fixed one: when
 * vmm_device_quiesced(dev, 0) returns, the requests queued before it was
 * called have been delivered and the device was resumed after them
 * (unless a pause holds it quiesced), on every interleaving.  A completion
 * that arrives while the deliverer is still inside the quiesce callback
 * (the callback decided on -EBUSY and let its worker finish before it
 * returned) waits for the callback to return and takes the deliverer's
 * role over: the deliverer sees the waiting completion at the top of its
 * loop and stops.  Returning at once from device_run() in that case ("that
 * thread re-checks"), with the device quiesced and nothing delivered, is
 * the variant BROKEN_NO_HANDOFF.
 *
 * Abstractions
 *   - dev->lock is a mutex (a flag taken atomically); the completion's
 *     wait for the deliverer is a condition wait on "nobody delivers".
 *     Memory is sequentially consistent: every shared access is under
 *     dev->lock except the DMA check's load-acquire of the state, paired
 *     with set_state()'s store-release.
 *   - Requests: a reset and a migration-state change from one thread, a
 *     pause (then an unpause once its done ran) from another.  DMA-map
 *     changes are delivered like the reset.  Callbacks make no requests.
 *   - The device: its quiesce callback answers 0 (it stopped DMA) or -EBUSY
 *     (its worker thread stops DMA later and calls vmm_device_quiesced, with
 *     0 or, at most once, an error).  The worker does DMA while the device
 *     is active (between resume and quiescing).  Once at most, the quiesce
 *     callback itself calls vmm_device_quiesced(dev, 0) and then returns
 *     -EBUSY (quiesced_self).
 *   - "The completion's thread is the deliverer" is the nested call's
 *     position in the model; the code needs a check of the deliverer's
 *     identity for it (or must refuse the call).
 *
 * Properties
 *   P1 device callbacks (quiesce, reset/map/migration, resume) never run
 *      two at once; reset/map/migration only while quiesced.
 *   P2 no DMA while quiesced: the worker's DMA passes the DMA rule.
 *   P3 the completion's return means the same on every interleaving
 *      (assertion at its return, see above).
 *   P4 every request's done runs exactly once; in the end the device is
 *      running and idle (final assertions; no deadlock: invalid end state).
 *
 * Broken variants (tests/models/check must see errors)
 *   BROKEN_NO_HANDOFF     vmm_device_quiesced() ends with device_run(), which
 *                         returns when another thread delivers: P3 fails.
 *   BROKEN_EBUSY_QUIESCED the deliverer treats -EBUSY like 0: the first error
 *                         found is the completion finding the device already
 *                         quiesced; the same search (pan -c0 -e) also finds
 *                         callbacks run while the device does DMA (P1) and
 *                         DMA while quiesced (P2).
 *   BROKEN_SELF_WAIT      the completion waits for the deliverer also when it
 *                         is called by the quiesce callback itself (the
 *                         deliverer's own thread): P4 fails (deadlock).
 *   BROKEN_NO_RECHECK     the deliverer stops right after the resume callback
 *                         without looking at the queue again (a request made
 *                         meanwhile found it delivering): P4 fails.
 */

#define RUNNING   0
#define QUIESCING 1
#define QUIESCED  2

#define R_OK    0
#define R_BUSY  1

#define K_RESET 0
#define K_MIG   1
#define K_PAUSE 2
#define NREQ    3

byte state = RUNNING;
bool dlock;
bool delivering;
bool handoff;           /* a completion waits to take the deliverer's role */
byte pauses;
byte q[NREQ];           /* FIFO of request kinds (one request per kind) */
byte qhead, qtail;

/* device side */
bool dev_active = true; /* the device may DMA from its own threads */
bool armed;             /* quiesce answered -EBUSY: the worker must complete */
bool erred;             /* one completion with an error at most */
bool self_done;         /* one completion from inside the callback at most */

/* ghosts */
byte in_cb;             /* device callbacks running */
byte done_ran[NREQ];
byte enq, ndone;        /* requests queued / whose done ran */
byte resumed_at;        /* ndone when the device last ran again */
byte ctarget;           /* enq when the completion was called */
bool finished;          /* every request and the unpause made */
bool pause_failed;      /* the pause's done reported an error */
byte nended;            /* requesters finished */
bool dma_done;          /* the worker did its DMA of this active period */

inline lock()   { atomic { !dlock -> dlock = true } }
inline unlock() { dlock = false }

/* The last unlock of a delivery attempt.  In a completion (chk) it is where
 * vmm_device_quiesced() is done with the device: P3, what its return means:
 * the requests queued before the call have been delivered and the device
 * was resumed after them, unless a pause holds it. */
inline unlock_last(chk)
{
    atomic {
        if
        :: chk -> assert(ndone >= ctarget && (resumed_at >= ctarget || pauses > 0))
        :: else -> skip
        fi;
        dlock = false
    }
}

inline done(k)  { atomic { done_ran[k]++; ndone++ } }
inline done_failed(k) { atomic { done_ran[k]++; ndone++; if :: k == K_PAUSE -> pause_failed = true :: else fi } }

/* vmm_device_quiesced(dev, 0) called by the quiesce callback itself, on
 * the deliverer's thread, before it returns -EBUSY (outside the header's
 * contract, which asks for the call after the return, but it must not
 * hang): the device is marked quiesced and the deliverer, once the
 * callback has returned, delivers.  Waiting for the deliverer here would
 * wait for this very thread (BROKEN_SELF_WAIT). */
inline quiesced_self()
{
    lock();
    assert(state == QUIESCING);
    state = QUIESCED;
#ifdef BROKEN_SELF_WAIT
    do
    :: delivering ->
        handoff = true;
        unlock();
        atomic { !delivering && !dlock -> dlock = true }
    :: else -> break
    od;
    handoff = false;
#endif
    unlock()
}

inline quiesce_cb(r)
{
    atomic { assert(in_cb == 0); in_cb++ };         /* P1 */
    if
    :: dev_active = false; r = R_OK                 /* stopped now */
    :: armed = true; r = R_BUSY                     /* worker completes later */
    :: !self_done ->                                /* completes in the callback */
        self_done = true;
        dev_active = false;
        quiesced_self();
        r = R_BUSY
    fi;
    in_cb--
}

inline deliver_cb(k)
{
    atomic { assert(in_cb == 0 && state == QUIESCED && !dev_active); in_cb++ };  /* P1 */
    in_cb--
}

inline resume_cb()
{
    atomic { assert(in_cb == 0); in_cb++ };
    atomic { dev_active = true; dma_done = false; resumed_at = ndone };
    in_cb--
}

/* The deliverer's loop (device_run's while (device_step())), lock held,
 * delivering set; ends with both released. */
inline deliver_loop(r, k, chk)
{
    do
#ifndef BROKEN_NO_HANDOFF
    :: handoff -> break                             /* a completion takes over */
    :: else ->
#else
    :: true ->
#endif
        if
        :: state == RUNNING ->
            if
            :: qhead == qtail -> break
            :: else ->
                state = QUIESCING;
                unlock();
                quiesce_cb(r);
                lock();
                if
                :: r == R_OK && state == QUIESCING -> state = QUIESCED
#ifdef BROKEN_EBUSY_QUIESCED
                :: r == R_BUSY && state == QUIESCING -> state = QUIESCED
#endif
                :: else -> skip                     /* -EBUSY: the completion moves on */
                fi
            fi
        :: state == QUIESCING -> break              /* vmm_device_quiesced() will run */
        :: state == QUIESCED ->
            if
            :: qhead != qtail ->
                k = q[qhead % NREQ];
                qhead++;
                if
                :: k == K_PAUSE -> pauses++
                :: else -> skip
                fi;
                unlock();
                if
                :: k != K_PAUSE -> deliver_cb(k)
                :: else -> skip
                fi;
                done(k);
                lock()
            :: qhead == qtail && pauses > 0 -> break
            :: qhead == qtail && pauses == 0 ->
                state = RUNNING;
                unlock();
                resume_cb();
                lock()
#ifdef BROKEN_NO_RECHECK
                ; break
#endif
            fi
        fi
    od;
    delivering = false;
    unlock_last(chk)
}

inline device_run(r, k, chk)
{
    lock();
    if
    :: delivering -> unlock_last(chk)               /* that thread re-checks */
    :: else -> delivering = true; deliver_loop(r, k, chk)
    fi
}

inline request(kind, r, k)
{
    lock();
    q[qtail % NREQ] = kind;
    qtail++;
    enq++;
    unlock();
    device_run(r, k, 0)
}

proctype requester_main()
{
    byte r, k;
    request(K_RESET, r, k);
    request(K_MIG, r, k);
    nended++
}

proctype requester_pause()
{
    byte r, k;
    request(K_PAUSE, r, k);
    done_ran[K_PAUSE] > 0;
    if
    :: !pause_failed ->                             /* paused: unpause */
        lock();
        assert(pauses > 0);
        pauses--;
        unlock();
        device_run(r, k, 0)
    :: else -> skip                                 /* the quiesce failed */
    fi;
    nended++
}

/* vmm_device_quiesced(dev, err) from the device's worker. */
inline quiesced(err, r, k)
{
    byte i, e;
    lock();
    assert(state == QUIESCING);     /* only after the callback chose -EBUSY */
    ctarget = enq;
    if
    :: err ->                       /* fail everything queued; keep running */
        state = RUNNING;
        i = qhead;                  /* take_all() */
        e = qtail;
        qhead = qtail;
        unlock();
        do                          /* fail_all() */
        :: i != e -> done_failed(q[i % NREQ]); i++
        :: else -> break
        od;
        resumed_at = ndone;
        device_run(r, k, 1)
    :: else ->
        state = QUIESCED;
#ifdef BROKEN_NO_HANDOFF
        unlock();
        device_run(r, k, 1)
#else
        do                          /* wait for the deliverer to hand over */
        :: delivering ->
            handoff = true;
            unlock();
            atomic { !delivering && !dlock -> dlock = true }
        :: else -> break
        od;
        handoff = false;
        delivering = true;
        deliver_loop(r, k, 1)
#endif
    fi
}

proctype worker()
{
    byte r, k;
    do
    :: armed ->
        armed = false;
        if
        :: dev_active = false;          /* in-flight DMA finished */
           quiesced(0, r, k)
        :: !erred ->
           erred = true;
           quiesced(1, r, k)
        fi
    :: atomic { dev_active && !dma_done ->          /* a DMA through */
                assert(state != QUIESCED);          /* vmm_device_dma_*: P2 */
                dma_done = true }
    :: finished && !armed -> break
    od
}

init {
    byte i;
    atomic {
        run requester_main();
        run requester_pause();
        run worker()
    };
    nended == 2;                    /* the requesters are done */
    finished = true;
    _nr_pr == 1;                    /* and the worker */
    /* P4 */
    for (i : 0 .. NREQ - 1) {
        assert(done_ran[i] == 1)
    }
    assert(state == RUNNING && !delivering && pauses == 0 && qhead == qtail && dev_active)
}
