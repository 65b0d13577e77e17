/* SPDX-License-Identifier: MIT */
/*
 * Coroutine benchmarks, each beside comparators measured in the same run:
 *
 *   co_switch_rt       our switch (co_switch_asm, FPU words included),
 *                      one round trip = 2 switches, against
 *                        asm_floor_rt   a minimal assembly switch (GPRs only)
 *                        asm_floor_fpu_rt  the same plus MXCSR/x87 CW saved
 *                                       and reloaded unconditionally
 *                        asm_floor_mxread_rt  the floor plus only a stmxcsr
 *                                       per switch: what any switch that
 *                                       preserves MXCSR pays at least (it
 *                                       must read the outgoing value; see
 *                                       bench-fpu-words for the per-
 *                                       instruction costs)
 *                        asm_floor_fpu_flipflags_rt  asm_floor_fpu_rt with
 *                                       sides whose MXCSR differs only in
 *                                       the status flags, so every ldmxcsr
 *                                       changes MXCSR (what our switch
 *                                       avoids by keeping the flags set)
 *                        asm_cwcmp_rt   asm_floor_fpu_rt reading the stored
 *                                       x87 CW back to skip an unchanged
 *                                       fldcw (what our switch does with
 *                                       the CW)
 *                        asm_fpucmp_rt  asm_floor_fpu_rt reading both stored
 *                                       words back and loading each only
 *                                       when the incoming side's differs
 *                        sigsetjmp_rt   sigsetjmp(,0)/siglongjmp (QEMU's way)
 *                        swapcontext_rt ucontext swapcontext
 *   co_enter_yield_rt  vmm_coroutine_enter + vmm_coroutine_yield through the
 *                      public API, against sigsetjmp_rt, against
 *                        sigsetjmp_enter_yield_rt  enter + yield through an
 *                                       API of the same shape whose switch
 *                                       is sigsetjmp/siglongjmp (QEMU's
 *                                       coroutine-ucontext), and against
 *                        asm_floor_fpu_call_rt  asm_floor_fpu_rt entered
 *                                       through a function that returns
 *                                       (as vmm_coroutine_enter does): its
 *                                       "ret" cannot be predicted, because
 *                                       the other stack's calls are on top
 *                                       of the return stack buffer
 *   co_lifecycle       create + enter + terminate from a warm pool, against
 *                      the same with the pool disabled (mmap per coroutine)
 *   co_mutex_uncontended  vmm_co_mutex_lock+unlock in a coroutine, against
 *                      pthread_mutex_lock+unlock
 *
 * Figures are the median over repetitions of ns per operation on the
 * thread's CPU clock (CLOCK_THREAD_CPUTIME_ID), so co-tenant load on a
 * shared machine does not inflate them.  VMM_BENCH_QUICK=1 runs each once,
 * briefly (the bench-smoke test).
 */
#undef _FORTIFY_SOURCE
#define _FORTIFY_SOURCE 0   /* glibc's checked longjmp refuses to change stacks */
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include "aio/coroutine/coroutine-int.h"
#include "vmmkit/coroutine.h"

static long iters = 2000000;
static int reps = 9;

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Median over reps of ns per iteration of @fn(@n). */
static double measure(void (*fn)(long n), long n)
{
    double v[32];

    fn(n / 10 + 1);     /* warm up */
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        fn(n);
        v[r] = (now_ns() - t0) / (double)n;
    }
    qsort(v, (size_t)reps, sizeof(v[0]), cmp_double);
    return v[reps / 2];
}

static void report(const char *name, double value, const char *vs, double vs_value)
{
    printf("BENCH name=%s value=%.2f unit=ns vs=%s vs_value=%.2f ratio=%.3f\n",
           name, value, vs, vs_value, value / vs_value);
}

static char *bench_stack(size_t size)
{
    char *p = aligned_alloc(64, size);

    if (!p) {
        abort();
    }
    return p;
}

/* ---- the floor: a minimal assembly switch (x86-64: GPRs + pop/jmp) ------ */

#if defined(__x86_64__) && defined(VMM_CO_BACKEND_ASM)
void floor_switch(void **save, void *to);
void floor_fpu_switch(void **save, void *to);
void floor_mxread_switch(void **save, void *to);
void floor_cwcmp_switch(void **save, void *to);
void floor_fpucmp_switch(void **save, void *to);
void floor_start(void);
__asm__(
    ".text\n"
    ".p2align 4\n"
    "floor_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  popq %rcx\n"
    "  jmpq *%rcx\n"
    ".p2align 4\n"
    "floor_fpu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  popq %rcx\n"
    "  jmpq *%rcx\n"
    ".p2align 4\n"
    "floor_mxread_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  popq %rcx\n"
    "  jmpq *%rcx\n"
    ".p2align 4\n"
    "floor_cwcmp_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n  movzwl 4(%rsp), %eax\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n  cmpw 4(%rsp), %ax\n  jne 2f\n1:\n  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  popq %rcx\n"
    "  jmpq *%rcx\n"
    "2:  fldcw 4(%rsp)\n  jmp 1b\n"
    ".p2align 4\n"
    "floor_fpucmp_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n  movl (%rsp), %eax\n  movzwl 4(%rsp), %ecx\n"
    "  movq %rsi, %rsp\n"
    "  cmpl (%rsp), %eax\n  jne 3f\n4:\n  cmpw 4(%rsp), %cx\n  jne 5f\n6:\n  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  popq %rcx\n"
    "  jmpq *%rcx\n"
    "3:  ldmxcsr (%rsp)\n  jmp 4b\n"
    "5:  fldcw 4(%rsp)\n  jmp 6b\n"
    "floor_start:\n"
    "  movq %r12, %rdi\n"
    "  call floor_loop\n"
    "  ud2\n");
#define HAVE_FLOOR 1

static void *floor_main_sp, *floor_co_sp;
static void (*floor_fn)(void **save, void *to);
void floor_loop(void *arg) __attribute__((noreturn, used));
void floor_loop(void *arg)
{
    (void)arg;
    for (;;) {
        floor_fn(&floor_co_sp, floor_main_sp);
    }
}

static void floor_run(long n)
{
    for (long i = 0; i < n; i++) {
        floor_fn(&floor_main_sp, floor_co_sp);
    }
}

static VMM_NOINLINE void floor_call(void)
{
    floor_fn(&floor_main_sp, floor_co_sp);
    __asm__ volatile("");       /* a call and a return, not a jump */
}

static void floor_call_run(long n)
{
    for (long i = 0; i < n; i++) {
        floor_call();
    }
}

/* A fresh stack whose first switch lands in floor_start through @fn; @fpu:
 * the frame has the FPU words slot first, the thread's current words, or
 * with @flip the MXCSR status flags inverted. */
static void floor_init_flags(void (*fn)(void **save, void *to), bool fpu, bool flip)
{
    static char *stk;
    uint64_t *f;
    int w = fpu ? 8 : 7;

    if (!stk) {
        stk = bench_stack(65536);
    }
    /* floor_start's call needs rsp % 16 == 0 after the frame is popped. */
    f = (uint64_t *)(((uintptr_t)(stk + 65536) & ~(uintptr_t)15) - 64 - (fpu ? 0 : 8));
    memset(f, 0, (size_t)w * 8);
    if (fpu) {
        uint32_t mx;
        uint16_t cw;

        __asm__ volatile("stmxcsr %0; fnstcw %1" : "=m"(mx), "=m"(cw));
        if (flip) {
            mx ^= 0x3F;
        }
        f[0] = mx | ((uint64_t)cw << 32);
    }
    f[w - 1] = (uint64_t)(uintptr_t)floor_start;
    floor_co_sp = f;
    floor_fn = fn;
}

static void floor_init(void (*fn)(void **save, void *to), bool fpu)
{
    floor_init_flags(fn, fpu, false);
}
#else
#define HAVE_FLOOR 0
#endif

/* ---- our raw switch ------------------------------------------------------ */

#if defined(VMM_CO_BACKEND_ASM)
static struct VmmCoroutine raw_main, raw_co;

static void raw_run(long n)
{
    for (long i = 0; i < n; i++) {
        co_switch_asm(&raw_main.sp, raw_co.sp, VMM_CO_ENTER);
    }
}
#endif

/* Entry of raw_co (started by the library's trampoline): bounce back. */
static void raw_bounce(void *opaque)
{
    (void)opaque;
#if defined(VMM_CO_BACKEND_ASM)
    for (;;) {
        co_switch_asm(&raw_co.sp, raw_main.sp, VMM_CO_YIELD);
    }
#endif
}

/* ---- sigsetjmp / siglongjmp (QEMU's coroutine-ucontext switch path) ------ */

static sigjmp_buf sj_main, sj_co;
static ucontext_t sj_uc, sj_start;

static void sj_entry(void)
{
    if (!sigsetjmp(sj_co, 0)) {
        swapcontext(&sj_uc, &sj_start);     /* creation done, go back */
    }
    for (;;) {
        if (!sigsetjmp(sj_co, 0)) {
            siglongjmp(sj_main, 1);
        }
    }
}

/* @uc ready to run @fn on a stack of its own. */
static void uc_make(ucontext_t *uc, void (*fn)(void))
{
    getcontext(uc);
    uc->uc_stack.ss_sp = bench_stack(65536);
    uc->uc_stack.ss_size = 65536;
    uc->uc_link = NULL;
    makecontext(uc, fn, 0);
}

static void sj_init(void)
{
    uc_make(&sj_uc, sj_entry);
    swapcontext(&sj_start, &sj_uc);
}

static VMM_NOINLINE void sj_round_trip(void)
{
    if (!sigsetjmp(sj_main, 0)) {
        siglongjmp(sj_co, 1);
    }
}

static void sj_run(long n)
{
    for (long i = 0; i < n; i++) {
        sj_round_trip();
    }
}

/* ---- enter/yield through an API built on sigsetjmp (QEMU's shape) -------- *
 * What a coroutine library whose switch is sigsetjmp/siglongjmp costs at
 * its API: enter records the caller and the current coroutine and
 * switches, yield switches back to the caller, each a call that returns
 * (as qemu_coroutine_enter/qemu_coroutine_yield over coroutine-ucontext's
 * qemu_coroutine_switch).  The same bookkeeping as ours, the other switch. */

typedef struct SjCo {
    sigjmp_buf env;
    struct SjCo *caller;
} SjCo;

static __thread SjCo *sjco_current;
static SjCo sjco_leader, sjco_co;
static ucontext_t sjco_uc, sjco_start;
static volatile bool sjco_stop;

static VMM_NOINLINE void sjco_switch(SjCo *from, SjCo *to)
{
    if (!sigsetjmp(from->env, 0)) {
        siglongjmp(to->env, 1);
    }
}

static VMM_NOINLINE void sjco_enter(SjCo *co)
{
    SjCo *self = sjco_current ? sjco_current : &sjco_leader;

    if (co->caller) {
        abort();                        /* re-entered while running */
    }
    co->caller = self;
    sjco_current = co;
    sjco_switch(self, co);
    sjco_current = self;
}

static VMM_NOINLINE void sjco_yield(void)
{
    SjCo *self = sjco_current;
    SjCo *to = self->caller;

    self->caller = NULL;
    sjco_switch(self, to);
}

static void sjco_entry(void)
{
    if (!sigsetjmp(sjco_co.env, 0)) {
        swapcontext(&sjco_uc, &sjco_start);     /* creation done, go back */
    }
    while (!sjco_stop) {
        sjco_yield();
    }
    sjco_yield();
    abort();
}

static void sjco_init(void)
{
    uc_make(&sjco_uc, sjco_entry);
    swapcontext(&sjco_start, &sjco_uc);
}

static void sjco_run(long n)
{
    for (long i = 0; i < n; i++) {
        sjco_enter(&sjco_co);
    }
}

/* ---- swapcontext ----------------------------------------------------------- */

static ucontext_t sc_main, sc_co;

static void sc_entry(void)
{
    for (;;) {
        swapcontext(&sc_co, &sc_main);
    }
}

static void sc_init(void)
{
    uc_make(&sc_co, sc_entry);
}

static void sc_run(long n)
{
    for (long i = 0; i < n; i++) {
        swapcontext(&sc_main, &sc_co);
    }
}

/* ---- the public API ---------------------------------------------------------- */

static volatile bool yield_stop;

static void co_yielder(void *opaque)
{
    (void)opaque;
    while (!yield_stop) {
        vmm_coroutine_yield();
    }
}

static VmmCoroutine *yield_co;

static void api_run(long n)
{
    for (long i = 0; i < n; i++) {
        vmm_coroutine_enter(yield_co);
    }
}

static void co_empty(void *opaque)
{
    (void)opaque;
}

static void lifecycle_run(long n)
{
    for (long i = 0; i < n; i++) {
        vmm_coroutine_enter(vmm_coroutine_create(co_empty, NULL, NULL));
    }
}

/* ---- CoMutex --------------------------------------------------------------- */

static VmmCoMutex bench_mutex;
static pthread_mutex_t bench_pmutex = PTHREAD_MUTEX_INITIALIZER;
static long mutex_n;

static void co_mutex_loop(void *opaque)
{
    (void)opaque;
    for (long i = 0; i < mutex_n; i++) {
        vmm_co_mutex_lock(&bench_mutex);
        vmm_co_mutex_unlock(&bench_mutex);
    }
}

static void comutex_run(long n)
{
    mutex_n = n;
    vmm_coroutine_enter(vmm_coroutine_create(co_mutex_loop, NULL, NULL));
}

static void pmutex_run(long n)
{
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&bench_pmutex);
        pthread_mutex_unlock(&bench_pmutex);
    }
}

static void *nothing_thread(void *arg)
{
    return arg;
}

int main(void)
{
    const char *quick = getenv("VMM_BENCH_QUICK");
    double sj, sjapi, sc, api, life, nopool, com, pm, flo_call = 0;

    if (quick && *quick && strcmp(quick, "0")) {
        iters = 20000;
        reps = 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* glibc skips the lock prefix in pthread mutexes while the process has
     * never had a second thread; a VMM always has several, so make the
     * comparator pay what it pays there. */
    pthread_t th;
    pthread_create(&th, NULL, nothing_thread, NULL);
    pthread_join(th, NULL);

    sj_init();
    sc_init();
    sj = measure(sj_run, iters);
    sjco_init();
    sjapi = measure(sjco_run, iters);
    sc = measure(sc_run, iters / 200 + 1);

#if defined(VMM_CO_BACKEND_ASM)
    raw_co.entry = raw_bounce;
    if (co_stack_alloc(&raw_co.stack, 65536) < 0 || co_backend_init(&raw_co) < 0) {
        return 1;
    }
    double raw = measure(raw_run, iters);
# if HAVE_FLOOR
    floor_init(floor_switch, false);
    double flo = measure(floor_run, iters);
    floor_init(floor_fpu_switch, true);
    double flo_fpu = measure(floor_run, iters);
    floor_init(floor_mxread_switch, true);
    double flo_mx = measure(floor_run, iters);
    floor_init_flags(floor_fpu_switch, true, true);
    double flo_flip = measure(floor_run, iters);
    floor_init(floor_cwcmp_switch, true);
    double cwcmp = measure(floor_run, iters);
    floor_init(floor_fpucmp_switch, true);
    double fpucmp = measure(floor_run, iters);
    floor_init(floor_fpu_switch, true);
    flo_call = measure(floor_call_run, iters);
    report("co_switch_rt", raw, "asm_floor_rt", flo);
    report("co_switch_rt", raw, "asm_floor_fpu_rt", flo_fpu);
    report("co_switch_rt", raw, "asm_floor_mxread_rt", flo_mx);
    report("asm_floor_fpu_flipflags_rt", flo_flip, "asm_floor_fpu_rt", flo_fpu);
    report("asm_cwcmp_rt", cwcmp, "asm_floor_fpu_rt", flo_fpu);
    report("asm_fpucmp_rt", fpucmp, "asm_floor_fpu_rt", flo_fpu);
# endif
    report("co_switch_rt", raw, "sigsetjmp_rt", sj);
    report("co_switch_rt", raw, "swapcontext_rt", sc);
#endif

    yield_co = vmm_coroutine_create(co_yielder, NULL, NULL);
    api = measure(api_run, iters);
    yield_stop = true;
    vmm_coroutine_enter(yield_co);
    report("co_enter_yield_rt", api, "sigsetjmp_rt", sj);
    report("co_enter_yield_rt", api, "sigsetjmp_enter_yield_rt", sjapi);
    if (flo_call > 0) {
        report("co_enter_yield_rt", api, "asm_floor_fpu_call_rt", flo_call);
    }

    life = measure(lifecycle_run, iters);
    co_pool_reset_budget(0);                /* no pooling: mmap each time */
    nopool = measure(lifecycle_run, iters / 100 + 1);
    co_pool_reset_budget(65530);
    report("co_lifecycle", life, "co_lifecycle_nopool", nopool);

    vmm_co_mutex_init(&bench_mutex);
    com = measure(comutex_run, iters);
    pm = measure(pmutex_run, iters);
    report("co_mutex_uncontended", com, "pthread_mutex", pm);
    return 0;
}
