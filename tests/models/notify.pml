/*
 * notify.pml - the AioContext notify protocol (notify_me / notified / the
 * eventfd), checked with SPIN.  docs/models.md explains the protocol; run
 * it with tests/models/check notify.
 *
 * Mirrors
 *   aio/async.c      vmm_aio_notify()        fast path (load notified),
 *                                            xchg(notified), load notify_me,
 *                                            eventfd write
 *                    aio_notify_accept()     read notified, xchg(false)
 *                    bh_push()/bh_take_all() the BH list (push before
 *                                            notify: link written, then the
 *                                            seq-cst CAS of the head; take:
 *                                            seq-cst load + xchg)
 *   aio/aio-posix.c  vmm_aio_poll()          fetch_add(notify_me, 2), load
 *                                            notified ("Pairs with the xchg of
 *                                            notified"), fdmon wait, fetch_sub,
 *                                            accept, aio_bh_poll, dispatch
 *                    ctx_notifier_read()     the eventfd's handler clears it
 *
 * Abstractions
 *   - Memory is sequentially consistent.  That is exact here: every store
 *     in the protocol is a seq-cst RMW (xchg, fetch_add/sub) and the loads
 *     that pair with them are seq-cst; the argument in vmm_aio_notify()'s
 *     comment is the single total order of those operations.  The missing
 *     ordering a broken variant stands for is modelled as the reorder it
 *     would allow (BROKEN_LATE_NOTIFY_ME).
 *   - A BH list is a counter of BHs pushed and not yet taken; each notifier
 *     schedules PER distinct one-shot BHs (bh_enqueue pushes at most once
 *     per PENDING flag; that flag machine is not modelled).
 *   - Timers, poll mode (try_poll_mode/poll_mode_stop) and fd handlers
 *     other than the context's own eventfd are left out: they only make
 *     the poller block less.
 *   - The poller's thread runs either vmm_aio_poll (blocking or not) or a
 *     GMainLoop iteration over the context's GSource (aio/gsource.c:
 *     aio_source_prepare sets bit 0 of notify_me and loads notified,
 *     aio_source_check clears the bit and dispatches if the eventfd is
 *     ready or notified is set, aio_source_dispatch accepts and runs BHs).
 *   - The eventfd is a level: written = readable until its handler reads it.
 *
 * Properties
 *   P1 no lost wake-up: the poller never blocks for good while a BH is
 *      scheduled.  A poller stuck in its wait with BHs left and every
 *      notifier finished is an invalid end state (SPIN's deadlock check);
 *      the poller ends once it has run every BH.
 *   P2 no needless eventfd write: a notifier writes the eventfd only while
 *      a poller may block (between its fetch_add and fetch_sub of
 *      notify_me): assertion at the write decision.
 *   P3 every BH pushed is run exactly once (final assertion).
 *   P4 the take never finds a BH whose link is not written yet: the
 *      push writes its link before the CAS that publishes it (assertion
 *      at the take; the taker does not wait for links).
 *
 * Broken variants (tests/models/check must see errors)
 *   BROKEN_LATE_NOTIFY_ME  the poller loads notified before its notify_me
 *                          increment is visible (the store-load reorder the
 *                          seq-cst pair forbids): P1 fails.
 *   BROKEN_ACCEPT_LATE     aio_notify_accept after aio_bh_poll: a notifier
 *                          that takes the fast path between the take and
 *                          the clear is lost: P1 fails.
 *   BROKEN_ALWAYS_WRITE    the notifier writes the eventfd without looking
 *                          at notify_me: P2 fails.
 *   BROKEN_GSOURCE_NO_BIT  the GSource's prepare does not set bit 0 of
 *                          notify_me: a GLib poll that blocks is not woken,
 *                          P1 fails.
 *   BROKEN_LINK_AFTER_PUBLISH  the push publishes the BH (xchg of the head)
 *                          and writes its link afterwards: a take between
 *                          the two follows an unwritten link, P4 fails.
 */

#ifndef NNOTIFIERS
#define NNOTIFIERS 2
#endif
#ifndef PER
#define PER 2
#endif
#define TOTAL (NNOTIFIERS * PER)

byte notify_me;         /* 2 per blocking poller inside its window */
bool notified;
bool eventfd;           /* readable */
byte bh_list;           /* BHs pushed, not yet taken */
byte unlinked;          /* ghost: BHs on bh_list whose link is not written */
byte ran;               /* BHs run by the poller */
bool may_block;         /* ghost: poller between fetch_add and fetch_sub */

inline aio_notify()
{
    if
    :: notified -> skip                         /* fast path */
    :: else ->
        notified = true;                        /* xchg(notified, true) */
#ifdef BROKEN_ALWAYS_WRITE
        atomic { assert(may_block); eventfd = true }
#else
        if
        :: atomic { notify_me != 0 ->           /* seq-cst load */
                    assert(may_block) };        /* P2, at the decision */
            eventfd = true                      /* event_notifier_set */
        :: else -> skip
        fi
#endif
    fi
}

active [NNOTIFIERS] proctype notifier()
{
    byte i;
    for (i : 1 .. PER) {
#ifdef BROKEN_LINK_AFTER_PUBLISH
        atomic { bh_list++; unlinked++ };       /* xchg of the head first */
        unlinked--;                             /* then the link */
#else
        bh_list++;                              /* bh_push: link, then CAS */
#endif
        aio_notify()
    }
}

inline notify_accept()
{
    if
    :: notified -> notified = false             /* read, then xchg(false) */
    :: else -> skip
    fi
}

inline bh_poll()
{
    atomic {                                    /* bh_take_all's xchg */
        assert(unlinked == 0);                  /* P4 */
        ran = ran + bh_list; bh_list = 0
    }
}

active proctype poller()
{
    bool blocking, ready, glib;

    do
    :: ran == TOTAL -> break
    :: else ->
        ready = false;
        glib = false;
        if
        :: blocking = true                      /* vmm_aio_poll(ctx, true) */
        :: blocking = false                     /* vmm_aio_poll(ctx, false) */
        :: glib = true                          /* a GMainLoop iteration */
        fi;
        if
        :: glib ->
            /* aio_source_prepare: fetch_or(notify_me, 1), seq-cst load of
             * notified (ready: GLib polls with timeout 0) */
#ifndef BROKEN_GSOURCE_NO_BIT
            atomic { notify_me = notify_me + 1; may_block = true };
#endif
            blocking = !notified;
            if
            :: blocking -> eventfd; ready = true        /* g_poll blocks */
            :: else -> ready = eventfd                  /* g_poll, timeout 0 */
            fi;
            /* aio_source_check: fetch_and(notify_me, ~1); dispatch if the
             * eventfd is ready or notified is set */
#ifndef BROKEN_GSOURCE_NO_BIT
            atomic { notify_me = notify_me - 1; may_block = false };
#endif
            if
            :: ready || notified -> skip                /* aio_source_dispatch */
            :: else -> goto next
            fi
        :: !glib && blocking ->
#ifdef BROKEN_LATE_NOTIFY_ME
            if
            :: notified -> blocking = false
            :: else -> skip
            fi;
            atomic { notify_me = notify_me + 2; may_block = true };
#else
            atomic { notify_me = notify_me + 2; may_block = true };
            if
            :: notified -> blocking = false     /* timeout = 0 */
            :: else -> skip
            fi;
#endif
            if
            :: blocking -> eventfd; ready = true        /* fdmon->wait blocks */
            :: else -> skip
            fi;
            atomic { notify_me = notify_me - 2; may_block = false }
        :: !glib && !blocking -> skip
        fi;
#ifdef BROKEN_ACCEPT_LATE
        bh_poll();
        notify_accept();
#else
        notify_accept();
        bh_poll();
#endif
        if
        :: ready -> eventfd = false             /* ctx_notifier_read */
        :: else -> skip
        fi;
next:   skip
    od;
    assert(bh_list == 0 && ran == TOTAL)        /* P3 */
}
