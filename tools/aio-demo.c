/* SPDX-License-Identifier: MIT */
/*
 * vmmkit-aio-demo: the event loop at work, a runnable walk-through that is
 * also a test.  The main loop runs the main AioContext; an iothread runs
 * its own.  What happens, in order:
 *   - a timer on the main context ticks three times, 40 ms apart;
 *   - on the first tick the main loop schedules a BH into the iothread;
 *   - that BH (in the iothread) writes a line into a pipe, and schedules
 *     a BH back into the main context (a cross-thread BH);
 *   - an fd handler on the main context reads the pipe;
 *   - the main loop waits (VMM_AIO_WAIT_WHILE) until all of it happened.
 * Each event is printed with its time and thread.  Exit status 0 when
 * everything happened in the expected threads.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmmkit/vmmkit.h"

typedef struct Demo {
    VmmAioContext *main_ctx;
    VmmIOThread *io;
    VmmTimer *timer;
    int pipe[2];
    int64_t t0;
    int ticks;
    int events;        /* atomic: BH in iothread, BH back in main, fd read */
    int errors;
} Demo;

static void say(Demo *d, const char *what)
{
    char name[16] = "?";
    pthread_getname_np(pthread_self(), name, sizeof(name));
    printf("[%7.3f ms] %-9s %s\n", (vmm_clock_ns() - d->t0) / 1e6, name, what);
    fflush(stdout);
}

static void back_in_main(void *opaque)
{
    Demo *d = opaque;
    if (vmm_aio_context_current() != d->main_ctx) {
        d->errors++;
    }
    say(d, "bh: cross-thread BH from the iothread ran in the main loop");
    __atomic_fetch_add(&d->events, 1, __ATOMIC_RELEASE);
}

static void in_iothread(void *opaque)
{
    Demo *d = opaque;
    static const char msg[] = "hello from the iothread\n";

    if (vmm_aio_context_current() != vmm_iothread_get_context(d->io)) {
        d->errors++;
    }
    say(d, "bh: running in the iothread; writing to the pipe, answering with a BH");
    if (write(d->pipe[1], msg, sizeof(msg) - 1) != (ssize_t)sizeof(msg) - 1) {
        d->errors++;
    }
    vmm_bh_schedule_oneshot(d->main_ctx, back_in_main, d, "demo-answer");
    __atomic_fetch_add(&d->events, 1, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

static void on_readable(void *opaque)
{
    Demo *d = opaque;
    char buf[128], line[160];
    ssize_t n = read(d->pipe[0], buf, sizeof(buf) - 1);

    if (n <= 0) {
        return;
    }
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    snprintf(line, sizeof(line), "fd: pipe readable, read \"%s\"", buf);
    say(d, line);
    __atomic_fetch_add(&d->events, 1, __ATOMIC_RELEASE);
}

static void on_tick(void *opaque)
{
    Demo *d = opaque;
    char line[64];

    d->ticks++;
    snprintf(line, sizeof(line), "timer: tick %d", d->ticks);
    say(d, line);
    if (d->ticks == 1) {
        say(d, "main: scheduling a BH into the iothread");
        vmm_bh_schedule_oneshot(vmm_iothread_get_context(d->io), in_iothread, d, "demo");
    }
    if (d->ticks < 3) {
        vmm_timer_mod(d->timer, vmm_clock_ns() + 40 * 1000000);
    }
}

static bool not_done(Demo *d)
{
    return d->ticks < 3 || __atomic_load_n(&d->events, __ATOMIC_ACQUIRE) < 3;
}

int main(void)
{
    Demo d = { .t0 = vmm_clock_ns() };
    int err = 0;

    pthread_setname_np(pthread_self(), "main");
    printf("vmmkit %s AioContext demo\n", vmm_version());
    d.main_ctx = vmm_aio_context_main();
    d.io = vmm_iothread_new("iothread0", NULL, &err);
    if (!d.main_ctx || !d.io) {
        fprintf(stderr, "demo: cannot start: %s\n", strerror(-err));
        return 1;
    }
    static const char *const mon[] = { "auto", "poll", "epoll", "io_uring" };
    printf("fd monitor: main loop %s, iothread %s\n",
           mon[vmm_aio_context_fdmon(d.main_ctx) & 3],
           mon[vmm_aio_context_fdmon(vmm_iothread_get_context(d.io)) & 3]);
    if (pipe2(d.pipe, O_NONBLOCK | O_CLOEXEC) < 0 ||
        vmm_aio_set_fd_handler(d.main_ctx, d.pipe[0], on_readable, NULL, NULL, NULL, &d) < 0) {
        perror("demo: pipe");
        return 1;
    }
    d.timer = vmm_timer_new(d.main_ctx, on_tick, &d);
    vmm_timer_mod(d.timer, vmm_clock_ns() + 40 * 1000000);

    VMM_AIO_WAIT_WHILE(NULL, not_done(&d));
    say(&d, "main: all events seen; stopping the iothread");

    vmm_aio_set_fd_handler(d.main_ctx, d.pipe[0], NULL, NULL, NULL, NULL, NULL);
    vmm_timer_free(d.timer);
    vmm_iothread_destroy(d.io);
    close(d.pipe[0]);
    close(d.pipe[1]);
    printf(d.errors ? "demo: FAILED (%d errors)\n" : "demo: OK\n", d.errors);
    return d.errors ? 1 : 0;
}
