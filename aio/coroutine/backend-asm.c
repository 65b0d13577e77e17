/* SPDX-License-Identifier: MIT */
/*
 * The assembly backend: lays out the first frame of a fresh stack so that
 * the first co_switch_asm() into it lands in co_trampoline_asm.
 */
#include <string.h>

#include "coroutine-int.h"

const char co_backend_name[] = "asm";

#if defined(__x86_64__)
/* MXCSR default controls (all exceptions masked, round to nearest) with
 * the status flags set as the switch keeps them (switch-x86_64.S), and
 * the x87 CW default (extended precision, all masked). */
#define FPU_INIT (0x1FBFull | (0x037Full << 32))
enum { FRAME_WORDS = 8, SLOT_FPU = 0, SLOT_R12 = 4, SLOT_RBP = 6, SLOT_RET = 7 };
#elif defined(__aarch64__)
enum { FRAME_WORDS = 22, SLOT_X19 = 0, SLOT_X29 = 10, SLOT_X30 = 11, SLOT_FPCR = 20 };
#else
#error "the assembly coroutine backend supports x86-64 and aarch64 only"
#endif

int co_backend_init(struct VmmCoroutine *co)
{
    char *top = co->stack.base + co->stack.size;
    uintptr_t sp = ((uintptr_t)top & ~(uintptr_t)15) - FRAME_WORDS * 8;
    uint64_t *frame;

#if defined(__x86_64__)
    /* The stub's "call" must see rsp % 16 == 0: rsp = sp + 64 there. */
    sp &= ~(uintptr_t)15;
    frame = (uint64_t *)sp;
    memset(frame, 0, FRAME_WORDS * 8);
    frame[SLOT_FPU] = FPU_INIT;
    frame[SLOT_R12] = (uint64_t)(uintptr_t)co;
    frame[SLOT_RBP] = 0;
    frame[SLOT_RET] = (uint64_t)(uintptr_t)co_trampoline_asm;
#else
    /* 176-byte frame; sp + 176 stays 16-byte aligned. */
    sp &= ~(uintptr_t)15;
    frame = (uint64_t *)sp;
    memset(frame, 0, FRAME_WORDS * 8);
    frame[SLOT_X19] = (uint64_t)(uintptr_t)co;
    frame[SLOT_X29] = 0;
    frame[SLOT_X30] = (uint64_t)(uintptr_t)co_trampoline_asm;
    frame[SLOT_FPCR] = 0;
#endif
    co->sp = (void *)sp;
    return 0;
}

void co_backend_fini(struct VmmCoroutine *co)
{
    (void)co;
}

int co_backend_switch(struct VmmCoroutine *from, struct VmmCoroutine *to,
                          int action)
{
    return co_switch_asm(&from->sp, to->sp, action);
}
