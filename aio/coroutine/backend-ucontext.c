/* SPDX-License-Identifier: MIT */
/*
 * The portable backend, for machines without a hand-written switch:
 * makecontext() builds the first frame of a fresh stack and setcontext()
 * starts it once; every later switch is _setjmp/_longjmp, which (unlike
 * swapcontext) makes no sigprocmask system call.
 *
 * glibc's fortified longjmp checks that it jumps up the same stack and
 * aborts when it jumps to another coroutine's stack, so this file is built
 * without _FORTIFY_SOURCE.
 */
#undef _FORTIFY_SOURCE
#define _FORTIFY_SOURCE 0
#include <errno.h>
#include <fenv.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "coroutine-int.h"

const char co_backend_name[] = "ucontext";

typedef struct Backend {
    jmp_buf jb;
    fenv_t fenv;        /* FPU control state: callee-saved, unlike in jmp_buf */
    ucontext_t uc;
    bool fresh;         /* not started yet: setcontext(uc), not longjmp */
} Backend;

/* A thread's own stack saves into thread-local storage (a leader never
 * changes threads, so using it after the switch is safe). */
static __thread Backend leader_backend;

static VMM_NOINLINE Backend *leader_backend_get(void)
{
    __asm__ volatile("");
    return &leader_backend;
}

static Backend *backend_of(struct VmmCoroutine *co)
{
    return co->is_leader ? leader_backend_get() : co->backend;
}

/* makecontext passes only ints: the pointer travels as two halves. */
static void trampoline_ints(int lo, int hi)
{
    uintptr_t p = ((uintptr_t)(unsigned)hi << 16 << 16) | (unsigned)lo;

    co_trampoline((struct VmmCoroutine *)p);
}

int co_backend_init(struct VmmCoroutine *co)
{
    Backend *b = calloc(1, sizeof(*b));
    uintptr_t p = (uintptr_t)co;

    if (!b) {
        return -ENOMEM;
    }
    if (getcontext(&b->uc) < 0) {
        free(b);
        return -errno;
    }
    b->uc.uc_stack.ss_sp = co->stack.base + co->stack.guard;
    b->uc.uc_stack.ss_size = co->stack.size - co->stack.guard;
    b->uc.uc_link = NULL;
    makecontext(&b->uc, (void (*)(void))trampoline_ints, 2,
                (int)(unsigned)p, (int)(unsigned)(p >> 16 >> 16));
    b->fresh = true;
    co->backend = b;
    return 0;
}

void co_backend_fini(struct VmmCoroutine *co)
{
    free(co->backend);
    co->backend = NULL;
}

static VMM_NOINLINE void jump_to(Backend *tb)
{
    if (tb->fresh) {
        tb->fresh = false;
        setcontext(&tb->uc);
        abort();
    }
    _longjmp(tb->jb, 1);
}

int co_backend_switch(struct VmmCoroutine *from, struct VmmCoroutine *to,
                          int action)
{
    Backend *volatile fb = backend_of(from);

    /* Hand the action over through @to: whoever resumes @from later
     * writes from->xfer the same way. */
    to->xfer = action;
    fegetenv(&fb->fenv);
    if (!_setjmp(fb->jb)) {
        jump_to(backend_of(to));
    }
    /* Resumed, possibly on another thread: @from and @fb live on our own
     * stack and were not modified since _setjmp, so they are intact. */
    fesetenv(&fb->fenv);
    return from->xfer;
}
