/* SPDX-License-Identifier: MIT */
/*
 * vmmkit's event loop inside your own GLib main loop.
 *
 * The main AioContext becomes a GSource of the program's GMainLoop, so
 * vmmkit's timers, bottom halves (BHs) and fd handlers run beside the
 * program's own GLib sources.  An iothread runs a second AioContext in its
 * own thread; a BH scheduled into another context is how work crosses
 * threads.  What happens:
 *   1. a vmmkit timer on the main context fires every 20 ms, three times;
 *   2. on each tick the main loop schedules a BH into the iothread;
 *   3. that BH (in the iothread) schedules a BH back into the main context;
 *   4. after three round trips the main loop quits.
 *
 * Build: cc glib-loop.c $(pkg-config --cflags --libs vmmkit) -o glib-loop
 */
#include <glib.h>
#include <stdio.h>

#include <vmmkit/vmmkit.h>

typedef struct App {
    GMainLoop *loop;
    VmmAioContext *main_ctx;
    VmmIOThread *io;
    VmmTimer *timer;
    VmmBH *to_io;           /* runs in the iothread */
    VmmBH *back;            /* runs in the main loop */
    int ticks;
    int round_trips;        /* only touched in the main loop */
    int errors;
} App;

/* Main loop: a BH from the iothread arrived. */
static void back_in_main(void *opaque)
{
    App *app = opaque;
    if (!vmm_aio_context_in_thread(app->main_ctx)) {
        app->errors++;
    }
    app->round_trips++;
    printf("round trip %d done\n", app->round_trips);
    if (app->round_trips == 3) {
        g_main_loop_quit(app->loop);
    }
}

/* Iothread: vmm_bh_schedule() is safe from any thread, so reply with a BH
 * into the main context. */
static void in_iothread(void *opaque)
{
    App *app = opaque;
    if (vmm_aio_context_current() != vmm_iothread_get_context(app->io)) {
        app->errors++;
    }
    vmm_bh_schedule(app->back);
}

/* Main loop: the timer fired. */
static void tick(void *opaque)
{
    App *app = opaque;
    app->ticks++;
    vmm_bh_schedule(app->to_io);
    if (app->ticks < 3) {
        vmm_timer_mod(app->timer, vmm_clock_ns() + 20 * 1000 * 1000);
    }
}

/* A plain GLib source beside vmmkit's: a guard against hanging forever. */
static gboolean give_up(gpointer opaque)
{
    App *app = opaque;
    fprintf(stderr, "glib-loop: timed out\n");
    app->errors++;
    g_main_loop_quit(app->loop);
    return G_SOURCE_REMOVE;
}

int main(void)
{
    App app = { 0 };
    int err = 0;

    /* The main context, attached to GLib's default GMainContext. */
    app.main_ctx = vmm_aio_context_main();
    GSource *src = vmm_aio_context_get_g_source(app.main_ctx);
    g_source_attach(src, NULL);
    g_source_unref(src);
    app.loop = g_main_loop_new(NULL, FALSE);

    app.io = vmm_iothread_new("example-io", NULL, &err);
    if (!app.io) {
        fprintf(stderr, "glib-loop: iothread: %s\n", vmm_strerror(err));
        return 1;
    }
    app.to_io = vmm_bh_new(vmm_iothread_get_context(app.io), in_iothread, &app, "to-io");
    app.back = vmm_bh_new(app.main_ctx, back_in_main, &app, "back");
    app.timer = vmm_timer_new(app.main_ctx, tick, &app);
    vmm_timer_mod(app.timer, vmm_clock_ns() + 20 * 1000 * 1000);
    guint guard = g_timeout_add_seconds(10, give_up, &app);

    g_main_loop_run(app.loop);

    g_source_remove(guard);
    vmm_timer_free(app.timer);
    vmm_bh_delete(app.to_io);       /* freed by the iothread's next poll */
    vmm_iothread_destroy(app.io);   /* after it, no BH can reach "back" */
    vmm_bh_delete(app.back);
    g_main_context_iteration(NULL, FALSE);  /* lets the main context free it */
    g_main_loop_unref(app.loop);
    printf("ticks %d, round trips %d, errors %d\n", app.ticks, app.round_trips, app.errors);
    return app.round_trips == 3 && app.errors == 0 ? 0 : 1;
}
