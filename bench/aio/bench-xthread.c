/* SPDX-License-Identifier: MIT */
/*
 * Cross-thread BH wake-up latency, one way (round trip / 2): a BH
 * scheduled from thread A into an iothread's context answers with a BH
 * scheduled back into A's context.  Measured with adaptive polling off
 * (both sides block in the kernel) and on (both sides busy-poll first),
 * against floors measured in the same run: a raw eventfd ping-pong
 * (blocking read) and a shared-memory spin ping-pong; for the polling
 * figure also a spin ping-pong right after each repetition
 * (spin-pingpong-beside, ratio = median of the per-repetition ratios), as
 * load on a shared machine changes between the phases of one run.
 * A runs on CPU 0, the other side on CPU 1.  Median of REPS repetitions.
 */
#include <sys/eventfd.h>
#include <unistd.h>

#include "../bench-util.h"
#include "vmmkit/aio.h"

#define REPS 9
/*
 * Busy-poll ceilings: QEMU's iothread default (32 us), and a latency-first
 * setting (env VMM_BENCH_POLL_NS, default 10 ms) for the "poll" figure.  On
 * a loaded 2-CPU VM a descheduled peer takes far longer than 32 us to
 * answer, so adaptive polling (rightly) shrinks to 0 there and the 32 us
 * figure falls back to the blocking path.
 */
#define POLL_NS_QEMU 32768
#define POLL_NS_DEFAULT 10000000

/* Each repetition stops after `rounds` round trips or BUDGET_NS. */
#define BUDGET_NS (300 * 1000 * 1000LL)

typedef struct PingPong {
    VmmAioContext *a;
    VmmBH *to_b, *to_a;
    long n, target;
    int64_t deadline;
    bool done;
} PingPong;

static void b_cb(void *opaque)
{
    PingPong *p = opaque;
    vmm_bh_schedule(p->to_a);
}

static void a_cb(void *opaque)
{
    PingPong *p = opaque;
    if (++p->n < p->target && ((p->n & 15) || bench_now_ns() < p->deadline)) {
        vmm_bh_schedule(p->to_b);
    } else {
        p->done = true;
    }
}

static void pin_cb(void *opaque)
{
    (void)opaque;
    bench_pin(1);
}

static bool pin_done;
static void pin_done_cb(void *opaque)
{
    (void)opaque;
    __atomic_store_n(&pin_done, true, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

static double spin_pingpong(long rounds);

/* How long the iothread may keep busy-polling after the last BH (its
 * budget is at most the ceiling, 10 ms by default), so that a floor
 * measured next does not share CPU 1 with it. */
#define SETTLE_US 30000

/* One-way ns of the BH ping-pong with the given busy-poll ceiling.  With
 * @floor_samples, each repetition is followed by a spin ping-pong of
 * @floor_rounds (after the iothread stopped polling): a floor measured
 * beside each sample, and @ratios[r] = samples[r] / floor_samples[r], a
 * ratio per repetition that survives load changing during the run. */
static double bh_pingpong(int64_t poll_ns, long rounds, double *samples,
                          double *floor_samples, long floor_rounds, double *ratios)
{
    VmmAioContextOptions o = { .size = sizeof(o), .poll_max_ns = poll_ns };
    VmmIOThread *t = vmm_iothread_new("bench-b", &o, NULL);
    PingPong p = { 0 };

    p.a = vmm_aio_context_new(&o, NULL);
    if (!t || !p.a) {
        fprintf(stderr, "cannot create contexts\n");
        exit(1);
    }
    VmmAioContext *b = vmm_iothread_get_context(t);
    vmm_bh_schedule_oneshot(b, pin_cb, NULL, "pin");
    p.to_b = vmm_bh_new(b, b_cb, &p, "to-b");
    p.to_a = vmm_bh_new(p.a, a_cb, &p, "to-a");

    for (int r = -1; r < REPS; r++) {
        p.n = 0;
        p.done = false;
        p.target = r < 0 ? rounds / 10 + 1 : rounds;   /* r = -1: warm-up */
        int64_t t0 = bench_now_ns();
        p.deadline = t0 + BUDGET_NS;
        vmm_bh_schedule(p.to_b);
        while (!p.done) {
            vmm_aio_poll(p.a, true);
        }
        if (r >= 0) {
            samples[r] = (double)(bench_now_ns() - t0) / (2.0 * p.n);
            if (floor_samples) {
                usleep(SETTLE_US);
                floor_samples[r] = spin_pingpong(floor_rounds);
                ratios[r] = samples[r] / floor_samples[r];
            }
        }
    }
    __atomic_store_n(&pin_done, false, __ATOMIC_RELEASE);
    vmm_bh_delete(p.to_b);
    vmm_bh_schedule_oneshot(b, pin_done_cb, NULL, "sync");
    VMM_AIO_WAIT_WHILE(NULL, !__atomic_load_n(&pin_done, __ATOMIC_ACQUIRE));
    vmm_iothread_destroy(t);
    vmm_bh_delete(p.to_a);
    vmm_aio_poll(p.a, false);
    vmm_aio_context_unref(p.a);
    return bench_median(samples, REPS);
}

/* ---- floors ---- */

typedef struct Floor {
    int ab, ba;                        /* eventfds */
    long rounds;
    int64_t deadline;
    long done;                         /* round trips A completed */
    long seq __attribute__((aligned(64)));
    char pad[64];
} Floor;

static void *efd_echo(void *opaque)
{
    Floor *f = opaque;
    uint64_t v;
    bench_pin(1);
    for (long i = 0; i < f->rounds; i++) {
        if (read(f->ab, &v, sizeof(v)) != sizeof(v) || write(f->ba, &v, sizeof(v)) != sizeof(v) ||
            v == 2) {
            break;
        }
    }
    return NULL;
}

static double efd_pingpong(long rounds)
{
    Floor f = { .ab = eventfd(0, 0), .ba = eventfd(0, 0), .rounds = rounds };
    pthread_t t;
    uint64_t v = 1;

    pthread_create(&t, NULL, efd_echo, &f);
    int64_t t0 = bench_now_ns();
    long i;
    for (i = 0; i < rounds; i++) {
        v = (i + 1 < rounds && bench_now_ns() < t0 + BUDGET_NS) ? 1 : 2;   /* 2: last */
        if (write(f.ab, &v, sizeof(v)) != sizeof(v) || read(f.ba, &v, sizeof(v)) != sizeof(v)) {
            break;
        }
        if (v == 2) {
            i++;
            break;
        }
    }
    double ns = (double)(bench_now_ns() - t0) / (2.0 * i);
    pthread_join(t, NULL);
    close(f.ab);
    close(f.ba);
    return ns;
}

static void *spin_echo(void *opaque)
{
    Floor *f = opaque;
    bench_pin(1);
    for (long i = 0;; i++) {
        long s;
        while ((s = __atomic_load_n(&f->seq, __ATOMIC_ACQUIRE)) != 2 * i + 1) {
            if (s < 0) {
                return NULL;       /* A is done */
            }
            __builtin_ia32_pause();
        }
        __atomic_store_n(&f->seq, 2 * i + 2, __ATOMIC_RELEASE);
    }
    return NULL;
}

static double spin_pingpong(long rounds)
{
    Floor f = { .rounds = rounds };
    pthread_t t;

    pthread_create(&t, NULL, spin_echo, &f);
    int64_t t0 = bench_now_ns();
    long i;
    for (i = 0; i < rounds && ((i & 15) || bench_now_ns() < t0 + BUDGET_NS); i++) {
        __atomic_store_n(&f.seq, 2 * i + 1, __ATOMIC_RELEASE);
        while (__atomic_load_n(&f.seq, __ATOMIC_ACQUIRE) != 2 * i + 2) {
            __builtin_ia32_pause();
        }
    }
    double ns = (double)(bench_now_ns() - t0) / (2.0 * i);
    __atomic_store_n(&f.seq, -1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    return ns;
}

int main(void)
{
    bool quick = bench_quick();
    long rounds_block = quick ? 50 : 20000;
    long rounds_spin = quick ? 200 : 200000;
    double s_nopoll[REPS], s_poll[REPS], s_poll32[REPS], s_efd[REPS], s_spin[REPS];

    bench_pin(0);
    efd_pingpong(rounds_block / 10 + 1);
    spin_pingpong(rounds_spin / 10 + 1);
    for (int r = 0; r < REPS; r++) {
        s_efd[r] = efd_pingpong(rounds_block);
        s_spin[r] = spin_pingpong(rounds_spin);
    }
    double nopoll = bh_pingpong(0, rounds_block, s_nopoll, NULL, 0, NULL);
    const char *pe = getenv("VMM_BENCH_POLL_NS");
    int64_t poll_ns = pe && *pe ? strtoll(pe, NULL, 0) : POLL_NS_DEFAULT;
    double s_floor[REPS], s_ratio[REPS];
    double poll = bh_pingpong(poll_ns, rounds_spin, s_poll, s_floor, rounds_spin / 4 + 1,
                              s_ratio);
    double poll32 = bh_pingpong(POLL_NS_QEMU, rounds_spin, s_poll32, NULL, 0, NULL);
    double efd = bench_median(s_efd, REPS), spin = bench_median(s_spin, REPS);
    double floor_beside = bench_median(s_floor, REPS), ratio_beside = bench_median(s_ratio, REPS);

    bench_print("xthread-bh-wake-poll", poll, "ns", "spin-pingpong", spin);
    /* The floor measured after each repetition; ratio: median of the
     * per-repetition ratios (not value / vs_value). */
    printf("BENCH name=xthread-bh-wake-poll value=%.2f unit=ns vs=spin-pingpong-beside "
           "vs_value=%.2f ratio=%.4f\n", poll, floor_beside, ratio_beside);
    bench_print("xthread-bh-wake-poll", poll, "ns", "eventfd-pingpong", efd);
    bench_print("xthread-bh-wake-poll32us", poll32, "ns", "spin-pingpong", spin);
    bench_print("xthread-bh-wake-poll32us", poll32, "ns", "eventfd-pingpong", efd);
    bench_print("xthread-bh-wake-nopoll", nopoll, "ns", "eventfd-pingpong", efd);
    bench_print("xthread-bh-wake-nopoll", nopoll, "ns", "spin-pingpong", spin);
    return 0;
}
