/* SPDX-License-Identifier: MIT */
/* Coroutine core: create/enter/yield/terminate, nesting, thread moves,
 * thread-locals, FPU control words, guard pages, the pool. */
#include <errno.h>
#include <fcntl.h>
#include <fenv.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "aio/coroutine/coroutine-int.h"
#include "vmmkit/coroutine.h"

#if VMM_CO_TSAN
/* Tests that fork are left out under TSan (it loses fibers in children). */
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

/* ---- basic lifecycle ---------------------------------------------------- */

typedef struct Steps {
    int step;
    VmmCoroutine *self_seen;
    bool in_co_seen;
    bool entered_seen;
} Steps;

static void co_steps(void *opaque)
{
    Steps *s = opaque;

    s->self_seen = vmm_coroutine_self();
    s->in_co_seen = vmm_in_coroutine();
    s->entered_seen = vmm_coroutine_entered(s->self_seen);
    s->step = 1;
    vmm_coroutine_yield();
    s->step = 2;
    vmm_coroutine_yield();
    s->step = 3;
}

static void test_lifecycle(void **state)
{
    (void)state;
    Steps s = { 0 };
    int err = 0;
    VmmCoroutine *co = vmm_coroutine_create(co_steps, &s, &err);

    assert_non_null(co);
    assert_false(vmm_in_coroutine());
    assert_null(vmm_coroutine_self());
    assert_false(vmm_coroutine_entered(co));
    vmm_coroutine_enter(co);
    assert_int_equal(s.step, 1);
    assert_ptr_equal(s.self_seen, co);
    assert_true(s.in_co_seen);
    assert_true(s.entered_seen);
    assert_false(vmm_coroutine_entered(co));    /* yielded */
    vmm_coroutine_enter(co);
    assert_int_equal(s.step, 2);
    vmm_coroutine_enter(co);                    /* terminates, freed */
    assert_int_equal(s.step, 3);
    assert_null(vmm_coroutine_self());
}

/* ---- nesting ------------------------------------------------------------ */

typedef struct Nest {
    int depth;
    int max;
    char trace[64];
    int n;
} Nest;

static void co_nest(void *opaque)
{
    Nest *ns = opaque;
    int my = ns->depth++;

    ns->trace[ns->n++] = (char)('a' + my);
    if (ns->depth < ns->max) {
        bool leaf_child = ns->depth == ns->max - 1;
        VmmCoroutine *child = vmm_coroutine_create(co_nest, ns, NULL);

        vmm_coroutine_enter(child);
        /* Back here when the child yields (the leaf does) or ends. */
        ns->trace[ns->n++] = (char)('A' + my);
        assert_true(vmm_coroutine_entered(vmm_coroutine_self()));
        if (leaf_child) {
            assert_false(vmm_coroutine_entered(child));
            vmm_coroutine_enter(child);
        }
    } else {
        vmm_coroutine_yield();
    }
    ns->trace[ns->n++] = (char)('0' + my);
}

static void test_nesting(void **state)
{
    (void)state;
    Nest ns = { .max = 4 };
    VmmCoroutine *co = vmm_coroutine_create(co_nest, &ns, NULL);

    vmm_coroutine_enter(co);
    ns.trace[ns.n] = 0;
    /* a enters b enters c enters d; d yields to c (not to the thread); c
     * re-enters d, d ends, c ends, then b and a end in turn. */
    assert_string_equal(ns.trace, "abcdC32B1A0");
}

/* ---- callee-saved registers and FPU control words ----------------------- */

/* -Dcoroutine_fpu_ctl=false: the assembly switch shares the FPU words. */
#if defined(VMM_CO_BACKEND_ASM) && !VMM_CO_FPU_CTL
#define FPU_SWITCHED 0
#else
#define FPU_SWITCHED 1
#endif

static void co_clobber(void *opaque)
{
    (void)opaque;
    /* Use many registers across a yield so the switch must restore ours. */
    volatile unsigned long sink = 0;
    unsigned long a = sink + 11, b = sink + 13, c = sink + 17, d = sink + 19;
    unsigned long e = sink + 23, f = sink + 29, g = sink + 31, h = sink + 37;

    fesetround(FE_UPWARD);
    vmm_coroutine_yield();
    /* We get our own rounding mode back, whatever the caller did. */
    if (FPU_SWITCHED) {
        assert_int_equal(fegetround(), FE_UPWARD);
    }
    sink = a * b + c * d + e * f + g * h;
    assert_int_equal(sink, 11 * 13 + 17 * 19 + 23 * 29 + 31 * 37);
}

static VMM_NOINLINE unsigned long mix(unsigned long x, unsigned long y)
{
    return x * 31 + y;
}

static void test_registers_and_fpu(void **state)
{
    (void)state;
    VmmCoroutine *co = vmm_coroutine_create(co_clobber, NULL, NULL);
    unsigned long r[8];

    for (int i = 0; i < 8; i++) {
        r[i] = mix((unsigned long)i, (unsigned long)rand());
    }
    unsigned long a = r[0], b = r[1], c = r[2], d = r[3];
    unsigned long e = r[4], f = r[5], g = r[6], h = r[7];
    fesetround(FE_TONEAREST);
    vmm_coroutine_enter(co);
    /* The coroutine's FE_UPWARD must not leak into us. */
    if (FPU_SWITCHED) {
        assert_int_equal(fegetround(), FE_TONEAREST);
    }
    fesetround(FE_TOWARDZERO);
    vmm_coroutine_enter(co);
    if (FPU_SWITCHED) {
        assert_int_equal(fegetround(), FE_TOWARDZERO);
    }
    fesetround(FE_TONEAREST);
    assert_true(a == r[0] && b == r[1] && c == r[2] && d == r[3]);
    assert_true(e == r[4] && f == r[5] && g == r[6] && h == r[7]);
}

/*
 * Both FPU control words, set independently on each side, over a ping-pong
 * that goes through every combination of equal and different words in
 * both directions: the switch may skip reloading a word only when the
 * incoming side's saved word equals the outgoing side's current one.
 */
typedef struct FpuWords {
    uint32_t a, b;      /* x86-64: MXCSR control bits, x87 CW; aarch64: FPCR, 0 */
} FpuWords;

#if defined(__x86_64__)
static const FpuWords fpu_patterns[4] = {
    { 0x1F80, 0x037F },         /* the ABI's initial state */
    { 0x3F80, 0x037F },         /* MXCSR rounds down, CW as initial */
    { 0x1F80, 0x0E7F },         /* MXCSR initial, CW: double precision, toward 0 */
    { 0xDFC0, 0x0B7F },         /* MXCSR: FTZ, DAZ, up; CW: rounds up */
};

static void fpu_get(FpuWords *w)
{
    uint32_t mx;
    uint16_t cw;

    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mx), "=m"(cw));
    w->a = mx & ~0x3Fu;         /* the status flags are not preserved */
    w->b = cw;
}

static void fpu_set(const FpuWords *w)
{
    uint32_t mx = w->a;
    uint16_t cw = (uint16_t)w->b;

    __asm__ volatile("ldmxcsr %0\n\tfldcw %1" : : "m"(mx), "m"(cw));
}
#elif defined(__aarch64__)
static const FpuWords fpu_patterns[4] = {
    { 0, 0 },                   /* round to nearest */
    { 2u << 22, 0 },            /* toward minus infinity */
    { 1u << 24, 0 },            /* flush to zero */
    { (3u << 22) | (1u << 25), 0 },     /* toward zero, default NaN */
};

static void fpu_get(FpuWords *w)
{
    uint64_t v;

    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    w->a = (uint32_t)v;
    w->b = 0;
}

static void fpu_set(const FpuWords *w)
{
    uint64_t v = w->a;

    __asm__ volatile("msr fpcr, %0" : : "r"(v));
}
#else
static const FpuWords fpu_patterns[4] = {
    { FE_TONEAREST, 0 }, { FE_DOWNWARD, 0 }, { FE_TOWARDZERO, 0 }, { FE_UPWARD, 0 },
};

static void fpu_get(FpuWords *w)
{
    w->a = (uint32_t)fegetround();
    w->b = 0;
}

static void fpu_set(const FpuWords *w)
{
    fesetround((int)w->a);
}
#endif

enum { FPU_ROUNDS = 64 };     /* 4 times all 16 pairs */

static void assert_fpu_words(const FpuWords *want)
{
    FpuWords now;

    fpu_get(&now);
    assert_int_equal(now.a, want->a);
    assert_int_equal(now.b, want->b);
}

/*
 * Round i: the thread sets pattern (i + 1) % 4 and enters; the coroutine
 * checks it still has its own words, sets pattern (i / 4) % 4 (the same
 * for 4 rounds) and yields; the thread checks its words.  Over any 16
 * rounds the pairs (outgoing, incoming) take all 16 values on enter
 * (thread (i + 1) % 4, coroutine ((i - 1) / 4) % 4) and on yield.
 */
static void co_fpu_pingpong(void *opaque)
{
    FpuWords *mine = opaque;    /* what this coroutine last set */

    for (int i = 0; i < FPU_ROUNDS; i++) {
        assert_fpu_words(mine);
        *mine = fpu_patterns[(i / 4) % 4];
        fpu_set(mine);
        vmm_coroutine_yield();
    }
    assert_fpu_words(mine);
}

static void test_fpu_words_pingpong(void **state)
{
    (void)state;
    FpuWords initial, mine;
    VmmCoroutine *co;

    if (!FPU_SWITCHED) {
        skip();
    }
    fpu_get(&initial);
    /* Every coroutine starts with the ABI's initial words (pattern 0), also
     * one from the pool whose previous user changed them (as
     * test_registers_and_fpu's did), while the thread has pattern 1. */
    mine = fpu_patterns[0];
    co = vmm_coroutine_create(co_fpu_pingpong, &mine, NULL);
    assert_non_null(co);
    for (int i = 0; i <= FPU_ROUNDS; i++) {
        const FpuWords *t = &fpu_patterns[(i + 1) % 4];

        fpu_set(t);
        vmm_coroutine_enter(co);
        assert_fpu_words(t);
    }
    fpu_set(&initial);
}

#if defined(__x86_64__) && defined(VMM_CO_BACKEND_ASM) && FPU_SWITCHED
static uint32_t mxcsr_full(void)
{
    uint32_t mx;

    __asm__ volatile("stmxcsr %0" : "=m"(mx));
    return mx;
}

static volatile double fp_a = 1.0, fp_b = 3.0, fp_q;

static void co_inexact_yield(void *opaque)
{
    uint32_t *seen = opaque;

    for (int i = 0; i < 4; i++) {
        seen[i] = mxcsr_full();
        fp_q = fp_a / fp_b;             /* inexact: sets PE */
        vmm_coroutine_yield();
    }
}
#endif

/*
 * The switch never changes MXCSR between sides with equal controls, even
 * when their sticky status flags differ (a thread that has done inexact
 * arithmetic, a coroutine that has done none): after the first switch the
 * whole word, flags included, is the same on both sides at every switch,
 * as the cost of ldmxcsr on Intel cores requires (switch-x86_64.S).
 */
#if defined(__x86_64__) && defined(VMM_CO_BACKEND_ASM) && FPU_SWITCHED
static void test_mxcsr_unchanged_by_switches(void **state)
{
    (void)state;
    uint32_t seen[4] = { 0 }, mine[4];
    uint32_t initial = mxcsr_full();
    uint32_t clear = 0x1F80;                    /* the ABI's controls, no flags */
    VmmCoroutine *co;

    __asm__ volatile("ldmxcsr %0" : : "m"(clear));     /* flags clear */
    co = vmm_coroutine_create(co_inexact_yield, seen, NULL);
    assert_non_null(co);
    for (int i = 0; i < 4; i++) {
        fp_q = fp_b / fp_a + fp_a / fp_b;       /* the thread: inexact too */
        vmm_coroutine_enter(co);
        mine[i] = mxcsr_full();
    }
    vmm_coroutine_enter(co);                    /* ends */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(seen[i], mine[0]);     /* what each side gets */
        assert_int_equal(mine[i], mine[0]);
    }
    assert_int_equal(mine[0] & 0x3F, 0x3F);
    assert_int_equal(mine[0] & ~0x3Fu, clear);  /* the controls are kept */
    __asm__ volatile("ldmxcsr %0" : : "m"(initial));
}
#endif

/* ---- moving between threads, thread-locals ------------------------------ */

VMM_CO_TLS_STATIC(int, thread_tag)

typedef struct Move {
    int seen[3];
    VmmCoroutine *self[3];
    VmmCoroutine *co;
} Move;

static void co_move(void *opaque)
{
    Move *m = opaque;

    for (int i = 0; i < 3; i++) {
        m->seen[i] = thread_tag_get();
        m->self[i] = vmm_coroutine_self();
        thread_tag_set(thread_tag_get() * 10);
        if (i < 2) {
            vmm_coroutine_yield();
        }
    }
}

static void *thread_enter(void *opaque)
{
    Move *m = opaque;

    thread_tag_set(2);
    vmm_coroutine_enter(m->co);
    assert_int_equal(thread_tag_get(), 20);
    assert_null(vmm_coroutine_self());
    return NULL;
}

static void test_thread_move_tls(void **state)
{
    (void)state;
    Move m = { { 0 } };
    pthread_t th;

    m.co = vmm_coroutine_create(co_move, &m, NULL);
    thread_tag_set(1);
    vmm_coroutine_enter(m.co);                  /* runs on this thread */
    pthread_create(&th, NULL, thread_enter, &m);  /* resumed on another */
    pthread_join(th, NULL);
    thread_tag_set(3);
    vmm_coroutine_enter(m.co);                  /* and back here */
    /* Each resume saw the thread-local of the thread it ran on. */
    assert_int_equal(m.seen[0], 1);
    assert_int_equal(m.seen[1], 2);
    assert_int_equal(m.seen[2], 3);
    assert_int_equal(thread_tag_get(), 30);
    for (int i = 0; i < 3; i++) {
        assert_ptr_equal(m.self[i], m.co);
    }
}

/* ---- wake-up queue order ------------------------------------------------- */

static char order[16];
static int order_n;

static void co_mark(void *opaque)
{
    order[order_n++] = (char)(uintptr_t)opaque;
}

static void co_waker(void *opaque)
{
    (void)opaque;
    co_queue_wakeup(vmm_coroutine_create(co_mark, (void *)(uintptr_t)'x', NULL));
    co_queue_wakeup(vmm_coroutine_create(co_mark, (void *)(uintptr_t)'y', NULL));
    order[order_n++] = 'w';
    vmm_coroutine_yield();
    order[order_n++] = 'W';
}

static void test_wakeup_after_yield(void **state)
{
    (void)state;
    VmmCoroutine *co = vmm_coroutine_create(co_waker, NULL, NULL);

    order_n = 0;
    vmm_coroutine_enter(co);
    order[order_n] = 0;
    /* Woken coroutines run after the waker yields, in wake order, before
     * enter returns. */
    assert_string_equal(order, "wxy");
    vmm_coroutine_enter(co);
    order[order_n] = 0;
    assert_string_equal(order, "wxyW");
}

/* ---- misuse is reported ------------------------------------------------- */

static void co_reenter_self(void *opaque)
{
    (void)opaque;
    vmm_coroutine_enter(vmm_coroutine_self());
}

static char misuse_msg[512];

static void capture_log(VmmLogLevel level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    snprintf(misuse_msg, sizeof(misuse_msg), "%s", msg);
    /* Debug builds abort right after logging: leave the message where the
     * parent can read it. */
    fprintf(stderr, "%s\n", msg);
}

/* Runs @fn in a child; returns its stderr and whether it aborted. */
static bool run_child(void (*fn)(void), char *out, size_t outsz, bool *aborted)
{
    int pfd[2];
    pid_t pid;
    int status;
    ssize_t n, got = 0;

    if (VMM_CO_TSAN) {
        /* ThreadSanitizer loses track of fibers in a forked child. */
        skip();
    }
    if (pipe(pfd) < 0) {
        return false;
    }
    pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        signal(SIGABRT, SIG_DFL);
        vmm_set_log_handler(capture_log, NULL, VMM_LOG_ERROR);
        fn();
        _exit(0);
    }
    close(pfd[1]);
    while ((n = read(pfd[0], out + got, outsz - 1 - (size_t)got)) > 0) {
        got += n;
    }
    out[got] = 0;
    close(pfd[0]);
    waitpid(pid, &status, 0);
    *aborted = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    return true;
}

static void child_reenter(void)
{
    vmm_coroutine_enter(vmm_coroutine_create(co_reenter_self, NULL, NULL));
}

static void test_misuse_reenter(void **state)
{
    (void)state;
    char out[4096];
    bool aborted;

    assert_true(run_child(child_reenter, out, sizeof(out), &aborted));
    assert_non_null(strstr(out, "re-entered recursively"));
    assert_int_equal(aborted, VMM_DEBUG_CHECKS);
}

static void child_null_entry(void)
{
    int err = 0;

    /* Every build logs and returns the error the header promises. */
    if (vmm_coroutine_create(NULL, NULL, &err) == NULL && err == -EINVAL) {
        _exit(0);
    }
    _exit(3);
}

static void test_misuse_null_entry(void **state)
{
    (void)state;
    char out[4096];
    bool aborted;

    assert_true(run_child(child_null_entry, out, sizeof(out), &aborted));
    assert_non_null(strstr(out, "NULL entry"));
    assert_false(aborted);      /* a caller mistake with an errno: no abort */
}

static void child_yield_outside(void)
{
    vmm_coroutine_yield();
}

static void test_misuse_yield_outside(void **state)
{
    (void)state;
    char out[4096];
    bool aborted;

    assert_true(run_child(child_yield_outside, out, sizeof(out), &aborted));
    assert_non_null(strstr(out, "yield outside a coroutine"));
    assert_int_equal(aborted, VMM_DEBUG_CHECKS);
}

/* ---- guard page ----------------------------------------------------------- */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winfinite-recursion"
static VMM_NOINLINE int recurse(volatile char *prev, int n)
{
    volatile char buf[1024];

    buf[0] = (char)n;
    buf[1023] = prev ? prev[0] : 0;
    return recurse(buf, n + 1) + buf[1];
}
#pragma GCC diagnostic pop

static void co_overflow(void *opaque)
{
    (void)opaque;
    recurse(NULL, 0);
}

static void child_overflow(void)
{
    vmm_coroutine_enter(vmm_coroutine_create(co_overflow, NULL, NULL));
}

static void test_guard_page(void **state)
{
    (void)state;
    int status;
    pid_t pid;

    if (VMM_CO_TSAN) {
        skip();     /* see run_child() */
    }
    pid = fork();

    if (pid == 0) {
        /* Silence the sanitizer report, if any. */
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        child_overflow();
        _exit(0);
    }
    assert_true(pid > 0);
    waitpid(pid, &status, 0);
    /* Overflowing the stack faults on the guard page (or the sanitizer
     * reports the overflow) instead of scribbling over other memory. */
    assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0));
    if (WIFSIGNALED(status)) {
        assert_int_equal(WTERMSIG(status), SIGSEGV);
    }
}

/* ---- the pool ------------------------------------------------------------- */

static void co_nothing(void *opaque)
{
    (void)opaque;
}

static void co_yield_once(void *opaque)
{
    (void)opaque;
    vmm_coroutine_yield();
}

static void check_invariant(void)
{
    VmmCoPoolStats st;

    co_pool_stats(&st);
    assert_true(st.local_count <= st.local_credit);
    assert_true(st.budget_free >= 0);
    assert_true(st.budget_free + st.local_credit + st.global_count <= st.budget_total);
}

static void test_pool_reuse(void **state)
{
    (void)state;
    VmmCoPoolStats a, b;
    VmmCoroutine *first, *co;

    co_pool_reset_budget(65530);
    first = vmm_coroutine_create(co_nothing, NULL, NULL);
    vmm_coroutine_enter(first);
    co_pool_stats(&a);
    for (int i = 0; i < 1000; i++) {
        co = vmm_coroutine_create(co_nothing, NULL, NULL);
        /* A warm pool hands back the coroutine that just ended. */
        assert_ptr_equal(co, first);
        vmm_coroutine_enter(co);
    }
    co_pool_stats(&b);
    assert_int_equal(a.live_stacks, b.live_stacks);
    check_invariant();
}

static void test_pool_budget_formula(void **state)
{
    (void)state;
    assert_int_equal(co_pool_budget_for(65530), 4096);
    assert_int_equal(co_pool_budget_for(10000), 1250);
    assert_int_equal(co_pool_budget_for(5000), 0);
    assert_int_equal(co_pool_budget_for(100), 0);
}

static void test_pool_capped(void **state)
{
    (void)state;
    enum { N = 300, BUDGET = 40 };
    VmmCoroutine *cos[N];
    VmmCoPoolStats st, before;

    /* Pretend vm.max_map_count is tiny: pools may keep only BUDGET. */
    co_pool_reset_budget(5000 + 4 * BUDGET);
    co_pool_stats(&before);
    assert_int_equal(before.budget_total, BUDGET);
    for (int i = 0; i < N; i++) {
        cos[i] = vmm_coroutine_create(co_yield_once, NULL, NULL);
        assert_non_null(cos[i]);
        vmm_coroutine_enter(cos[i]);
    }
    co_pool_stats(&st);
    assert_true(st.live_stacks >= before.live_stacks + N - BUDGET);
    for (int i = 0; i < N; i++) {
        vmm_coroutine_enter(cos[i]);        /* terminate */
    }
    co_pool_stats(&st);
    /* Only BUDGET coroutines stay mapped in pools; the rest were unmapped. */
    assert_true(st.local_count + st.global_count <= BUDGET);
    assert_true(st.live_stacks <= before.live_stacks - before.local_count
                - before.global_count + BUDGET);
    check_invariant();
    co_pool_reset_budget(65530);
}

static void *thread_pool_user(void *opaque)
{
    (void)opaque;
    VmmCoroutine *cos[64];

    for (int i = 0; i < 64; i++) {
        cos[i] = vmm_coroutine_create(co_yield_once, NULL, NULL);
        vmm_coroutine_enter(cos[i]);
    }
    for (int i = 0; i < 64; i++) {
        vmm_coroutine_enter(cos[i]);
    }
    check_invariant();
    return NULL;    /* thread exit hands the thread pool to the shared one */
}

static void test_pool_thread_exit(void **state)
{
    (void)state;
    pthread_t th;
    VmmCoPoolStats st;

    co_pool_reset_budget(65530);
    pthread_create(&th, NULL, thread_pool_user, NULL);
    pthread_join(th, NULL);
    co_pool_stats(&st);
    assert_int_equal(st.global_count, 64);
    /* The exiting thread returned its unused credits. */
    assert_int_equal(st.budget_free + st.global_count + st.local_credit, st.budget_total);
    /* Our empty pool now takes from the shared one. */
    VmmCoroutine *co = vmm_coroutine_create(co_nothing, NULL, NULL);
    vmm_coroutine_enter(co);
    co_pool_stats(&st);
    assert_true(st.global_count < 64);
    check_invariant();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_registers_and_fpu),
        cmocka_unit_test(test_fpu_words_pingpong),
#if defined(__x86_64__) && defined(VMM_CO_BACKEND_ASM) && FPU_SWITCHED
        cmocka_unit_test(test_mxcsr_unchanged_by_switches),
#endif
        cmocka_unit_test(test_thread_move_tls),
        cmocka_unit_test(test_wakeup_after_yield),
#if !VMM_CO_TSAN  /* fork: TSan loses track of fibers in the child */
        cmocka_unit_test(test_misuse_reenter),
#endif
#if !VMM_CO_TSAN  /* fork: TSan loses track of fibers in the child */
        cmocka_unit_test(test_misuse_yield_outside),
#endif
#if !VMM_CO_TSAN  /* fork: TSan loses track of fibers in the child */
        cmocka_unit_test(test_misuse_null_entry),
#endif
#if !VMM_CO_TSAN  /* fork: TSan loses track of fibers in the child */
        cmocka_unit_test(test_guard_page),
#endif
        cmocka_unit_test(test_pool_reuse),
        cmocka_unit_test(test_pool_budget_formula),
        cmocka_unit_test(test_pool_capped),
        cmocka_unit_test(test_pool_thread_exit),
    };

    return cmocka_run_group_tests_name("coroutine", tests, NULL, NULL);
}
