/* SPDX-License-Identifier: MIT */
/*
 * The aarch64 coroutine switch (aio/coroutine/switch-aarch64.S) on its own,
 * for hosts that are not aarch64: scripts/test builds this file with the
 * assembly and nothing else of the library, with aarch64-linux-gnu-gcc,
 * and runs it under qemu-aarch64 (stage "aarch64"; docs/testing.md).
 *
 * A coroutine on a stack laid out like backend-asm.c's first frame plays
 * ping-pong with main.  Every switch goes through switch_checked(), which
 * loads a side's own values into x19-x28, d8-d15 and FPCR, switches, and
 * reads them back after control returns to that side; main and the
 * coroutine use different values each round, so a register the switch does
 * not restore shows the other side's value.  FPCR runs through all 16
 * (outgoing, incoming) pairs of 4 values in both directions, which covers
 * the switch's "write FPCR only when it differs" skip.
 *
 * Built with -DVMM_CO_FPU_CTL=1 (the default build) or 0
 * (-Dcoroutine_fpu_ctl=false: FPCR is shared, so it is checked to be
 * shared).  Prints TAP; exits non-zero on the first failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifndef VMM_CO_FPU_CTL
#error "build with -DVMM_CO_FPU_CTL=0 or 1"
#endif

/* From switch-aarch64.S. */
int co_switch_asm(void **save_sp, void *new_sp, int action);
void co_trampoline_asm(void);
/* Called by co_trampoline_asm with what the first frame put in x19. */
void co_trampoline(void *arg) __attribute__((noreturn));

enum { ACT_ENTER = 1, ACT_YIELD = 2 };
enum { STACK_SIZE = 256 * 1024, ROUNDS = 100000, CHECKED = 2000 };
/* backend-asm.c's first frame: 22 words, x19 at 0, x29 at 10, x30 at 11,
 * FPCR at 20. */
enum { FRAME_WORDS = 22, SLOT_X19 = 0, SLOT_X29 = 10, SLOT_X30 = 11, SLOT_FPCR = 20 };

/* Callee-saved state of one side: x19-x28, d8-d15 (bit patterns), FPCR. */
typedef struct Regs {
    uint64_t x[10];
    uint64_t d[8];
    uint64_t fpcr;
} Regs;

static const uint64_t fpcr_values[4] = {
    0,                          /* round to nearest */
    2ull << 22,                 /* toward minus infinity */
    1ull << 24,                 /* flush to zero */
    (3ull << 22) | (1ull << 25),        /* toward zero, default NaN */
};

static void *main_sp, *co_sp;
static long co_rounds;
static int failures;

static void fail(const char *who, long round, const char *what, int i,
                 uint64_t got, uint64_t want)
{
    printf("# %s round %ld: %s%d = %#llx, want %#llx\n", who, round, what, i,
           (unsigned long long)got, (unsigned long long)want);
    failures++;
}

/*
 * Load @in into x19-x28, d8-d15 and FPCR, switch, and after control comes
 * back store what those registers hold into @out.  Everything the switch
 * may clobber is declared clobbered; the callee-saved ones too, since we
 * load them (the compiler saves and restores its own around this).
 */
static __attribute__((noinline)) int switch_checked(void **save, void *to, int action,
                                                   const Regs *in, Regs *out)
{
    register uintptr_t r0 __asm__("x0") = (uintptr_t)save;
    register void *r1 __asm__("x1") = to;
    register long r2 __asm__("x2") = action;
    register const Regs *r3 __asm__("x3") = in;
    register Regs *r4 __asm__("x4") = out;

    __asm__ volatile(
        "str    x4, [sp, #-16]!\n\t"          /* @out survives on our stack */
        "ldp    x19, x20, [x3, #0]\n\t"
        "ldp    x21, x22, [x3, #16]\n\t"
        "ldp    x23, x24, [x3, #32]\n\t"
        "ldp    x25, x26, [x3, #48]\n\t"
        "ldp    x27, x28, [x3, #64]\n\t"
        "ldp    d8, d9, [x3, #80]\n\t"
        "ldp    d10, d11, [x3, #96]\n\t"
        "ldp    d12, d13, [x3, #112]\n\t"
        "ldp    d14, d15, [x3, #128]\n\t"
        "ldr    x5, [x3, #144]\n\t"
        "msr    fpcr, x5\n\t"
        "bl     co_switch_asm\n\t"
        "ldr    x4, [sp], #16\n\t"
        "stp    x19, x20, [x4, #0]\n\t"
        "stp    x21, x22, [x4, #16]\n\t"
        "stp    x23, x24, [x4, #32]\n\t"
        "stp    x25, x26, [x4, #48]\n\t"
        "stp    x27, x28, [x4, #64]\n\t"
        "stp    d8, d9, [x4, #80]\n\t"
        "stp    d10, d11, [x4, #96]\n\t"
        "stp    d12, d13, [x4, #112]\n\t"
        "stp    d14, d15, [x4, #128]\n\t"
        "mrs    x5, fpcr\n\t"
        "str    x5, [x4, #144]\n\t"
        : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), "+r"(r4)
        :
        : "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15",
          "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25",
          "x26", "x27", "x28", "x30",
          "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11",
          "v12", "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21",
          "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31",
          "memory", "cc");
    return (int)r0;
}

/* Side @side's values for round @round: distinct per side, register and
 * round; FPCR from the table (main: (round + 1) % 4, coroutine:
 * (round / 4) % 4, so both switch directions see all 16 pairs). */
static void regs_fill(Regs *r, int side, long round)
{
    uint64_t base = ((uint64_t)side << 56) ^ ((uint64_t)round << 16);

    for (int i = 0; i < 10; i++) {
        r->x[i] = base | (0x1900u + (unsigned)i);
    }
    for (int i = 0; i < 8; i++) {
        r->d[i] = base | (0xd800u + (unsigned)i) | (1ull << 40);
    }
    r->fpcr = side == 1 ? fpcr_values[(round + 1) % 4] : fpcr_values[(round / 4) % 4];
}

/* @want: what this side loaded; @fpcr_want: what FPCR must read. */
static void regs_check(const char *who, long round, const Regs *got, const Regs *want,
                       uint64_t fpcr_want)
{
    for (int i = 0; i < 10; i++) {
        if (got->x[i] != want->x[i]) {
            fail(who, round, "x", 19 + i, got->x[i], want->x[i]);
        }
    }
    for (int i = 0; i < 8; i++) {
        if (got->d[i] != want->d[i]) {
            fail(who, round, "d", 8 + i, got->d[i], want->d[i]);
        }
    }
    if (got->fpcr != fpcr_want) {
        fail(who, round, "fpcr", 0, got->fpcr, fpcr_want);
    }
}

static uint64_t fpcr_read(void)
{
    uint64_t v;

    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}

/* The coroutine: bounce back to main forever, checking every switch. */
void co_trampoline(void *arg)
{
    long *rounds = arg;
    Regs in, out;

    /* The first frame's FPCR slot is 0, whatever main had. */
    if (VMM_CO_FPU_CTL && fpcr_read() != 0) {
        fail("coroutine", 0, "initial fpcr", 0, fpcr_read(), 0);
    }
    for (long r = 0;; r++) {
        int act;

        regs_fill(&in, 2, r);
        act = switch_checked(&co_sp, main_sp, ACT_YIELD, &in, &out);
        if (act != ACT_ENTER) {
            fail("coroutine", r, "action", 0, (uint64_t)act, ACT_ENTER);
        }
        /* Shared FPCR (VMM_CO_FPU_CTL=0): main's value of the next round. */
        regs_check("coroutine", r, &out, &in,
                   VMM_CO_FPU_CTL ? in.fpcr : fpcr_values[(r + 2) % 4]);
        ++*rounds;
    }
}

static void *stack_new(void)
{
    void *p = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return p;
}

/* backend-asm.c's first frame: the first switch "returns" into
 * co_trampoline_asm with x19 = @arg. */
static void *frame_init(char *stack, void *arg)
{
    uintptr_t sp = ((uintptr_t)(stack + STACK_SIZE) & ~(uintptr_t)15) - FRAME_WORDS * 8;
    uint64_t *f;

    sp &= ~(uintptr_t)15;
    f = (uint64_t *)sp;
    memset(f, 0, FRAME_WORDS * 8);
    f[SLOT_X19] = (uint64_t)(uintptr_t)arg;
    f[SLOT_X29] = 0;
    f[SLOT_X30] = (uint64_t)(uintptr_t)co_trampoline_asm;
    f[SLOT_FPCR] = 0;
    return f;
}

int main(void)
{
    Regs in, out;
    int t = 0;

    printf("TAP version 13\n1..2\n");
    co_sp = frame_init(stack_new(), &co_rounds);

    /* 1: registers and FPCR on both sides, every round; the coroutine
     * starts with FPCR 0 from its first frame while main has value 1. */
    for (long r = 0; r < CHECKED; r++) {
        int act;

        regs_fill(&in, 1, r);
        act = switch_checked(&main_sp, co_sp, ACT_ENTER, &in, &out);
        if (act != ACT_YIELD) {
            fail("main", r, "action", 0, (uint64_t)act, ACT_YIELD);
        }
        /* Shared FPCR: the coroutine's value of this round. */
        regs_check("main", r, &out, &in, VMM_CO_FPU_CTL ? in.fpcr : fpcr_values[(r / 4) % 4]);
        if (failures > 20) {
            break;
        }
    }
    printf("%s %d - x19-x28, d8-d15, FPCR (%s) kept across %d switches\n",
           failures ? "not ok" : "ok", ++t,
           VMM_CO_FPU_CTL ? "per side" : "shared", 2 * CHECKED);

    /* 2: many more round trips; the count must match exactly. */
    int before = failures;
    long start = co_rounds;
    for (long r = CHECKED; r < CHECKED + ROUNDS && failures == before; r++) {
        regs_fill(&in, 1, r);
        switch_checked(&main_sp, co_sp, ACT_ENTER, &in, &out);
        regs_check("main", r, &out, &in, VMM_CO_FPU_CTL ? in.fpcr : fpcr_values[(r / 4) % 4]);
    }
    if (co_rounds - start != ROUNDS && failures == before) {
        fail("main", 0, "round trips ", 0, (uint64_t)(co_rounds - start), ROUNDS);
    }
    printf("%s %d - %d round trips\n", failures != before ? "not ok" : "ok", ++t, ROUNDS);

    return failures ? 1 : 0;
}
