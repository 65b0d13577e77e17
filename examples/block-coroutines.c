/* SPDX-License-Identifier: MIT */
/*
 * Block I/O from coroutines in an iothread.
 *
 * A raw image file is opened as a BlockBackend (a "raw" node over a
 * "file" node, io_uring underneath where the kernel has it) and moved into
 * an iothread.  Four coroutines run there, each writing its own 4 KiB
 * pattern and reading it back; while one waits for its I/O the others run.
 * The main loop waits for all of them, and the program checks the file
 * from the host side.
 *
 * Build: cc block-coroutines.c $(pkg-config --cflags --libs vmmkit) -o block-coroutines
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vmmkit/vmmkit.h>

#define NJOBS   4
#define CHUNK   4096

typedef struct Job {
    VmmBlockBackend *blk;
    int index;
    int ret;
    int done;               /* set last, read by the main loop */
} Job;

/* Runs as a coroutine in the iothread: vmm_blk_co_* yield while the I/O is
 * in flight and return when it completed. */
static void job_entry(void *opaque)
{
    Job *j = opaque;
    unsigned char out[CHUNK], in[CHUNK];
    struct iovec wv = { out, CHUNK }, rv = { in, CHUNK };
    int64_t offset = (int64_t)j->index * CHUNK;

    memset(out, 'A' + j->index, CHUNK);
    j->ret = vmm_blk_co_pwritev(j->blk, offset, CHUNK, &wv, 1, 0);
    if (j->ret == 0) {
        j->ret = vmm_blk_co_preadv(j->blk, offset, CHUNK, &rv, 1, 0);
    }
    if (j->ret == 0 && memcmp(in, out, CHUNK) != 0) {
        j->ret = -1;
    }
    if (j->index == 0 && j->ret == 0) {
        j->ret = vmm_blk_co_flush(j->blk);
    }
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();    /* the main loop waits on "done" (below) */
}

static bool all_done(Job *jobs)
{
    for (int i = 0; i < NJOBS; i++) {
        if (!__atomic_load_n(&jobs[i].done, __ATOMIC_ACQUIRE)) {
            return false;
        }
    }
    return true;
}

int main(void)
{
    char path[] = "/tmp/vmmkit-example-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0) {
        perror("block-coroutines: image");
        return 1;
    }

    /* The main loop is this thread: it opens the image and owns the graph. */
    char options[256];
    snprintf(options, sizeof(options), "driver=raw,file.driver=file,file.filename=%s", path);
    GError *gerr = NULL;
    VmmBlockBackend *blk = vmm_blk_new_open(options, 0, &gerr);
    if (!blk) {
        fprintf(stderr, "block-coroutines: %s\n", gerr->message);
        g_error_free(gerr);
        return 1;
    }

    int err = 0;
    VmmIOThread *io = vmm_iothread_new("example-io", NULL, &err);
    if (!io) {
        fprintf(stderr, "block-coroutines: iothread: %s\n", vmm_strerror(err));
        return 1;
    }
    VmmAioContext *ctx = vmm_iothread_get_context(io);
    if (vmm_blk_set_context(blk, ctx, &gerr) < 0) {
        fprintf(stderr, "block-coroutines: %s\n", gerr->message);
        return 1;
    }

    /* Start the coroutines in the iothread... */
    Job jobs[NJOBS];
    for (int i = 0; i < NJOBS; i++) {
        jobs[i] = (Job){ .blk = blk, .index = i };
        VmmCoroutine *co = vmm_coroutine_create(job_entry, &jobs[i], &err);
        if (!co) {
            return 1;
        }
        vmm_aio_co_schedule(ctx, co);
    }
    /* ...and wait in the main loop until they all finished. */
    VMM_AIO_WAIT_WHILE(ctx, !all_done(jobs));

    int failed = 0;
    for (int i = 0; i < NJOBS; i++) {
        if (jobs[i].ret) {
            fprintf(stderr, "block-coroutines: job %d: %s\n", i, vmm_strerror(jobs[i].ret));
            failed = 1;
        }
    }

    /* Back to the main context before the iothread goes away. */
    vmm_blk_set_context(blk, vmm_aio_context_main(), NULL);
    vmm_blk_unref(blk);
    vmm_iothread_destroy(io);

    /* What the host sees in the file. */
    for (int i = 0; i < NJOBS && !failed; i++) {
        unsigned char c = 0;
        if (pread(fd, &c, 1, (off_t)i * CHUNK + CHUNK - 1) != 1 || c != 'A' + i) {
            fprintf(stderr, "block-coroutines: block %d holds 0x%02x\n", i, c);
            failed = 1;
        }
    }
    close(fd);
    unlink(path);
    printf("%s\n", failed ? "block-coroutines: FAILED" : "block-coroutines: ok");
    return failed;
}
