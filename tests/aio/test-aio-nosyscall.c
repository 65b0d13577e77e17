/* SPDX-License-Identifier: MIT */
/*
 * A non-blocking vmm_aio_poll() with nothing to do makes no system call.
 *
 * Counted with Linux syscall user dispatch (prctl PR_SET_SYSCALL_USER_DISPATCH,
 * Linux >= 5.11): while the selector byte says BLOCK, every system call of
 * this thread raises SIGSYS instead of running.  The handler counts it,
 * switches the selector back to ALLOW (so its own sigreturn works) and lets
 * the call fail with -ENOSYS, so a count is "none" or "at least one".
 * No seccomp, no ptrace.  The control cases
 * show the counter sees real system calls, so the check can fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>

#include "aio-test-util.h"
#include "vmmkit/aio.h"

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_OFF 0
#define PR_SYS_DISPATCH_ON 1
#endif
#ifndef SYSCALL_DISPATCH_FILTER_ALLOW
#define SYSCALL_DISPATCH_FILTER_ALLOW 0
#define SYSCALL_DISPATCH_FILTER_BLOCK 1
#endif

static volatile char selector = SYSCALL_DISPATCH_FILTER_ALLOW;
static volatile int sys_count;
static volatile long sys_last;

static void on_sigsys(int sig, siginfo_t *si, void *uc_)
{
    ucontext_t *uc = uc_;
    (void)sig;
    selector = SYSCALL_DISPATCH_FILTER_ALLOW;
    sys_count++;
    sys_last = si->si_syscall;
    uc->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
}

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

static bool sud_available;

/* cmocka installs its own SIGSYS handler while a test runs: ours goes in
 * from inside the test. */
static void sud_setup(void)
{
    struct sigaction sa = { 0 };

    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    sud_available = prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0,
                          &selector) == 0;
}

/* Count system calls made by fn(arg) on this thread. */
static int count_syscalls(void (*fn)(void *), void *arg)
{
    sys_count = 0;
    selector = SYSCALL_DISPATCH_FILTER_BLOCK;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    fn(arg);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    selector = SYSCALL_DISPATCH_FILTER_ALLOW;
    return sys_count;
}

static void do_getppid(void *arg)
{
    (void)arg;
    syscall(SYS_getppid);
}

static void poll_many(void *arg)
{
    VmmAioContext *ctx = arg;
    for (int i = 0; i < 1000; i++) {
        vmm_aio_poll(ctx, false);
    }
}

static void noop_cb(void *opaque)
{
    (*(int *)opaque)++;
}

static void schedule_and_poll(void *arg)
{
    void **a = arg;
    for (int i = 0; i < 100; i++) {
        vmm_bh_schedule(a[1]);
        vmm_aio_poll(a[0], false);
    }
}

static void test_idle_poll_makes_no_syscall(void **state)
{
    (void)state;
#ifdef UNDER_TSAN
    skip();     /* TSan defers signals, and its runtime makes system calls */
#endif
    sud_setup();
    if (!sud_available) {
        skip();
    }
    /* Control: the counter sees a system call. */
    assert_int_equal(count_syscalls(do_getppid, NULL), 1);
    assert_int_equal(sys_last, SYS_getppid);

    VmmAioContext *ctx = vmm_aio_context_new(NULL, NULL);
    assert_non_null(ctx);
    vmm_aio_poll(ctx, false);         /* warm up (lazy allocations) */
    assert_int_equal(count_syscalls(poll_many, ctx), 0);

    /* Scheduling and running a BH in the same thread: none either. */
    int runs = 0;
    VmmBH *bh = vmm_bh_new(ctx, noop_cb, &runs, "nosys");
    void *args[2] = { ctx, bh };
    assert_int_equal(count_syscalls(schedule_and_poll, args), 0);
    assert_int_equal(runs, 100);
    vmm_bh_delete(bh);
    vmm_aio_poll(ctx, false);

    /* Control: a handler without io_poll forces a ppoll()/epoll_wait() with
     * poll/epoll; io_uring reads completions in user space instead. */
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
    assert_int_equal(vmm_aio_set_fd_handler(ctx, fds[0], noop_cb, NULL, NULL, NULL, &runs), 0);
    vmm_aio_poll(ctx, false);
    int n = count_syscalls(poll_many, ctx);
    if (vmm_aio_context_fdmon(ctx) == VMM_FDMON_IO_URING) {
        assert_int_equal(n, 0);
    } else {
        assert_true(n >= 1);    /* the counter stops at the first one */
    }
    assert_int_equal(vmm_aio_set_fd_handler(ctx, fds[0], NULL, NULL, NULL, NULL, NULL), 0);
    close(fds[0]);
    close(fds[1]);
    vmm_aio_poll(ctx, false);
    vmm_aio_context_unref(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_poll_makes_no_syscall),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
