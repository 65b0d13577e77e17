/* SPDX-License-Identifier: MIT */
/*
 * What reading and writing the FPU control words costs on this CPU, to
 * choose how the coroutine switch preserves them (switch-*.S).
 *
 * Each figure runs one instruction inside a block shaped like a switch's
 * body (8 stores, 8 loads), against the block alone measured in the same
 * run: value - vs_value is the instruction's cost there.
 *   x86-64:  stmxcsr, fnstcw, ldmxcsr and fldcw of the current value
 *            (what a switch between sides with equal words does), ldmxcsr
 *            of a value that changes every time, and stmxcsr followed by a
 *            load of what it stored (what comparing MXCSR in a register
 *            needs).
 *   aarch64: mrs fpcr, msr fpcr of the current value.
 * Median of repetitions on the thread's CPU clock; VMM_BENCH_QUICK=1 runs
 * briefly (bench-smoke).
 */
#include <stdint.h>
#include <stdio.h>

#include "../bench-util.h"

static long iters = 2000000;
static int reps = 7;

/* The block's memory and each word on cache lines of their own. */
uint64_t fw_mem[8] __attribute__((aligned(64)));
uint32_t fw_mx __attribute__((aligned(64)));
uint32_t fw_mx_out __attribute__((aligned(64)));
uint32_t fw_mx_alt __attribute__((aligned(64)));
uint16_t fw_cw __attribute__((aligned(64)));
uint16_t fw_cw_out __attribute__((aligned(64)));

#define R4(x) x x x x
#if defined(__x86_64__)
#define ST8 "movq %%r8,fw_mem(%%rip)\n movq %%r9,fw_mem+8(%%rip)\n" \
            "movq %%r10,fw_mem+16(%%rip)\n movq %%r11,fw_mem+24(%%rip)\n" \
            "movq %%r8,fw_mem+32(%%rip)\n movq %%r9,fw_mem+40(%%rip)\n" \
            "movq %%r10,fw_mem+48(%%rip)\n movq %%r11,fw_mem+56(%%rip)\n"
#define LD8 "movq fw_mem(%%rip),%%r8\n movq fw_mem+8(%%rip),%%r9\n" \
            "movq fw_mem+16(%%rip),%%r10\n movq fw_mem+24(%%rip),%%r11\n" \
            "movq fw_mem+32(%%rip),%%r8\n movq fw_mem+40(%%rip),%%r9\n" \
            "movq fw_mem+48(%%rip),%%r10\n movq fw_mem+56(%%rip),%%r11\n"
#define CLOBBERS "memory", "cc", "eax", "r8", "r9", "r10", "r11"
#elif defined(__aarch64__)
#define ST8 "adrp x9, fw_mem\n add x9, x9, :lo12:fw_mem\n" \
            "stp x10, x11, [x9]\n stp x12, x13, [x9, #16]\n" \
            "stp x10, x11, [x9, #32]\n stp x12, x13, [x9, #48]\n"
#define LD8 "ldp x10, x11, [x9]\n ldp x12, x13, [x9, #16]\n" \
            "ldp x10, x11, [x9, #32]\n ldp x12, x13, [x9, #48]\n"
#define CLOBBERS "memory", "cc", "x9", "x10", "x11", "x12", "x13", "x14"
#endif

/* One function per variant: 4 blocks per loop iteration. */
#define VARIANT(name, insn) \
    static void name(long n) \
    { \
        for (long i = 0; i < n; i++) { \
            __asm__ volatile(R4(ST8 insn LD8) ::: CLOBBERS); \
        } \
    }

VARIANT(fw_block, "")
#if defined(__x86_64__)
VARIANT(fw_stmxcsr, "stmxcsr fw_mx_out(%%rip)\n")
VARIANT(fw_fnstcw, "fnstcw fw_cw_out(%%rip)\n")
VARIANT(fw_ldmxcsr, "ldmxcsr fw_mx(%%rip)\n")
VARIANT(fw_fldcw, "fldcw fw_cw(%%rip)\n")
VARIANT(fw_ldmxcsr_change, "ldmxcsr fw_mx_alt(%%rip)\n ldmxcsr fw_mx(%%rip)\n")
VARIANT(fw_stmxcsr_reload, "stmxcsr fw_mx_out(%%rip)\n movl fw_mx_out(%%rip), %%eax\n"
                           "cmpl fw_mx(%%rip), %%eax\n jne 1f\n 1:\n")
#elif defined(__aarch64__)
VARIANT(fw_mrs_fpcr, "mrs x14, fpcr\n")
VARIANT(fw_msr_fpcr, "mrs x14, fpcr\n msr fpcr, x14\n")
#endif

static double measure(void (*fn)(long))
{
    double v[16];

    fn(iters / 10 + 1);
    for (int r = 0; r < reps; r++) {
        int64_t t0 = bench_cpu_ns();
        fn(iters);
        v[r] = (double)(bench_cpu_ns() - t0) / ((double)iters * 4);
    }
    return bench_median(v, reps);
}

int main(void)
{
    if (bench_quick()) {
        iters = 20000;
        reps = 1;
    }
#if defined(__x86_64__)
    __asm__ volatile("stmxcsr %0\n fnstcw %1" : "=m"(fw_mx), "=m"(fw_cw));
    fw_mx_alt = fw_mx ^ 0x6000;            /* another rounding mode */
    double base = measure(fw_block);
    bench_print("fpu_stmxcsr", measure(fw_stmxcsr), "ns", "block", base);
    bench_print("fpu_fnstcw", measure(fw_fnstcw), "ns", "block", base);
    bench_print("fpu_ldmxcsr_same", measure(fw_ldmxcsr), "ns", "block", base);
    bench_print("fpu_fldcw_same", measure(fw_fldcw), "ns", "block", base);
    /* two loads per block, the first changes the mode */
    bench_print("fpu_ldmxcsr_change2", measure(fw_ldmxcsr_change), "ns", "block", base);
    bench_print("fpu_stmxcsr_reload", measure(fw_stmxcsr_reload), "ns", "block", base);
#elif defined(__aarch64__)
    double base = measure(fw_block);
    bench_print("fpu_mrs_fpcr", measure(fw_mrs_fpcr), "ns", "block", base);
    bench_print("fpu_mrs_msr_fpcr", measure(fw_msr_fpcr), "ns", "block", base);
#endif
    return 0;
}
