/* SPDX-License-Identifier: MIT */
/*
 * Live migration's hand-over (docs/machine.md "Live migration"), in-process
 * on two fake KVMs (tests/accel/fake-kvm.c): a source machine migrates to a
 * destination through a relay thread that breaks the connection at one
 * step of the hand-over - in the middle of the stream, when the
 * destination's 'R' (ready) comes, when the source's 'C' (commit) comes,
 * when the destination's 'G' (running) comes - or never.  At each, the
 * test checks which machine runs: never both, and the destination's vCPUs
 * never entered KVM_RUN unless it got the commit.  The relay also flips a
 * bit (refused by the checksum) or goes silent at each step (every wait
 * bounded by the timeout).  Then a snapshot's stream form: a paused
 * machine to a pipe, restored from the pipe, with its TSC rate (and one
 * the destination cannot give, refused), and a device that cannot be
 * saved (refused before anything is sent).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "../accel/fake-kvm.h"
#include "boot-images.h"
#include "vmmkit/aio.h"
#include "vmmkit/machine.h"
#include "vmmkit/memory.h"
#include "vmmkit/virtio.h"

/* A guest that comes out of KVM_RUN every millisecond (as for a signal):
 * its vCPU's run count grows while the machine runs, stops when paused. */
static int idle_run(FakeVcpu *fv, struct kvm_run *run, void *opaque)
{
    (void)fv;
    (void)run;
    (void)opaque;
    usleep(1000);
    return -EINTR;
}

static char kernel_path[] = "/tmp/vmmkit-migrate-kernelXXXXXX";

/* ---- The relay -------------------------------------------------------------- */

typedef enum {
    BREAK_NONE,
    BREAK_STREAM,       /* after @cut bytes source -> destination */
    BREAK_READY,        /* the destination's 'R' is dropped */
    BREAK_COMMIT,       /* 'R' passes, the source's 'C' is dropped */
    BREAK_RUNNING,      /* 'R' and 'C' pass, the destination's 'G' is dropped */
    NACK_RUNNING,       /* ... and turned into 'N' (what a destination whose
                         * vCPUs failed after the commit says) */
    /* The relay goes silent - passes nothing more either way, closes
     * nothing (a network partition) - ... */
    SILENT_STREAM,      /* after @cut bytes source -> destination */
    SILENT_READY,       /* at the destination's 'R' */
    SILENT_COMMIT,      /* at the source's 'C' */
    SILENT_RUNNING,     /* at the destination's 'G' */
    CORRUPT_STREAM,     /* one bit flipped at byte @cut source -> destination */
} Break;

typedef struct Relay {
    int src, dst;       /* the relay's ends of the two socket pairs */
    Break mode;
    size_t cut;
    size_t fwd;         /* bytes source -> destination */
    unsigned back;      /* bytes destination -> source forwarded */
    bool after_ready;   /* 'R' was forwarded: the next source byte is the commit */
    bool silent;        /* reads and drops everything from now on */
    bool closed[2];     /* silent: that side closed its end */
} Relay;

static bool pass(int from, int to, uint8_t *b, ssize_t n)
{
    (void)from;
    return send(to, b, (size_t)n, MSG_NOSIGNAL) == n;
}

static void *relay_main(void *opaque)
{
    Relay *r = opaque;
    uint8_t buf[65536];
    for (;;) {
        struct pollfd p[2] = { { .fd = r->closed[0] ? -1 : r->src, .events = POLLIN },
                               { .fd = r->closed[1] ? -1 : r->dst, .events = POLLIN } };
        if (poll(p, 2, -1) < 0) {
            break;
        }
        if (r->silent) {        /* until both sides have given up */
            for (int i = 0; i < 2; i++) {
                if (p[i].revents && read(p[i].fd, buf, sizeof(buf)) <= 0) {
                    r->closed[i] = true;
                }
            }
            if (r->closed[0] && r->closed[1]) {
                break;
            }
            continue;
        }
        if (p[0].revents) {         /* source -> destination */
            size_t max = sizeof(buf);
            if (r->after_ready) {
                max = 1;
            } else if ((r->mode == BREAK_STREAM || r->mode == SILENT_STREAM) &&
                       r->cut - r->fwd < max) {
                max = r->cut - r->fwd;
            }
            ssize_t n = max ? read(r->src, buf, max) : 0;
            if (n <= 0) {
                break;
            }
            if (r->after_ready) {
                assert_int_equal(buf[0], 'C');
                r->after_ready = false;
                if (r->mode == BREAK_COMMIT) {
                    break;
                }
                if (r->mode == SILENT_COMMIT) {
                    r->silent = true;
                    continue;
                }
            }
            if (r->mode == CORRUPT_STREAM && r->cut >= r->fwd && r->cut < r->fwd + (size_t)n) {
                buf[r->cut - r->fwd] ^= 0x08;
            }
            if (!pass(r->src, r->dst, buf, n)) {
                break;
            }
            r->fwd += (size_t)n;
            if (r->mode == BREAK_STREAM && r->fwd >= r->cut) {
                break;
            }
            if (r->mode == SILENT_STREAM && r->fwd >= r->cut) {
                r->silent = true;
                continue;
            }
        }
        if (p[1].revents) {         /* destination -> source: one word at a time */
            ssize_t n = read(r->dst, buf, 1);
            if (n <= 0) {
                break;
            }
            if ((r->back == 0 && r->mode == BREAK_READY) ||
                (r->back == 1 && r->mode == BREAK_RUNNING)) {
                break;
            }
            if ((r->back == 0 && r->mode == SILENT_READY) ||
                (r->back == 1 && r->mode == SILENT_RUNNING)) {
                r->silent = true;
                continue;
            }
            if (r->back == 0) {
                assert_int_equal(buf[0], 'R');
                r->after_ready = true;
            } else if (r->back == 1 && r->mode == NACK_RUNNING) {
                assert_int_equal(buf[0], 'G');
                buf[0] = 'N';
            }
            if (!pass(r->dst, r->src, buf, n)) {
                break;
            }
            r->back++;
        }
    }
    close(r->src);
    close(r->dst);
    return NULL;
}

/* ---- The source's side --------------------------------------------------------- */

typedef struct Source {
    VmmMachine *m;
    int fd;
    int result;
    VmmMigrateStats stats;
} Source;

/* The hand-over's bound in the silent-relay cases (0: the default). */
static uint64_t timeout_ns;

static void *source_main(void *opaque)
{
    Source *s = opaque;
    VmmMigrateOptions o = { .size = sizeof(o), .max_rounds = 1, .timeout_ns = timeout_ns };
    s->stats.size = sizeof(s->stats);
    s->result = vmm_machine_migrate(s->m, s->fd, &o, &s->stats);
    close(s->fd);
    return NULL;
}

static uint64_t runs(FakeKvm *f)
{
    return __atomic_load_n(&f->vcpus[0].nruns, __ATOMIC_SEQ_CST);
}

/* The machine's vCPU keeps entering KVM_RUN. */
static bool runs_again(FakeKvm *f, VmmMachine *m)
{
    uint64_t n = runs(f);
    for (int i = 0; i < 5000; i++) {
        if (runs(f) > n + 3 && vmm_machine_state(m) == VMM_MACHINE_RUNNING) {
            return true;
        }
        usleep(1000);
    }
    return false;
}

/* Two fake KVMs, fs for a running source machine, fd for the machine it
 * moves to; *@o: the source's options. */
static FakeKvm fs, fd;

static VmmMachine *source_machine(VmmMachineOptions *o)
{
    fake_kvm_init(&fs);
    fake_kvm_init(&fd);
    fake_msrs_any = true;
    fs.run_fn = idle_run;
    fd.run_fn = idle_run;
    *o = (VmmMachineOptions){ .size = sizeof(*o), .kernel = kernel_path, .memory = 32 << 20,
                              .cpus = 1, .console_out_fd = -1, .kvm_ops = &fs.ops };
    int err = 0;
    VmmMachine *m = vmm_machine_new(o, &err);
    assert_non_null(m);
    assert_int_equal(vmm_machine_start(m), 0);
    return m;
}

/* Migrate through a relay that breaks at @mode; check the source returns
 * @expect_src and the destination runs iff @expect_dst.  Returns the bytes
 * the relay passed from the source to the destination. */
#define ANY_ERROR 1
static int dst_result;          /* the last destination's incoming or start */

static size_t migrate_with(Break mode, size_t cut, int expect_src, bool expect_dst)
{
    VmmMachineOptions o;
    int err = 0;
    VmmMachine *sm = source_machine(&o);

    int a[2], b[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
    Relay relay = { .src = a[1], .dst = b[1], .mode = mode, .cut = cut };
    Source src = { .m = sm, .fd = a[0] };
    pthread_t rt, st;
    assert_int_equal(pthread_create(&rt, NULL, relay_main, &relay), 0);
    assert_int_equal(pthread_create(&st, NULL, source_main, &src), 0);

    VmmMachineOptions od = o;
    od.kernel = NULL;
    od.kvm_ops = &fd.ops;
    VmmMachine *dm = vmm_machine_incoming(&od, b[0], &err);
    int dst_r = dm ? vmm_machine_start(dm) : err;
    dst_result = dst_r;
    close(b[0]);
    pthread_join(st, NULL);
    pthread_join(rt, NULL);

    /* Never both: the destination ran iff it got the commit. */
    if (expect_src == ANY_ERROR) {  /* before the commit: the source resumed */
        assert_true(src.result < 0 && src.result != -ENOLINK && src.result != -ECONNABORTED);
    } else {
        assert_int_equal(src.result, expect_src);
    }
    if (expect_dst) {
        assert_int_equal(dst_r, 0);
        assert_int_equal(vmm_machine_state(dm), VMM_MACHINE_RUNNING);
        assert_true(runs_again(&fd, dm));
    } else {
        assert_true(dst_r < 0);
        assert_int_equal(runs(&fd), 0);             /* never entered KVM_RUN */
    }
    VmmMachineState ss = vmm_machine_state(sm);
    if (expect_src == 0) {
        assert_int_equal(ss, VMM_MACHINE_STOPPED);
    } else if (expect_src == -ENOLINK || expect_src == -ECONNABORTED) {
        /* After the commit the source stays paused, never resumes alone. */
        assert_int_equal(ss, VMM_MACHINE_PAUSED);
        uint64_t n = runs(&fs);
        usleep(50000);
        assert_int_equal(runs(&fs), n);
        if (!expect_dst) {              /* the operator knows: resume */
            assert_int_equal(vmm_machine_resume(sm), 0);
            assert_true(runs_again(&fs, sm));
        }
    } else {
        assert_true(runs_again(&fs, sm));           /* resumed by itself */
    }
    if (expect_src == 0) {
        /* The destination's clock at its first KVM_RUN came with 'G'. */
        assert_true(src.stats.paused_at_ns > 0);
        assert_true(src.stats.dest_run_at_ns > src.stats.paused_at_ns);
        assert_true(src.stats.dest_run_at_ns - src.stats.paused_at_ns <=
                    src.stats.downtime_ns);
    }
    vmm_machine_free(dm);
    vmm_machine_free(sm);
    return relay.fwd;
}

static size_t stream_bytes;     /* the whole stream and the commit */

static void test_no_break(void **state)
{
    (void)state;
    stream_bytes = migrate_with(BREAK_NONE, 0, 0, true);
    assert_true(stream_bytes > 1000);
}

/* In the hello, half-way, and all but the end mark's last byte. */
static void test_break_in_stream(void **state)
{
    (void)state;
    assert_true(stream_bytes > 1000);
    size_t cuts[] = { 10, stream_bytes / 2, stream_bytes - 2 };
    for (unsigned i = 0; i < 3; i++) {
        migrate_with(BREAK_STREAM, cuts[i], ANY_ERROR, false);
    }
}

/* A flipped bit in a page or a record: the destination's checksum
 * refuses the message, never runs; the source resumes. */
static void test_corrupt_stream(void **state)
{
    (void)state;
    assert_true(stream_bytes > 1000);
    size_t cuts[] = { stream_bytes / 3, stream_bytes / 2, stream_bytes - 100 };
    for (unsigned i = 0; i < 3; i++) {
        migrate_with(CORRUPT_STREAM, cuts[i], ANY_ERROR, false);
        assert_int_equal(dst_result, -EINVAL);
    }
}

static void test_break_at_ready(void **state)
{
    (void)state;
    migrate_with(BREAK_READY, 0, ANY_ERROR, false);
}

static void test_break_at_commit(void **state)
{
    (void)state;
    migrate_with(BREAK_COMMIT, 0, -ENOLINK, false);
}

static void test_break_at_running(void **state)
{
    (void)state;
    migrate_with(BREAK_RUNNING, 0, -ENOLINK, true);
}

typedef struct Snap {
    VmmMachine *m;
    int fd, result;
} Snap;

static void *snapshot_main(void *opaque)
{
    Snap *s = opaque;
    s->result = vmm_machine_snapshot(s->m, s->fd);
    close(s->fd);
    return NULL;
}

static uint8_t *ram_of(VmmMachine *m)
{
    VmmMemorySection sec;
    assert_int_equal(vmm_guest_memory_find(vmm_machine_guest_memory(m), 0, &sec), 0);
    return sec.host;
}

/* @sm (paused) snapshotted into a pipe by a thread, restored from it on
 * the destination's fake KVM; *@snap_result: the snapshot's result. */
static VmmMachine *restore_through_pipe(VmmMachine *sm, const VmmMachineOptions *o,
                                        int *snap_result, int *err)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    Snap snap = { .m = sm, .fd = p[1] };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, snapshot_main, &snap), 0);
    VmmMachineOptions od = *o;
    od.kernel = NULL;
    od.memory = 0;
    od.kvm_ops = &fd.ops;
    VmmMachine *dm = vmm_machine_restore(&od, p[0], err);
    close(p[0]);                /* a refusal breaks the writer's pipe */
    pthread_join(t, NULL);
    *snap_result = snap.result;
    return dm;
}

/* A snapshot to a pipe and a restore from it: the RAM (copied, not
 * mapped) and the vCPU registers arrive, the restored machine runs. */
static void test_snapshot_stream(void **state)
{
    (void)state;
    VmmMachineOptions o;
    int err = 0;
    VmmMachine *sm = source_machine(&o);
    assert_int_equal(vmm_machine_pause(sm), 0);
    uint8_t *ram = ram_of(sm);
    for (unsigned i = 0; i < 4096; i++) {
        ram[0x300000 + i] = (uint8_t)(i * 7 + 1);
        ram[(32 << 20) - 4096 + i] = (uint8_t)(i * 3 + 5);
    }
    fs.vcpus[0].regs.rip = 0x123456;
    fs.vcpus[0].regs.rbx = 0xfeedf00d;
    fs.vcpus[0].tsc_khz = 2500000;      /* the destination's host: 2000000 */

    int snap_result;
    VmmMachine *dm = restore_through_pipe(sm, &o, &snap_result, &err);
    assert_int_equal(snap_result, 0);
    assert_non_null(dm);
    assert_memory_equal(ram_of(dm), ram, 32 << 20);
    assert_int_equal(vmm_machine_start(dm), 0);
    assert_int_equal(fd.vcpus[0].regs.rip, 0x123456);
    assert_int_equal(fd.vcpus[0].regs.rbx, 0xfeedf00d);
    assert_int_equal(fd.vcpus[0].tsc_khz, 2500000);     /* KVM_SET_TSC_KHZ */
    assert_true(runs_again(&fd, dm));
    vmm_machine_free(dm);

    /* A stream cut short is refused. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    Snap snap = { .m = sm, .fd = p[1] };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, snapshot_main, &snap), 0);
    uint8_t head[4096];
    ssize_t got = 0;
    while (got < (ssize_t)sizeof(head)) {
        ssize_t n = read(p[0], head + got, sizeof(head) - (size_t)got);
        assert_true(n > 0);
        got += n;
    }
    close(p[0]);                                /* the writer's pipe breaks */
    pthread_join(t, NULL);
    assert_true(snap.result < 0);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], head, sizeof(head)), (ssize_t)sizeof(head));
    close(p[1]);
    VmmMachineOptions od = o;
    od.kernel = NULL;
    od.kvm_ops = &fd.ops;
    assert_null(vmm_machine_restore(&od, p[0], &err));
    assert_int_equal(err, -EPIPE);
    close(p[0]);
    vmm_machine_free(sm);
}

/* A relay that goes silent (passes nothing more, closes nothing) at
 * each step: every waiting side gives up after the timeout instead of
 * waiting forever, in the state the hand-over table says.  Without the
 * timeout these hang: the alarm fails the test. */
static void test_silent_peer(void **state)
{
    (void)state;
    assert_true(stream_bytes > 1000);
    timeout_ns = 1000 * 1000000ull;     /* room for a slow (sanitized, loaded) run */
    alarm(30);
    int64_t t0 = vmm_clock_ns();
    /* Before the commit: the source resumes, the destination never ran. */
    migrate_with(SILENT_STREAM, stream_bytes / 2, -ETIMEDOUT, false);
    assert_int_equal(dst_result, -ETIMEDOUT);
    migrate_with(SILENT_READY, 0, -ETIMEDOUT, false);
    assert_int_equal(dst_result, -ETIMEDOUT);
    /* 'C' lost in silence: the source stays paused (fate unknown), the
     * destination gives up and never runs. */
    migrate_with(SILENT_COMMIT, 0, -ENOLINK, false);
    assert_int_equal(dst_result, -ETIMEDOUT);
    /* 'G' lost in silence: the destination runs, the source stays paused. */
    migrate_with(SILENT_RUNNING, 0, -ENOLINK, true);
    alarm(0);
    timeout_ns = 0;
    /* Bounded by the timeout, not by a closed stream. */
    assert_true(vmm_clock_ns() - t0 >= 4 * 1000 * 1000000ll);
}

/* A TSC rate the destination's KVM cannot give (no TSC scaling, a rate
 * below its host's) is refused, not restored at the wrong speed. */
static void test_tsc_refused(void **state)
{
    (void)state;
    VmmMachineOptions o;
    int err = 0;
    VmmMachine *sm = source_machine(&o);
    assert_int_equal(vmm_machine_pause(sm), 0);
    fs.vcpus[0].tsc_khz = 1500000;
    fd.no_tsc_scaling = true;
    int snap_result;
    assert_null(restore_through_pipe(sm, &o, &snap_result, &err));
    assert_int_equal(err, -EINVAL);
    assert_int_equal(runs(&fd), 0);
    /* The same rate as the host's needs no scaling. */
    fs.vcpus[0].tsc_khz = 2000000;
    VmmMachine *dm = restore_through_pipe(sm, &o, &snap_result, &err);
    assert_int_equal(snap_result, 0);
    assert_non_null(dm);
    vmm_machine_free(dm);
    vmm_machine_free(sm);
}

/* A device whose queues a backend outside the core processes (the
 * quiesce hook, as vhost-vsock's): once its driver set it up, a snapshot
 * and a migration are refused with -EOPNOTSUPP - the migration before it
 * sends anything, the machine running on - rather than restoring a
 * broken device.  Untouched by a driver, it is saved. */
static void backend_queue(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    (void)vdev;
    (void)vq;
    (void)opaque;
}

static void backend_quiesce(VmmVirtioDevice *vdev, void *opaque)
{
    (void)vdev;
    (void)opaque;
}

static void test_unsaveable_device(void **state)
{
    (void)state;
    fake_kvm_init(&fs);
    fake_msrs_any = true;
    fs.run_fn = idle_run;
    VmmMachineOptions o = { .size = sizeof(o), .kernel = kernel_path, .memory = 32 << 20,
                            .cpus = 1, .console_out_fd = -1, .kvm_ops = &fs.ops };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    assert_non_null(m);
    const VmmVirtioDeviceOps ops = { .size = sizeof(ops), .device_id = 19, .num_queues = 3,
                                     .queue_max_size = 64, .handle_queue = backend_queue,
                                     .quiesce = backend_quiesce };
    VmmVirtioDevice *vdev = vmm_virtio_device_new("backend", &ops, NULL,
                                                  vmm_machine_guest_memory(m), NULL, &err);
    assert_non_null(vdev);
    assert_int_equal(vmm_machine_add_virtio(m, vdev, NULL), 0);
    assert_int_equal(vmm_machine_start(m), 0);

    char path[] = "/tmp/vmmkit-unsaveable-XXXXXX";
    int fdf = mkstemp(path);
    assert_true(fdf >= 0);
    unlink(path);
    assert_int_equal(vmm_machine_pause(m), 0);
    assert_int_equal(vmm_machine_snapshot(m, fdf), 0);      /* no driver yet */
    assert_int_equal(vmm_machine_resume(m), 0);

    vmm_virtio_set_status(vdev, 1 | 2);     /* ACKNOWLEDGE | DRIVER */
    int s[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
    assert_int_equal(vmm_machine_migrate(m, s[0], NULL, NULL), -EOPNOTSUPP);
    struct pollfd pf = { .fd = s[1], .events = POLLIN };
    assert_int_equal(poll(&pf, 1, 0), 0);                   /* nothing sent */
    assert_true(runs_again(&fs, m));
    close(s[0]);
    close(s[1]);
    assert_int_equal(vmm_machine_pause(m), 0);
    assert_int_equal(vmm_machine_snapshot(m, fdf), -EOPNOTSUPP);
    close(fdf);
    vmm_machine_free(m);
    vmm_virtio_device_free(vdev);
}

/* The source's side of a destination failing after the commit: it stays
 * paused and says so (the relay lies here: the destination does run). */
static void test_nack_after_commit(void **state)
{
    (void)state;
    migrate_with(NACK_RUNNING, 0, -ECONNABORTED, true);
}

int main(void)
{
    if (test_write_tiny_kernel(kernel_path) < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_break),
        cmocka_unit_test(test_break_in_stream),
        cmocka_unit_test(test_corrupt_stream),
        cmocka_unit_test(test_break_at_ready),
        cmocka_unit_test(test_break_at_commit),
        cmocka_unit_test(test_break_at_running),
        cmocka_unit_test(test_nack_after_commit),
        cmocka_unit_test(test_silent_peer),
        cmocka_unit_test(test_tsc_refused),
        cmocka_unit_test(test_unsaveable_device),
        cmocka_unit_test(test_snapshot_stream),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(kernel_path);
    return r;
}
