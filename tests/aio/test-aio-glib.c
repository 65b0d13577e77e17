/* SPDX-License-Identifier: MIT */
/*
 * An AioContext attached to a GMainContext runs inside a real GMainLoop:
 * a BH scheduled from another thread, an fd handler, a timer and a nested
 * vmm_aio_poll() all happen while GLib drives the loop.
 */
#include <fcntl.h>
#include <glib.h>
#include <pthread.h>

#include "aio-test-util.h"
#include "vmmkit/aio.h"

typedef struct State {
    VmmAioContext *ctx;
    GMainLoop *loop;
    int fds[2];
    int bh_runs, reads, timer_runs, nested_runs;
    VmmTimer *timer;
    GThread *owner;
    bool timed_out;
} State;

static void nested_cb(void *opaque)
{
    ((State *)opaque)->nested_runs++;
}

static void timer_cb(void *opaque)
{
    State *s = opaque;
    s->timer_runs++;
    g_main_loop_quit(s->loop);
}

static void read_cb(void *opaque)
{
    State *s = opaque;
    char c;
    assert_int_equal(read(s->fds[0], &c, 1), 1);
    s->reads++;
    /* A nested poll from inside GLib's dispatch runs a BH. */
    vmm_bh_schedule_oneshot(s->ctx, nested_cb, s, "nested");
    assert_true(vmm_aio_poll(s->ctx, false));
    vmm_timer_mod(s->timer, vmm_clock_ns() + 5 * 1000000);
}

static void bh_cb(void *opaque)
{
    State *s = opaque;
    assert_ptr_equal(g_thread_self(), s->owner);
    assert_ptr_equal(vmm_aio_context_current(), s->ctx);
    s->bh_runs++;
    assert_int_equal(write(s->fds[1], "x", 1), 1);
}

static void *remote(void *opaque)
{
    State *s = opaque;
    g_usleep(20000);     /* let the loop block first */
    vmm_bh_schedule_oneshot(s->ctx, bh_cb, s, "from-thread");
    return NULL;
}

static gboolean safety_timeout(gpointer opaque)
{
    State *s = opaque;
    s->timed_out = true;
    g_main_loop_quit(s->loop);
    return G_SOURCE_REMOVE;
}

static void test_gsource_runs_in_gmainloop(void **state)
{
    (void)state;
    State s = { 0 };
    pthread_t t;

    s.ctx = vmm_aio_context_new(NULL, NULL);
    assert_non_null(s.ctx);
    s.owner = g_thread_self();
    assert_int_equal(pipe2(s.fds, O_NONBLOCK), 0);
    assert_int_equal(vmm_aio_set_fd_handler(s.ctx, s.fds[0], read_cb, NULL, NULL, NULL, &s), 0);
    s.timer = vmm_timer_new(s.ctx, timer_cb, &s);

    GMainContext *gctx = g_main_context_new();
    GSource *src = vmm_aio_context_get_g_source(s.ctx);
    assert_non_null(src);
    /* GLib polls the fds itself: io_uring is switched off. */
    assert_int_not_equal(vmm_aio_context_fdmon(s.ctx), VMM_FDMON_IO_URING);
    g_source_attach(src, gctx);
    GSource *safety = g_timeout_source_new(5000);
    g_source_set_callback(safety, safety_timeout, &s, NULL);
    g_source_attach(safety, gctx);
    s.loop = g_main_loop_new(gctx, FALSE);

    pthread_create(&t, NULL, remote, &s);
    g_main_loop_run(s.loop);
    pthread_join(t, NULL);

    assert_false(s.timed_out);
    assert_int_equal(s.bh_runs, 1);
    assert_int_equal(s.reads, 1);
    assert_int_equal(s.nested_runs, 1);
    assert_int_equal(s.timer_runs, 1);

    /* Handlers added after attaching are watched too. */
    assert_int_equal(vmm_aio_set_fd_handler(s.ctx, s.fds[0], NULL, NULL, NULL, NULL, NULL), 0);

    g_source_destroy(safety);
    g_source_unref(safety);
    g_source_destroy(src);
    g_source_unref(src);           /* drops the source's context reference */
    g_main_loop_unref(s.loop);
    g_main_context_unref(gctx);
    vmm_timer_free(s.timer);
    close(s.fds[0]);
    close(s.fds[1]);
    vmm_aio_context_unref(s.ctx);
}

static void count_cb(void *opaque)
{
    (*(int *)opaque)++;
}

static gboolean quit_when(gpointer opaque)
{
    g_main_loop_quit(opaque);
    return G_SOURCE_REMOVE;
}

static void test_gsource_handler_added_later(void **state)
{
    (void)state;
    VmmAioContext *ctx = vmm_aio_context_new(NULL, NULL);
    GMainContext *gctx = g_main_context_new();
    GSource *src = vmm_aio_context_get_g_source(ctx);
    GSource *again = vmm_aio_context_get_g_source(ctx);
    assert_ptr_equal(src, again);
    g_source_unref(again);
    g_source_attach(src, gctx);

    int fds[2], reads = 0;
    assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
    assert_int_equal(vmm_aio_set_fd_handler(ctx, fds[1], NULL, count_cb, NULL, NULL, &reads), 0);
    /* The pipe is writable at once: the write handler fires under GLib. */
    for (int i = 0; i < 100 && !reads; i++) {
        g_main_context_iteration(gctx, TRUE);
    }
    assert_true(reads >= 1);
    assert_int_equal(vmm_aio_set_fd_handler(ctx, fds[1], NULL, NULL, NULL, NULL, NULL), 0);

    /* An idle loop blocks (no busy spin) and still runs timers. */
    GMainLoop *loop = g_main_loop_new(gctx, FALSE);
    GSource *q = g_timeout_source_new(30);
    g_source_set_callback(q, quit_when, loop, NULL);
    g_source_attach(q, gctx);
    g_main_loop_run(loop);
    g_source_unref(q);
    g_main_loop_unref(loop);

    g_source_destroy(src);
    g_source_unref(src);
    g_main_context_unref(gctx);
    close(fds[0]);
    close(fds[1]);
    vmm_aio_context_unref(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gsource_runs_in_gmainloop),
        cmocka_unit_test(test_gsource_handler_added_later),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
