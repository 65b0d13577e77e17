/* SPDX-License-Identifier: MIT */
/*
 * Live migration of a running machine over a stream (machine.h,
 * docs/machine.md "Live migration").
 *
 * The stream: a hello (magic, version, the configuration a destination
 * must match), then messages of a 24-byte header (type, index, length,
 * checksum of the payload) and a payload: RAM pages (their page numbers in
 * RAM-image order, then their bytes), pages that became zero, the state
 * records of a snapshot (snapshot.c: vCPUs, VM, UART, devices), and an
 * end mark.  Then the two-phase hand-over: the destination, loaded, sends
 * 'R'; the source answers 'C' (commit) and from then on never resumes on
 * its own; the destination runs only with 'C' and says 'G' (or 'N').
 *
 * Source: KVM's dirty log on the RAM slots and the guest memory's log of
 * device writes are switched on; a first pass sends every non-zero page;
 * each following round collects the pages the vCPUs dirtied and sends
 * them, timing itself: when the dirty pages of a round would go in the
 * downtime budget at the bandwidth measured so far, or after max_rounds,
 * the machine is paused (vCPUs out, devices quiesced: nothing in flight)
 * and the last dirty pages, every page a device wrote since the start
 * (the device log, read now that every write is done) and the used rings
 * of the enabled queues go with the state records.  Until the source has
 * queued 'C', any failure (a closed stream, an error, a cancel) resumes
 * it with nothing lost - the destination never ran.  After 'C': 'G' and
 * the source stops; else it stays paused and says why (-ENOLINK: the
 * destination may or may not run; -ECONNABORTED: it does not).
 *
 * Destination: vmm_machine_incoming() builds a machine with empty RAM,
 * writes the pages where they go, checks every message (bounds, checksum),
 * applies the records like a restore; vmm_machine_start() loads the
 * devices, sends 'R', waits for 'C', runs the vCPUs and sends 'G'.
 */
#include "machine/snapshot-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/atomic.h"
#include "util/log.h"

#define MIG_MAGIC "VMMKMIG1"
#define MIG_VERSION 2                   /* 2: the configuration has the TSC rate */
#define MIG_BATCH 256                   /* pages per message */
#define MIG_ZERO_BATCH 4096
#define MIG_CORK_MAX (16u << 20)          /* stop-and-copy gathered before a write */
#define MIG_DEFAULT_TIMEOUT_NS (10 * 1000000000ll)
#define MIG_MAX_TIMEOUT_NS (3600 * 1000000000ull)

enum {
    MIG_PAGES = 1,
    MIG_ZERO = 2,
    MIG_END = 3,
    MIG_STATE = 16,                     /* + SNAP_SEC_* */
};

typedef struct MigHello {
    char magic[8];
    uint32_t version;
    uint32_t timeout_ms;                /* the hand-over's bound for the destination */
    SnapConfig cfg;
} MigHello;

typedef struct MigMsg {
    uint32_t type;
    uint32_t index;
    uint64_t len;
    uint64_t sum;                       /* MigSum of the payload */
} MigMsg;

/* ---- The payload checksum ------------------------------------------------------ *
 * A 64-bit multiply-rotate hash over 8-byte words (a partial last word
 * zero-padded), the length mixed in, then a final avalanche: it catches
 * corruption and truncation like a CRC, at a few instructions a word,
 * several times cheaper than zlib's crc32 where it counts - an emulated
 * CPU, and the pages sent while the guest is paused.  Not a defence
 * against a forger (nor was the CRC).  Any split of the bytes into
 * updates gives the same sum. */
typedef struct MigSum {
    uint64_t h, carry, len;
    unsigned nc;                        /* bytes in carry */
} MigSum;

#define SUM_P1 0x9e3779b185ebca87ull
#define SUM_P2 0xc2b2ae3d27d4eb4full

static inline uint64_t sum_word(uint64_t h, uint64_t w)
{
    h ^= w * SUM_P2;
    h = (h << 31) | (h >> 33);
    return h * SUM_P1;
}

static void sum_init(MigSum *s)
{
    *s = (MigSum){ .h = SUM_P1 };
}

static void sum_update(MigSum *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->len += n;
    while (s->nc && n) {                /* finish a partial word */
        s->carry |= (uint64_t)*p++ << (8 * s->nc);
        n--;
        if (++s->nc == 8) {
            s->h = sum_word(s->h, s->carry);
            s->carry = 0;
            s->nc = 0;
        }
    }
    uint64_t h = s->h;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = sum_word(h, w);
    }
    s->h = h;
    while (n--) {
        s->carry |= (uint64_t)*p++ << (8 * s->nc++);
    }
}

static uint64_t sum_final(MigSum *s)
{
    uint64_t h = s->nc ? sum_word(s->h, s->carry) : s->h;
    h ^= s->len * SUM_P1;
    h ^= h >> 33;
    h *= SUM_P2;
    h ^= h >> 29;
    h *= SUM_P1;
    return h ^ (h >> 32);
}

/* ---- Stream I/O (cancellable) ------------------------------------------------ */

typedef struct Stream {
    VmmMachine *m;          /* source: its cancel flag; NULL: not cancellable */
    int fd;
    uint64_t bytes;
    int64_t timeout_ns;     /* the longest wait for the peer to move; 0: none */
    /* Corked (stream_cork): writes gather here and go in one by
     * stream_flush, so the peer wakes once rather than once a message. */
    bool corked;
    uint8_t *cork;
    size_t cork_len, cork_cap;
} Stream;

static bool cancelled(Stream *s)
{
    return s->m && vk_atomic_read(&s->m->migrate_cancel);
}

/* Until @fd is ready for @ev: 0, -ECANCELED, -EPIPE (an error on the
 * stream), or -ETIMEDOUT when the peer moved nothing for s->timeout_ns (a
 * silent peer: a network partition that closes nothing). */
static int io_wait(Stream *s, short ev)
{
    struct pollfd p = { .fd = s->fd, .events = ev };
    int64_t deadline = s->timeout_ns ? vmm_clock_ns() + s->timeout_ns : 0;
    for (;;) {
        if (cancelled(s)) {
            return -ECANCELED;
        }
        int wait_ms = 100;
        if (deadline) {
            int64_t left = deadline - vmm_clock_ns();
            if (left <= 0) {
                return -ETIMEDOUT;
            }
            if (left < 100000000) {
                wait_ms = (int)((left + 999999) / 1000000);
            }
        }
        int n = poll(&p, 1, wait_ms);
        if (n > 0) {
            return (p.revents & (POLLERR | POLLNVAL)) && !(p.revents & ev) ? -EPIPE : 0;
        }
        if (n < 0 && errno != EINTR) {
            return -errno;
        }
    }
}

/* write() to a pipe whose reader is gone fails with EPIPE here instead of
 * killing the process: SIGPIPE blocked in this thread for the call, and
 * one it raised taken back (unless one was pending already). */
static ssize_t pipe_write(int fd, const void *p, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t n = write(fd, p, len);
    int e = errno;
    if (n < 0 && e == EPIPE && !was_pending) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return n;
}

static int s_send(Stream *s, const void *buf, size_t len);

static int s_write(Stream *s, const void *buf, size_t len)
{
    if (len == 0) {                     /* (an empty payload's NULL @buf) */
        return 0;
    }
    if (!s->corked) {
        return s_send(s, buf, len);
    }
    if (s->cork_len && s->cork_len + len > MIG_CORK_MAX) {  /* bounded memory */
        int r = s_send(s, s->cork, s->cork_len);
        s->cork_len = 0;
        if (r < 0) {
            return r;
        }
    }
    if (len > s->cork_cap - s->cork_len) {
        size_t cap = s->cork_cap ? s->cork_cap : 1u << 20;
        while (len > cap - s->cork_len) {
            cap *= 2;
        }
        uint8_t *p = realloc(s->cork, cap);
        if (!p) {
            return -ENOMEM;
        }
        s->cork = p;
        s->cork_cap = cap;
    }
    memcpy(s->cork + s->cork_len, buf, len);
    s->cork_len += len;
    return 0;
}

/* Cork @s with room for @bytes made ready now (its pages touched: page
 * faults are not cheap, least of all under an emulated CPU), before the
 * guest is paused. */
static int stream_cork(Stream *s, size_t bytes)
{
    bytes = bytes < (1u << 20) ? (1u << 20) : bytes > MIG_CORK_MAX ? MIG_CORK_MAX : bytes;
    s->cork = malloc(bytes);
    if (!s->cork) {
        return -ENOMEM;
    }
    memset(s->cork, 0xa5, bytes);       /* not 0: that malloc+memset may become a
                                         * calloc that touches nothing */
    s->cork_cap = bytes;
    s->cork_len = 0;
    s->corked = true;
    return 0;
}

/* Send what the cork gathered (@send; else drop it), uncork, free it. */
static int stream_flush(Stream *s, bool send)
{
    s->corked = false;
    int r = send && s->cork_len ? s_send(s, s->cork, s->cork_len) : 0;
    free(s->cork);
    s->cork = NULL;
    s->cork_len = s->cork_cap = 0;
    return r;
}

static int s_send(Stream *s, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        if (cancelled(s)) {
            return -ECANCELED;
        }
        ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK) {
            n = pipe_write(s->fd, p, len);
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = io_wait(s, POLLOUT);
            if (r < 0) {
                return r;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EPIPE;
        }
        p += n;
        len -= (size_t)n;
        s->bytes += (uint64_t)n;
    }
    return 0;
}

static int s_read(Stream *s, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        int r = io_wait(s, POLLIN);
        if (r < 0) {
            return r;
        }
        ssize_t n = read(s->fd, p, len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EPIPE;     /* the peer closed it */
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_msg(Stream *s, uint32_t type, uint32_t index, const void *a, size_t alen,
                    const void *b, size_t blen)
{
    MigSum c;
    sum_init(&c);
    sum_update(&c, a, alen);
    if (blen) {
        sum_update(&c, b, blen);
    }
    MigMsg h = { .type = type, .index = index, .len = alen + blen, .sum = sum_final(&c) };
    int r = s_write(s, &h, sizeof(h));
    r = r ?: s_write(s, a, alen);
    if (r == 0 && blen) {
        r = s_write(s, b, blen);
    }
    return r;
}

/* ---- Trace ------------------------------------------------------------------------ */

void mig_trace_init(MigTrace *t)
{
    const char *e = getenv("VMM_MIGRATE_TRACE");
    memset(t, 0, sizeof(*t));
    t->on = e && e[0] && strcmp(e, "0") != 0;
}

void mig_trace_mark(MigTrace *t, const char *what)
{
    if (t->on && t->n < MIG_TRACE_MAX) {
        t->t[t->n] = vmm_clock_ns();
        t->what[t->n++] = what;
    }
}

void mig_trace_print(MigTrace *t, const char *side)
{
    for (unsigned i = 0; t->on && i < t->n; i++) {
        fprintf(stderr, "migrate-trace: %s %.3f ms (+%.3f) %s\n", side,
                (double)t->t[i] / 1e6, i ? (double)(t->t[i] - t->t[i - 1]) / 1e6 : 0.0,
                t->what[i]);
    }
    t->n = 0;
}

/* ---- Source ----------------------------------------------------------------------- */

static bool page_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;
    for (unsigned i = 0; i < SNAP_PAGE / 8; i++) {
        if (w[i]) {
            return false;
        }
    }
    return true;
}

typedef struct Source {
    VmmMachine *m;
    Stream s;
    uint64_t npages;            /* RAM pages */
    uint64_t *dirty;            /* RAM-image page bitmap */
    uint64_t *scratch;          /* one slot's bitmap */
    uint64_t idx[MIG_ZERO_BATCH];
    uint8_t *buf;               /* MIG_BATCH pages */
    uint64_t pages_sent;
    MigTrace trace;
} Source;

/* The RAM slots: guest-physical start, page count, first RAM-image page. */
static unsigned ram_slots(VmmMachine *m, uint64_t gpa[2], uint64_t pages[2], uint64_t first[2])
{
    gpa[0] = 0;
    pages[0] = m->low_size / SNAP_PAGE;
    first[0] = 0;
    if (m->ram_size == m->low_size) {
        return 1;
    }
    gpa[1] = X86_MMIO_HOLE_END;
    pages[1] = (m->ram_size - m->low_size) / SNAP_PAGE;
    first[1] = pages[0];
    return 2;
}

/* OR KVM's dirty log (and with @devices the device-write log) into
 * src->dirty. */
static int collect_dirty(Source *src, bool devices)
{
    VmmMachine *m = src->m;
    uint64_t gpa[2], pages[2], first[2];
    unsigned n = ram_slots(m, gpa, pages, first);
    for (unsigned i = 0; i < n; i++) {
        size_t words = (size_t)((pages[i] + 63) / 64);
        int r = vmm_vm_get_dirty_log(m->vm, gpa[i], src->scratch, words * 8);
        for (int pass = 0; pass < (devices ? 2 : 1) && r == 0; pass++) {
            if (pass == 1) {
                r = vmm_guest_memory_get_dirty(m->mem, gpa[i], pages[i], src->scratch);
            }
            if (r < 0) {
                break;
            }
            for (uint64_t p = 0; p < pages[i]; p++) {
                if (src->scratch[p / 64] & (1ull << (p % 64))) {
                    uint64_t q = first[i] + p;
                    src->dirty[q / 64] |= 1ull << (q % 64);
                }
            }
        }
        if (r < 0) {
            vk_error("machine: migration: reading the dirty log: %s", vmm_strerror(r));
            return r;
        }
    }
    return 0;
}

static void mark_range(void *opaque, uint64_t gpa, uint64_t len)
{
    Source *src = opaque;
    VmmMachine *m = src->m;
    /* The range may come from the guest (a descriptor): bounded to RAM,
     * the MMIO hole skipped, so the walk is never longer than RAM. */
    uint64_t top = m->ram_size > m->low_size ? X86_MMIO_HOLE_END + (m->ram_size - m->low_size)
                                             : m->low_size;
    uint64_t end = gpa + len < gpa ? UINT64_MAX : gpa + len;
    end = end < top ? end : top;
    for (uint64_t a = gpa & ~(uint64_t)(SNAP_PAGE - 1); a < end; a += SNAP_PAGE) {
        uint64_t off;
        if (a < m->low_size) {
            off = a;
        } else if (a < X86_MMIO_HOLE_END) {
            a = X86_MMIO_HOLE_END - SNAP_PAGE;      /* the hole: no RAM */
            continue;
        } else {
            off = m->low_size + (a - X86_MMIO_HOLE_END);
        }
        src->dirty[off / SNAP_PAGE / 64] |= 1ull << (off / SNAP_PAGE % 64);
    }
}

/* Send the pages of src->dirty (all pages with @all; zero pages then
 * skipped: the destination's RAM starts zeroed) and clear it. */
static int send_pages(Source *src, bool all, uint64_t *count)
{
    const uint8_t *ram = src->m->host;
    unsigned nb = 0, nz = 0;
    uint64_t sent = 0;
    int r = 0;
    for (uint64_t p = 0; p < src->npages && r == 0; p++) {
        if (!all) {
            uint64_t w = src->dirty[p / 64];
            if (!w) {
                p |= 63;
                continue;
            }
            if (!(w & (1ull << (p % 64)))) {
                continue;
            }
        }
        const uint8_t *pg = ram + p * SNAP_PAGE;
        if (page_zero(pg)) {
            if (!all) {
                src->idx[MIG_BATCH + nz++] = p;
                if (nz == MIG_ZERO_BATCH - MIG_BATCH) {
                    uint64_t hdr = nz;
                    r = send_msg(&src->s, MIG_ZERO, 0, &hdr, 8, src->idx + MIG_BATCH, nz * 8);
                    nz = 0;
                }
            }
            continue;
        }
        src->idx[nb] = p;
        memcpy(src->buf + (size_t)nb * SNAP_PAGE, pg, SNAP_PAGE);
        nb++;
        sent++;
        if (nb == MIG_BATCH) {
            /* idx[] then the pages: one message */
            uint64_t hdr = nb;
            uint8_t *pay = malloc(8 + nb * 8);
            if (!pay) {
                return -ENOMEM;
            }
            memcpy(pay, &hdr, 8);
            memcpy(pay + 8, src->idx, nb * 8);
            r = send_msg(&src->s, MIG_PAGES, 0, pay, 8 + nb * 8, src->buf,
                         (size_t)nb * SNAP_PAGE);
            free(pay);
            nb = 0;
        }
    }
    if (r == 0 && nb) {
        uint64_t hdr = nb;
        uint8_t pay[8 + MIG_BATCH * 8];
        memcpy(pay, &hdr, 8);
        memcpy(pay + 8, src->idx, nb * 8);
        r = send_msg(&src->s, MIG_PAGES, 0, pay, 8 + nb * 8, src->buf, (size_t)nb * SNAP_PAGE);
    }
    if (r == 0 && nz) {
        uint64_t hdr = nz;
        r = send_msg(&src->s, MIG_ZERO, 0, &hdr, 8, src->idx + MIG_BATCH, nz * 8);
    }
    memset(src->dirty, 0, (size_t)(src->npages + 63) / 64 * 8);
    src->pages_sent += sent;
    if (count) {
        *count = sent;
    }
    return r;
}

static uint64_t dirty_count(const Source *src)
{
    uint64_t n = 0;
    for (uint64_t w = 0; w < (src->npages + 63) / 64; w++) {
        n += (uint64_t)__builtin_popcountll(src->dirty[w]);
    }
    return n;
}

static int emit_record(void *opaque, uint32_t type, uint32_t index, const void *data,
                       size_t len)
{
    Source *src = opaque;
    return send_msg(&src->s, MIG_STATE + type, index, data, len, NULL, 0);
}

static int set_logging(VmmMachine *m, bool on)
{
    uint64_t gpa[2], pages[2], first[2];
    unsigned n = ram_slots(m, gpa, pages, first);
    int r = 0;
    for (unsigned i = 0; i < n && r == 0; i++) {
        r = vmm_vm_set_memory_flags(m->vm, gpa[i], on ? VMM_SLOT_LOG_DIRTY : 0);
    }
    if (r == 0 || !on) {
        int e = vmm_guest_memory_log_dirty(m->mem, on);
        r = r ?: e;
    }
    return r;
}

static int send_hello(Stream *s, VmmMachine *m, int64_t timeout_ns)
{
    MigHello hello = { .version = MIG_VERSION,
                       .timeout_ms = (uint32_t)((timeout_ns + 999999) / 1000000) };
    memcpy(hello.magic, MIG_MAGIC, 8);
    machine_snap_config(m, &hello.cfg);
    return s_write(s, &hello, sizeof(hello));
}

int machine_snapshot_stream(VmmMachine *m, int fd)
{
    Source src = { .m = m, .s = { .fd = fd }, .npages = m->ram_size / SNAP_PAGE };
    src.dirty = calloc((size_t)(src.npages + 63) / 64, 8);
    src.buf = malloc((size_t)MIG_BATCH * SNAP_PAGE);
    int r = src.dirty && src.buf ? 0 : -ENOMEM;
    r = r ?: send_hello(&src.s, m, 0);
    r = r ?: send_pages(&src, true, NULL);
    if (r == 0) {
        r = machine_save_records(m, NULL, emit_record, &src);
    }
    r = r ?: send_msg(&src.s, MIG_END, 0, NULL, 0, NULL, 0);
    free(src.dirty);
    free(src.buf);
    return r;
}

void vmm_machine_migrate_cancel(VmmMachine *m)
{
    if (m) {
        vk_atomic_set(&m->migrate_cancel, 1);
    }
}

int vmm_machine_migrate(VmmMachine *m, int fd, const VmmMigrateOptions *opts,
                        VmmMigrateStats *stats)
{
    if (!m || fd < 0 || (opts && opts->size < sizeof(size_t)) ||
        (stats && stats->size < sizeof(size_t))) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_machine_migrate: bad arguments");
    }
    if (vmm_machine_state(m) != VMM_MACHINE_RUNNING) {
        vk_error("machine: migration: the machine is %s, not running",
                 vmm_machine_state_name(vmm_machine_state(m)));
        return -EINVAL;
    }
    unsigned max_rounds = opts && opts->max_rounds ? opts->max_rounds : 10;
    uint64_t budget_ns = opts && opts->downtime_ns ? opts->downtime_ns : 50000000;
    uint64_t timeout_ns = MIG_DEFAULT_TIMEOUT_NS;
    if (opts && opts->size >= offsetof(VmmMigrateOptions, timeout_ns) + sizeof(uint64_t) &&
        opts->timeout_ns) {
        timeout_ns = opts->timeout_ns;
    }
    if (timeout_ns > MIG_MAX_TIMEOUT_NS) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_machine_migrate: timeout_ns above an hour");
    }
    int r0 = machine_devices_saveable(m);
    if (r0 < 0) {
        return r0;
    }
    int64_t t0 = vmm_clock_ns();
    vk_atomic_set(&m->migrate_cancel, 0);

    Source src = { .m = m, .s = { .m = m, .fd = fd, .timeout_ns = (int64_t)timeout_ns },
                   .npages = m->ram_size / SNAP_PAGE };
    mig_trace_init(&src.trace);
    size_t words = (size_t)(src.npages + 63) / 64;
    src.dirty = calloc(words, 8);
    src.scratch = calloc(words, 8);
    src.buf = malloc((size_t)MIG_BATCH * SNAP_PAGE);
    bool paused = false, logging = false, backends_paused = false;
    unsigned rounds = 0;
    uint64_t final_pages = 0;
    int64_t t_pause = 0, t_end = 0, t_sent = 0;
    int r = src.dirty && src.scratch && src.buf ? 0 : -ENOMEM;

    r = r ?: send_hello(&src.s, m, (int64_t)timeout_ns);
    if (r == 0) {
        /* A vhost backend writes guest memory in no dirty log of ours (the
         * kernel's vhost-vsock logs none of its data writes): it stays
         * paused from before the first pass to the end, so the pages sent
         * hold everything it wrote.  Its connections end at the hand-over
         * anyway (the transport reset). */
        r = machine_backends_pause(m);
        backends_paused = true;
    }
    if (r == 0) {
        r = set_logging(m, true);
        logging = r == 0;
    }
    /* The first pass: all of RAM. */
    double bw = 0;                      /* bytes per ns, measured */
    if (r == 0) {
        int64_t a = vmm_clock_ns();
        uint64_t before = src.s.bytes;
        r = send_pages(&src, true, NULL);
        int64_t b = vmm_clock_ns();
        bw = b > a ? (double)(src.s.bytes - before) / (double)(b - a) : 0;
    }
    /* Rounds: until the rest fits the downtime budget. */
    while (r == 0) {
        r = collect_dirty(&src, false);
        if (r < 0) {
            break;
        }
        uint64_t n = dirty_count(&src);
        double est_ns = bw > 0 ? (double)n * SNAP_PAGE / bw : 0;
        if (est_ns <= (double)budget_ns || rounds >= max_rounds) {
            /* What is left goes in one write once paused: the destination
             * wakes once, not once a message (on a busy or single CPU each
             * wake-up can cost a time slice).  Room for twice the pages
             * dirty now and the state records. */
            r = stream_cork(&src.s, (size_t)(2 * n * (SNAP_PAGE + 8)) + (256u << 10));
            break;
        }
        int64_t a = vmm_clock_ns();
        uint64_t before = src.s.bytes;
        r = send_pages(&src, false, NULL);
        int64_t b = vmm_clock_ns();
        if (b > a) {
            bw = (double)(src.s.bytes - before) / (double)(b - a);
        }
        rounds++;
    }
    /* Stop and copy. */
    if (r == 0 && !cancelled(&src.s)) {
        t_pause = vmm_clock_ns();
        mig_trace_mark(&src.trace, "pausing");
        r = vmm_machine_pause(m);
        paused = r == 0;
        mig_trace_mark(&src.trace, "paused (vCPUs out, devices quiesced)");
    } else if (r == 0) {
        r = -ECANCELED;
    }
    if (r == 0) {
        r = collect_dirty(&src, true);
        mig_trace_mark(&src.trace, "last dirty log read");
    }
    if (r == 0) {
        machine_device_used_rings(m, mark_range, &src);
        r = send_pages(&src, false, &final_pages);
        mig_trace_mark(&src.trace, "last pages sent");
    }
    if (r == 0) {
        r = machine_save_records(m, NULL, emit_record, &src);
        mig_trace_mark(&src.trace, "state records read and sent");
    }
    if (r == 0) {
        r = send_msg(&src.s, MIG_END, 0, NULL, 0, NULL, 0);
        mig_trace_mark(&src.trace, "state and end mark gathered");
    }
    if (r == 0) {
        r = stream_flush(&src.s, true);
        if (r == 0) {
            t_sent = vmm_clock_ns();
        }
        mig_trace_mark(&src.trace, "end mark sent");
    }
    stream_flush(&src.s, false);        /* a failure left it corked */
    /* The switch, in two phases (docs/machine.md "Live migration", "The
     * hand-over").  Until 'C' is sent the destination has not run and will
     * not: any failure resumes the source.  Once 'C' is out, the source
     * never resumes on its own. */
    bool committed = false;
    uint8_t word = 0;
    if (r == 0) {
        r = s_read(&src.s, &word, 1);   /* 'R': loaded, ready to run; cancellable */
        mig_trace_mark(&src.trace, "'R' received");
        if (r == 0 && word != 'R') {
            r = -EREMOTEIO;
        }
        if (r == -ETIMEDOUT) {
            vk_error("machine: migration: no word from the destination for %" PRIu64
                     " ms; giving up before the commit", timeout_ns / 1000000);
        } else if (r < 0 && r != -ECANCELED) {
            vk_error("machine: migration: the destination is not ready (%s)",
                     r == -EREMOTEIO ? "it said so" : vmm_strerror(r));
        }
    }
    if (r == 0) {
        src.s.m = NULL;
        word = 'C';
        /* A failed send queued nothing: the destination cannot get 'C'. */
        r = s_write(&src.s, &word, 1);
        committed = r == 0;
        mig_trace_mark(&src.trace, "'C' sent");
        if (r < 0) {
            vk_error("machine: migration: sending the commit: %s", vmm_strerror(r));
        }
    }
    int64_t dest_run_at = 0;
    if (committed) {
        r = s_read(&src.s, &word, 1);
        mig_trace_mark(&src.trace, "'G' received");
        if (r == 0 && word == 'G' && s_read(&src.s, &dest_run_at, 8) < 0) {
            dest_run_at = 0;            /* it runs; only its clock is missing */
        }
        if (r == 0 && word != 'G') {
            r = -ECONNABORTED;
            vk_error("machine: migration: the destination failed to start after the commit: "
                     "the guest runs nowhere; the source stays paused (resume it to go on)");
        } else if (r < 0) {
            vk_error("machine: migration: %s after the commit: the guest's fate is unknown "
                     "(the destination runs it if it got the commit); the source stays paused",
                     r == -ETIMEDOUT ? "no answer from the destination within the timeout"
                                     : "the stream broke");
            r = -ENOLINK;
        }
    }
    t_end = vmm_clock_ns();
    if (logging) {
        set_logging(m, false);
    }
    if (r == 0) {
        vmm_machine_stop(m);
    } else if (!committed) {
        if (r == -ECANCELED) {
            vk_warn("machine: migration cancelled; the machine goes on");
        } else {
            vk_error("machine: migration failed: %s; the machine goes on", vmm_strerror(r));
        }
        if (paused) {
            vmm_machine_resume(m);          /* the backends too */
        } else if (backends_paused) {
            machine_devices_pause(m, false);
        }
        if (t_sent) {
            /* Tell a destination waiting for 'C' to give up (best effort:
             * the stream closing says the same). */
            src.s.m = NULL;
            word = 'N';
            s_write(&src.s, &word, 1);
        }
    }
    if (stats) {
        VmmMigrateStats st = { .size = sizeof(st), .rounds = rounds,
                               .pages_sent = src.pages_sent, .bytes_sent = src.s.bytes,
                               .final_pages = final_pages,
                               .total_ns = (uint64_t)(t_end - t0),
                               .downtime_ns = t_pause ? (uint64_t)(t_end - t_pause) : 0,
                               .stop_copy_ns = t_pause && t_sent ? (uint64_t)(t_sent - t_pause)
                                                                 : 0,
                               .paused_at_ns = (uint64_t)t_pause,
                               .dest_run_at_ns = (uint64_t)dest_run_at };
        size_t n = stats->size < sizeof(st) ? stats->size : sizeof(st);
        memcpy((char *)stats + sizeof(size_t), (char *)&st + sizeof(size_t),
               n - sizeof(size_t));
    }
    mig_trace_print(&src.trace, "source");
    free(src.dirty);
    free(src.scratch);
    free(src.buf);
    return r;
}

/* ---- Destination --------------------------------------------------------------------- */

/* Before the vCPUs run: 'R' to the source, then its 'C'.  0 with it;
 * else the destination must not run (the source goes on or stays paused). */
int machine_migration_commit(VmmMachine *m)
{
    if (m->ack_fd < 0) {
        return 0;
    }
    Stream s = { .fd = m->ack_fd, .timeout_ns = m->ack_timeout_ns };
    uint8_t word = 'R';
    mig_trace_mark(&m->trace, "sending 'R'");
    int r = s_write(&s, &word, 1);
    r = r ?: s_read(&s, &word, 1);
    mig_trace_mark(&m->trace, "'C' received");
    if (r == 0 && word != 'C') {
        r = -ECONNABORTED;
    }
    if (r < 0) {
        vk_error("machine: incoming migration: no commit from the source (%s); not running",
                 r == -ECONNABORTED ? "it gave up"
                 : r == -ETIMEDOUT ? "no word from it within the timeout" : vmm_strerror(r));
        mig_trace_print(&m->trace, "destination");
        close(m->ack_fd);
        m->ack_fd = -1;
        m->incoming_failed = true;
    }
    return r;
}

/* The first vCPU thread about to enter KVM_RUN (@ran), or vmm_vm_free
 * (none did): 'G' or 'N'.  Owns m->ack_running_fd and m->trace from
 * machine_migration_run on. */
static void migration_running(void *opaque, bool ran)
{
    VmmMachine *m = opaque;
    /* 'G' and this host's clock at the first KVM_RUN (the source's
     * downtime figure when both run on one host), or 'N'. */
    uint8_t word[9] = { ran ? 'G' : 'N' };
    int64_t now = vmm_clock_ns();
    memcpy(word + 1, &now, 8);
    Stream s = { .fd = m->ack_running_fd, .timeout_ns = m->ack_timeout_ns };
    s_write(&s, word, ran ? 9 : 1);
    mig_trace_mark(&m->trace, ran ? "'G' sent, the first vCPU entering KVM_RUN" : "'N' sent");
    mig_trace_print(&m->trace, "destination");
    close(m->ack_running_fd);
    m->ack_running_fd = -1;
}

int machine_migration_run(VmmMachine *m)
{
    if (m->ack_fd < 0) {
        return 1;
    }
    m->ack_running_fd = m->ack_fd;
    m->ack_fd = -1;
    mig_trace_mark(&m->trace, "starting the vCPUs");
    int r = vmm_vm_start_notify(m->vm, migration_running, m);
    if (r < 0) {                        /* the caller says 'N' */
        m->ack_fd = m->ack_running_fd;
        m->ack_running_fd = -1;
    }
    return r;
}

void machine_migration_ack(VmmMachine *m, bool ok)
{
    if (m->ack_fd < 0) {
        return;
    }
    uint8_t word = ok ? 'G' : 'N';
    Stream s = { .fd = m->ack_fd, .timeout_ns = m->ack_timeout_ns };
    s_write(&s, &word, 1);
    mig_trace_mark(&m->trace, ok ? "'G' sent" : "'N' sent");
    mig_trace_print(&m->trace, "destination");
    close(m->ack_fd);
    m->ack_fd = -1;
}

#define MIG_PAGES_MAX (8 + (uint64_t)MIG_BATCH * (8 + SNAP_PAGE))

/* One message into the machine or @rec.  1 at the end mark, 0 to go on,
 * -errno with @why.  Page messages go through @pagebuf (MIG_PAGES_MAX
 * bytes, reused: warm by the time the guest is paused). */
static int incoming_msg(VmmMachine *m, Stream *s, Records *rec, uint8_t *pagebuf, char *why,
                        size_t why_len)
{
    MigMsg h;
    int r = s_read(s, &h, sizeof(h));
    if (r < 0) {
        snprintf(why, why_len, "the stream ended early: %s", vmm_strerror(r));
        return r;
    }
    uint64_t max = h.type == MIG_PAGES ? MIG_PAGES_MAX
                 : h.type == MIG_ZERO ? 8 + (uint64_t)MIG_ZERO_BATCH * 8
                 : h.type == MIG_END ? 0 : SNAP_MAX_RECORD;
    if (h.len > max) {
        snprintf(why, why_len, "message type %u of %" PRIu64 " bytes is too large", h.type,
                 h.len);
        return -EINVAL;
    }
    bool pages = h.type == MIG_PAGES || h.type == MIG_ZERO;
    uint8_t *p = pages ? pagebuf : malloc(h.len ? (size_t)h.len : 1);
    if (!p) {
        return -ENOMEM;
    }
    r = s_read(s, p, (size_t)h.len);
    if (r < 0) {
        snprintf(why, why_len, "the stream ended early: %s", vmm_strerror(r));
    } else {
        MigSum c;
        sum_init(&c);
        sum_update(&c, p, (size_t)h.len);
        if (sum_final(&c) != h.sum) {
            snprintf(why, why_len, "message type %u: checksum mismatch (corrupt data)", h.type);
            r = -EINVAL;
        }
    }
    if (r < 0) {
        if (!pages) {
            free(p);
        }
        return r;
    }
    uint64_t npages = m->ram_size / SNAP_PAGE, count = 0;
    if (h.len >= 8) {
        memcpy(&count, p, 8);
    }
    r = 0;
    if (h.type == MIG_END) {
        r = 1;
    } else if (h.type == MIG_PAGES || h.type == MIG_ZERO) {
        uint64_t each = h.type == MIG_PAGES ? 8 + SNAP_PAGE : 8;
        if (h.len < 8 || count > (h.len - 8) / each || 8 + count * each != h.len) {
            snprintf(why, why_len, "a page message of %" PRIu64 " bytes for %" PRIu64 " pages",
                     h.len, count);
            r = -EINVAL;
        }
        for (uint64_t i = 0; i < count && r == 0; i++) {
            uint64_t idx;
            memcpy(&idx, p + 8 + i * 8, 8);
            if (idx >= npages) {
                snprintf(why, why_len, "page %" PRIu64 " is past the RAM's %" PRIu64, idx,
                         npages);
                r = -EINVAL;
            } else if (h.type == MIG_PAGES) {
                memcpy(m->host + idx * SNAP_PAGE, p + 8 + count * 8 + i * SNAP_PAGE, SNAP_PAGE);
            } else {
                memset(m->host + idx * SNAP_PAGE, 0, SNAP_PAGE);
            }
        }
    } else if (h.type > MIG_STATE && h.type <= MIG_STATE + SNAP_SEC_VIRTIO_PCI) {
        uint32_t t = h.type - MIG_STATE;
        void **slot = NULL;
        size_t want = 0;
        if (t == SNAP_SEC_VCPU && h.index < rec->rs->cfg.cpus) {
            slot = &rec->vcpu[h.index];
            want = sizeof(VmmVcpuState);
        } else if (t == SNAP_SEC_VM && h.index == 0) {
            slot = &rec->vm;
            want = sizeof(SnapVm);
        } else if (t == SNAP_SEC_SERIAL && h.index == 0) {
            slot = &rec->serial;
            rec->serial_len = (size_t)h.len;
        } else if (t == SNAP_SEC_VIRTIO_PCI && h.index < rec->rs->cfg.ndevices) {
            slot = (void **)&rec->rs->dev[h.index];
            rec->rs->dev_len[h.index] = (size_t)h.len;
        }
        if (!slot || (want && h.len != want)) {
            snprintf(why, why_len, "a %s record %u (%" PRIu64 " bytes) that does not belong",
                     snap_section_name(t), h.index, h.len);
            r = -EINVAL;
        } else {
            free(*slot);
            *slot = p;
            p = NULL;
        }
    } else {
        snprintf(why, why_len, "unknown message type %u", h.type);
        r = -EINVAL;
    }
    if (!pages) {
        free(p);
    }
    return r;
}

/* A machine from the stream on @fd: a migration's (@migrating: the
 * hand-over follows in vmm_machine_start) or a snapshot's stream form. */
static VmmMachine *receive(const VmmMachineOptions *opts, int fd, bool migrating, int *errp)
{
    VmmMachine *m = NULL;
    Records rec = { 0 };
    char why[256] = "";
    int r = 0;
    /* A snapshot's stream form waits as its writer does: without a bound. */
    Stream s = { .fd = fd, .timeout_ns = migrating ? MIG_DEFAULT_TIMEOUT_NS : 0 };
    uint8_t *pagebuf = NULL;
    MigTrace trace;
    mig_trace_init(&trace);
    MigHello hello;
    r = s_read(&s, &hello, sizeof(hello));
    if (r < 0) {
        snprintf(why, sizeof(why), "no migration stream: %s", vmm_strerror(r));
        goto fail;
    }
    if (memcmp(hello.magic, MIG_MAGIC, 8) != 0 || hello.version != MIG_VERSION) {
        if (memcmp(hello.magic, MIG_MAGIC, 8) != 0) {
            snprintf(why, sizeof(why), "not a vmmkit migration stream");
        } else {
            snprintf(why, sizeof(why), "a migration stream of version %u, this library "
                     "takes version %u", hello.version, MIG_VERSION);
        }
        r = -EINVAL;
        goto fail;
    }
    SnapConfig want = { .ram_size = opts->memory, .cpus = opts->cpus,
                        .vcpu_state_size = sizeof(VmmVcpuState) };
    const SnapConfig *c = &hello.cfg;
    if (c->cpus == 0 || c->cpus > VMM_MACHINE_MAX_CPUS || c->ndevices > SNAP_MAX_DEVICES ||
        c->ram_size % SNAP_PAGE) {
        snprintf(why, sizeof(why), "impossible configuration");
        r = -EINVAL;
        goto fail;
    }
    r = snap_config_match(c, &want, why, sizeof(why));
    if (r < 0) {
        goto fail;
    }
    if (migrating && hello.timeout_ms) {
        s.timeout_ns = (int64_t)hello.timeout_ms * 1000000;
    }
    rec.rs = calloc(1, sizeof(*rec.rs));
    if (!rec.rs) {
        r = -ENOMEM;
        goto fail;
    }
    rec.rs->cfg = *c;
    VmmMachineOptions o = *opts;
    o.size = opts->size < sizeof(o) ? opts->size : sizeof(o);
    o.memory = c->ram_size;
    o.cpus = c->cpus;
    m = machine_new(&o, false, &r);
    if (!m) {
        goto fail;
    }
    /* The TSC rate now, before the pages: it is known from the hello,
     * and the paused window is no place for ioctls that can wait; nor for
     * making the waiter thread. */
    r = machine_set_tsc_khz(m, c->tsc_khz, why, sizeof(why));
    if (r < 0) {
        goto fail;
    }
    if (migrating) {
        r = machine_waiter_spawn(m);
        if (r < 0) {
            goto fail;
        }
    }
    pagebuf = malloc(MIG_PAGES_MAX);
    if (!pagebuf) {
        r = -ENOMEM;
        goto fail;
    }
    while ((r = incoming_msg(m, &s, &rec, pagebuf, why, sizeof(why))) == 0) {
    }
    mig_trace_mark(&trace, "end mark received");
    if (r == 1) {
        r = machine_records_check(&rec, why, sizeof(why));
    }
    if (r == 0) {
        r = machine_restore_state(m, &rec);
        mig_trace_mark(&trace, "vCPU, irqchip, PIT, UART state set");
    }
    if (r == 0 && migrating) {
        m->ack_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        r = m->ack_fd < 0 ? -errno : 0;
        m->ack_timeout_ns = s.timeout_ns;
        m->trace = trace;
    }
    if (r < 0) {
        goto fail;
    }
    free(pagebuf);
    machine_records_free(&rec);
    return m;
fail:
    if (why[0]) {
        vk_error("machine: %s: %s", migrating ? "incoming migration" : "restore from a stream",
                 why);
    }
    free(pagebuf);
    machine_records_free(&rec);
    vmm_machine_free(m);
    if (errp) {
        *errp = r;
    }
    return NULL;
}

VmmMachine *vmm_machine_incoming(const VmmMachineOptions *opts, int fd, int *errp)
{
    if (!opts || fd < 0) {
        int r = VMM_MISUSE_ERR(-EINVAL, "vmm_machine_incoming: no options or no stream");
        if (errp) {
            *errp = r;
        }
        return NULL;
    }
    return receive(opts, fd, true, errp);
}

VmmMachine *machine_restore_stream(const VmmMachineOptions *opts, int fd, int *errp)
{
    return receive(opts, fd, false, errp);
}
