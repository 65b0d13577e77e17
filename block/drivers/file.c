/* SPDX-License-Identifier: MIT */
/*
 * The file driver: a regular file or block device.  I/O goes through an
 * io_uring per AioContext (liburing; one ring in the context's private
 * slot, submitted in batches from a BH, completions reaped by the ring
 * fd's handler and its poll callback), or, where the kernel refuses
 * io_uring or with aio=threads, through the context's thread pool with
 * preadv/pwritev.  Options:
 *   filename=PATH (required)  aio=auto|io_uring|threads  direct=off (O_DIRECT)
 * Flush is fdatasync; discard punches a hole; write_zeroes uses
 * fallocate(ZERO_RANGE) (the generic layer writes zeroes if unsupported).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio/aio-internal.h"
#include "block/block-int.h"

typedef enum { FILE_AIO_URING, FILE_AIO_THREADS } FileAio;

typedef struct FileState {
    int fd;
    FileAio aio;
    bool direct;
    char *filename;
} FileState;

static const BlockOptDesc file_opts[] = {
    { "filename", BLOCK_OPT_STRING, "path of the image" },
    { "aio", BLOCK_OPT_STRING, "auto, io_uring or threads" },
    { "direct", BLOCK_OPT_BOOL, "open with O_DIRECT" },
    { NULL, 0, NULL },
};

/* ---- Per-context io_uring ------------------------------------------------------- */

#define RING_ENTRIES 128

typedef struct FileRing {
    struct io_uring ring;
    int efd;                        /* eventfd the kernel signals per CQE */
    VmmAioContext *ctx;
    VmmBH *submit_bh;
    unsigned unsubmitted;           /* this context's thread only */
    unsigned inflight;
} FileRing;

typedef struct FileReq {
    VmmCoroutine *co;
    int res;
    bool done;
} FileReq;

static int ring_key = -1;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;
static int uring_usable = -1;       /* -1 unknown, 0 no, 1 yes (atomic) */

static void ring_reap(FileRing *r)
{
    struct io_uring_cqe *cqe;
    FileReq *ready[RING_ENTRIES];
    unsigned n;

    do {
        unsigned head;
        n = 0;
        io_uring_for_each_cqe(&r->ring, head, cqe) {
            FileReq *req = io_uring_cqe_get_data(cqe);
            req->res = cqe->res;
            ready[n++] = req;
            if (n == VMM_ARRAY_SIZE(ready)) {
                break;
            }
        }
        io_uring_cq_advance(&r->ring, n);
        r->inflight -= n;
        /* Wake after advancing: a woken coroutine may submit more. */
        for (unsigned i = 0; i < n; i++) {
            ready[i]->done = true;
            /* A coroutine that reaps its own completion (SQ full path) is
             * running: it sees done without being woken. */
            if (ready[i]->co && ready[i]->co != vmm_coroutine_self()) {
                vmm_aio_co_wake(ready[i]->co);
            }
        }
    } while (n == VMM_ARRAY_SIZE(ready));
}

/*
 * The eventfd is only armed while requests are in flight that nobody is
 * looking for: while we submit and reap ourselves it stays off, so a read
 * that completes inline (page cache) costs no eventfd write, wake-up or
 * read.  Pairing: we arm (store to the CQ flags), full barrier, then read
 * the CQ tail; the kernel posts a CQE (tail), then reads the flags to
 * decide whether to signal.  A CQE posted before we armed is seen by our
 * read; one posted after signals.
 */
static void ring_arm_eventfd(FileRing *r, bool on)
{
    /* Kernels without CQ flags keep the eventfd always on: still correct. */
    (void)io_uring_cq_eventfd_toggle(&r->ring, on);
    if (on) {
        vk_smp_mb();       /* pairs with the kernel's CQE post / flags read */
    }
}

static void ring_submit(FileRing *r)
{
    ring_arm_eventfd(r, false);
    if (r->unsubmitted) {
        int ret = io_uring_submit(&r->ring);
        if (ret >= 0) {
            r->unsubmitted -= MIN((unsigned)ret, r->unsubmitted);
        } else if (ret != -EAGAIN && ret != -EBUSY && ret != -EINTR) {
            vk_error("file: io_uring_submit: %s", strerror(-ret));
        }
        if (r->unsubmitted) {
            vmm_bh_schedule(r->submit_bh);   /* retry on the next pass */
        }
    }
    if (io_uring_cq_ready(&r->ring)) {
        ring_reap(r);
    }
    if (r->inflight > r->unsubmitted) {
        ring_arm_eventfd(r, true);
        if (io_uring_cq_ready(&r->ring)) {
            ring_reap(r);
        }
    }
}

static void ring_submit_bh(void *opaque)
{
    ring_submit(opaque);
}

static void ring_read(void *opaque)
{
    FileRing *r = opaque;
    uint64_t v;
    /* Clear before reaping: a CQE posted after this read signals again. */
    if (read(r->efd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
        vk_error("file: eventfd read: %s", strerror(errno));
    }
    ring_submit(r);
}

static void ring_poll_ready(void *opaque)
{
    ring_submit(opaque);
}

static bool ring_poll(void *opaque)
{
    FileRing *r = opaque;
    return io_uring_cq_ready(&r->ring) > 0;
}

static void ring_destroy(VmmAioContext *ctx, void *value)
{
    FileRing *r = value;
    vmm_aio_set_fd_handler(ctx, r->efd, NULL, NULL, NULL, NULL, NULL);
    vmm_bh_delete(r->submit_bh);
    io_uring_queue_exit(&r->ring);
    close(r->efd);
    g_free(r);
}

static void *ring_create(VmmAioContext *ctx, void *arg)
{
    (void)arg;
    FileRing *r = g_new0(FileRing, 1);
    if (io_uring_queue_init(RING_ENTRIES, &r->ring, 0) < 0) {
        g_free(r);
        return NULL;
    }
    r->ctx = ctx;
    /* Completions are signalled through an eventfd rather than by polling
     * the ring fd itself: any fd monitor watches an eventfd reliably,
     * while a ring fd polled from another io_uring (fdmon io_uring) lost
     * wake-ups in our tests. */
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->submit_bh = vmm_bh_new(ctx, ring_submit_bh, r, "file-uring-submit");
    if (r->efd < 0 || !r->submit_bh || io_uring_register_eventfd(&r->ring, r->efd) < 0 ||
        vmm_aio_set_fd_handler(ctx, r->efd, ring_read, NULL, ring_poll, ring_poll_ready,
                               r) < 0) {
        if (r->submit_bh) {
            vmm_bh_delete(r->submit_bh);
        }
        if (r->efd >= 0) {
            close(r->efd);
        }
        io_uring_queue_exit(&r->ring);
        g_free(r);
        return NULL;
    }
    return r;
}

static void ring_key_init(void)
{
    ring_key = aio_slot_key_new("file-io_uring", ring_destroy);
}

static bool probe_uring(void)
{
    int v = vk_atomic_read(&uring_usable);
    if (v < 0) {
        struct io_uring ring;
        v = io_uring_queue_init(4, &ring, 0) == 0;
        if (v) {
            io_uring_queue_exit(&ring);
        }
        vk_atomic_set(&uring_usable, v);
    }
    return v;
}

/* The running context's ring, or NULL (no context, or no io_uring).
 * Not inlined: the coroutine caller must not cache the thread's context. */
static VMM_NOINLINE FileRing *current_ring(void)
{
    pthread_once(&ring_once, ring_key_init);
    VmmAioContext *ctx = aio_get_current_context_raw();
    if (!ctx || ring_key < 0) {
        return NULL;
    }
    return aio_slot_get_or_create(ctx, ring_key, ring_create, NULL);
}

/* Get an SQE, flushing the queue if it is full. */
static struct io_uring_sqe *ring_get_sqe(FileRing *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        ring_submit(r);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

/* Queue the prepared @sqe, yield until it completes, return its result. */
static int coroutine_fn ring_wait(FileRing *r, struct io_uring_sqe *sqe, FileReq *req)
{
    req->co = vmm_coroutine_self();
    io_uring_sqe_set_data(sqe, req);
    r->unsubmitted++;
    r->inflight++;
    if (r->inflight == 1) {
        /* Nothing else in flight to batch with: submit now, and a read the
         * kernel completes inline (page cache) returns without a yield. */
        ring_submit(r);
        if (req->done) {
            return req->res;
        }
    } else {
        vmm_bh_schedule(r->submit_bh);   /* batch with the others */
    }
    while (!req->done) {
        vmm_coroutine_yield();
    }
    return req->res;
}

/* ---- Thread-pool path --------------------------------------------------------------- */

typedef struct PoolReq {
    int fd;
    int op;                          /* 0 read, 1 write, 2 fdatasync, 3 fallocate */
    const struct iovec *iov;
    int iovcnt;
    int64_t offset, len;
    int mode;
} PoolReq;

static int pool_fn(void *opaque)
{
    PoolReq *p = opaque;
    ssize_t r;
    switch (p->op) {
    case 0:
        r = preadv(p->fd, p->iov, p->iovcnt, p->offset);
        break;
    case 1:
        r = pwritev(p->fd, p->iov, p->iovcnt, p->offset);
        break;
    case 2:
        r = fdatasync(p->fd);
        break;
    default:
        r = fallocate(p->fd, p->mode, p->offset, p->len);
        break;
    }
    if (r < 0) {
        return -errno;
    }
    return r > INT32_MAX ? INT32_MAX : (int)r;
}

/* ---- I/O ---------------------------------------------------------------------------- */

/* One readv/writev attempt: bytes transferred or -errno. */
static int coroutine_fn file_rw_once(FileState *s, bool write, int64_t offset,
                                     const struct iovec *iov, int iovcnt)
{
    FileRing *r = s->aio == FILE_AIO_URING ? current_ring() : NULL;
    if (r) {
        struct io_uring_sqe *sqe = ring_get_sqe(r);
        if (sqe) {
            FileReq req = { 0 };
            if (write) {
                io_uring_prep_writev(sqe, s->fd, iov, iovcnt, offset);
            } else {
                io_uring_prep_readv(sqe, s->fd, iov, iovcnt, offset);
            }
            return ring_wait(r, sqe, &req);
        }
    }
    PoolReq p = { .fd = s->fd, .op = write, .iov = iov, .iovcnt = iovcnt, .offset = offset };
    return vmm_thread_pool_co_submit(pool_fn, &p);
}

/* Full transfer, retrying short ones; reads past EOF read as zeroes. */
static int coroutine_fn file_rw(VmmBlockNode *n, bool write, int64_t offset, int64_t bytes,
                                const struct iovec *iov, int iovcnt)
{
    FileState *s = n->opaque;
    struct iovec *rest = NULL;
    int64_t done = 0;
    int ret = 0;

    while (done < bytes) {
        const struct iovec *cur = iov;
        int curcnt = iovcnt;
        if (done) {
            /* Slice off what was transferred (rare: short transfers). */
            g_free(rest);
            rest = g_new(struct iovec, iovcnt);
            curcnt = block_iov_slice(iov, iovcnt, (size_t)done, (size_t)(bytes - done),
                                     rest, iovcnt);
            cur = rest;
        }
        int r = file_rw_once(s, write, offset + done, cur, curcnt);
        if (r == -EINTR || r == -EAGAIN) {
            continue;
        }
        if (r < 0) {
            ret = r;
            break;
        }
        if (r == 0) {
            if (write) {
                ret = -EIO;
            } else {
                block_iov_memset(cur, curcnt, 0, bytes - done);   /* EOF */
            }
            break;
        }
        done += r;
    }
    g_free(rest);
    return ret;
}

static int coroutine_fn file_co_preadv(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                       const struct iovec *iov, int iovcnt, int flags)
{
    (void)flags;
    return file_rw(n, false, offset, bytes, iov, iovcnt);
}

static int coroutine_fn file_co_pwritev(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                        const struct iovec *iov, int iovcnt, int flags)
{
    (void)flags;
    return file_rw(n, true, offset, bytes, iov, iovcnt);
}

static int coroutine_fn file_co_flush(VmmBlockNode *n)
{
    FileState *s = n->opaque;
    FileRing *r = s->aio == FILE_AIO_URING ? current_ring() : NULL;
    struct io_uring_sqe *sqe = r ? ring_get_sqe(r) : NULL;
    if (sqe) {
        FileReq req = { 0 };
        io_uring_prep_fsync(sqe, s->fd, IORING_FSYNC_DATASYNC);
        int ret = ring_wait(r, sqe, &req);
        return ret > 0 ? 0 : ret;
    }
    PoolReq p = { .fd = s->fd, .op = 2 };
    int ret = vmm_thread_pool_co_submit(pool_fn, &p);
    return ret > 0 ? 0 : ret;
}

static int coroutine_fn file_fallocate(VmmBlockNode *n, int mode, int64_t offset,
                                       int64_t bytes)
{
    FileState *s = n->opaque;
    PoolReq p = { .fd = s->fd, .op = 3, .offset = offset, .len = bytes, .mode = mode };
    int ret = vmm_thread_pool_co_submit(pool_fn, &p);
    if (ret == -EOPNOTSUPP || ret == -ENOSYS) {
        return -ENOTSUP;
    }
    return ret > 0 ? 0 : ret;
}

static int coroutine_fn file_co_pdiscard(VmmBlockNode *n, int64_t offset, int64_t bytes)
{
    return file_fallocate(n, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, bytes);
}

static int coroutine_fn file_co_pwrite_zeroes(VmmBlockNode *n, int64_t offset,
                                              int64_t bytes, int flags)
{
    int mode = (flags & VMM_REQ_MAY_UNMAP) ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                           : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    int ret = file_fallocate(n, mode, offset, bytes);
    if (ret == -ENOTSUP && (flags & VMM_REQ_MAY_UNMAP)) {
        ret = file_fallocate(n, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, bytes);
    }
    return ret;
}

/* ---- Open ---------------------------------------------------------------------------- */

/* The smallest O_DIRECT read alignment that works (a block device tells). */
static uint32_t probe_alignment(int fd, bool blockdev)
{
    int ssz;
    if (blockdev && ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz > 0) {
        return (uint32_t)ssz;
    }
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, 4096) != 0) {
        return 4096;
    }
    uint32_t found = 4096;
    for (uint32_t a = 512; a <= 4096; a *= 2) {
        /* The buffer is 4096-aligned, so only the length/offset vary. */
        ssize_t r = pread(fd, buf, a, 0);
        if (r > 0) {
            found = a;
            break;
        }
        if (r == 0) {
            break;                     /* empty file: keep the safe 4096 */
        }
    }
    free(buf);
    return found;
}

static int file_open(VmmBlockNode *n, BlockOpts *o, int flags, GError **errp)
{
    FileState *s = n->opaque;
    g_autofree char *aio = block_opts_take(o, "aio");
    int err = EINVAL;
    s->fd = -1;
    s->filename = block_opts_take(o, "filename");
    (void)flags;

    if (!s->filename || !*s->filename) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "Option 'filename' is required");
        goto fail;
    }
    if (!block_opts_take_bool(o, "direct", false, &s->direct, errp)) {
        goto fail;
    }
    if (!aio || !strcmp(aio, "auto")) {
        s->aio = probe_uring() ? FILE_AIO_URING : FILE_AIO_THREADS;
    } else if (!strcmp(aio, "io_uring")) {
        if (!probe_uring()) {
            g_set_error(errp, BLOCK_ERR_DOMAIN, ENOSYS,
                        "aio=io_uring: the kernel refuses io_uring here (use aio=threads)");
            err = ENOSYS;
            goto fail;
        }
        s->aio = FILE_AIO_URING;
    } else if (!strcmp(aio, "threads")) {
        s->aio = FILE_AIO_THREADS;
    } else {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Option 'aio' expects auto, io_uring or threads, not '%s'", aio);
        goto fail;
    }

    int oflags = (n->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (s->direct ? O_DIRECT : 0);
    s->fd = open(s->filename, oflags);
    if (s->fd < 0) {
        err = errno;
        g_set_error(errp, BLOCK_ERR_DOMAIN, err, "Could not open '%s'%s: %s", s->filename,
                    n->read_only ? " read-only" : "", g_strerror(err));
        goto fail;
    }
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        err = errno;
        g_set_error(errp, BLOCK_ERR_DOMAIN, err, "Could not stat '%s': %s", s->filename,
                    g_strerror(err));
        goto fail;
    }
    bool blockdev = S_ISBLK(st.st_mode);
    if (!blockdev && !S_ISREG(st.st_mode)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "'%s' is neither a regular file nor a block device", s->filename);
        goto fail;
    }
    uint64_t size = st.st_size;
    if (blockdev && ioctl(s->fd, BLKGETSIZE64, &size) < 0) {
        err = errno;
        g_set_error(errp, BLOCK_ERR_DOMAIN, err, "Could not get the size of '%s': %s",
                    s->filename, g_strerror(err));
        goto fail;
    }
    n->total_bytes = (int64_t)size;
    if (s->direct) {
        n->request_alignment = probe_alignment(s->fd, blockdev);
        n->mem_alignment = MAX(n->request_alignment, 512u);
    }
    /* Linux transfers at most 2G - 4k per read/write system call (and an
     * io_uring SQE); larger requests are split by the generic layer rather
     * than looping on short transfers. */
    n->max_transfer = VMM_ALIGN_DOWN(0x7ffff000u, n->request_alignment);
    return 0;

fail:
    if (s->fd >= 0) {
        close(s->fd);
    }
    g_free(s->filename);
    s->fd = -1;
    s->filename = NULL;
    return -err;
}

static void file_close(VmmBlockNode *n)
{
    FileState *s = n->opaque;
    if (s && s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
        g_free(s->filename);
    }
}

const BlockDriver block_driver_file = {
    .name = "file",
    .instance_size = sizeof(FileState),
    .opts = file_opts,
    .open = file_open,
    .close = file_close,
    .co_preadv = file_co_preadv,
    .co_pwritev = file_co_pwritev,
    .co_flush = file_co_flush,
    .co_pdiscard = file_co_pdiscard,
    .co_pwrite_zeroes = file_co_pwrite_zeroes,
};
