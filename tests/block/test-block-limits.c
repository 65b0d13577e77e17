/* SPDX-License-Identifier: MIT */
/*
 * Requests split at a node's max transfer size (data, chunk counts seen by
 * the driver below, errors in a middle chunk), and fault-filter rules
 * added and removed at run time, also while an iothread does I/O.
 */
#include <sched.h>

#include "block-test-util.h"

/* Cut @buf into @n iovecs of uneven lengths (1, 2, ..., wrapping at 97). */
static int scatter(unsigned char *buf, size_t len, struct iovec *iov, int max)
{
    int n = 0;
    size_t off = 0;
    while (off < len) {
        assert_true(n < max);
        size_t piece = (size_t)(n % 97) * 37 + 1;
        piece = MIN(piece, len - off);
        iov[n++] = (struct iovec){ buf + off, piece };
        off += piece;
    }
    return n;
}

/* ---- Splitting -------------------------------------------------------------- */

/* A fault filter with max-transfer=4k over null: rule 0..3 count the chunks
 * each operation reaches the filter's driver with (errno=0: pass). */
#define COUNTING_FAULT \
    "driver=fault,node-name=f,max-transfer=4k,file.driver=null,file.size=1M," \
    "file.read-pattern=0x5a,inject.0.op=read,inject.0.errno=0," \
    "inject.1.op=write,inject.1.errno=0,inject.2.op=write-zeroes,inject.2.errno=0," \
    "inject.3.op=discard,inject.3.errno=0,inject.4.op=flush,inject.4.errno=0"

static void test_split_counts(void **state)
{
    (void)state;
    VmmBlockBackend *blk = blk_open(COUNTING_FAULT);
    VmmBlockNode *f = vmm_blk_node(blk);
    assert_int_equal(vmm_blk_max_transfer(blk), 4096);

    /* 66536 bytes at 1000: [1000, 4096), 15 x 4k, then 2000 bytes = 17. */
    size_t len = 65536 + 1000;
    unsigned char *buf = g_malloc(len + 100);
    memset(buf, 0, len + 100);
    struct iovec iov[200];
    int cnt = scatter(buf, len, iov, 200);
    assert_true(cnt > 16);              /* more than the slice's stack array */
    assert_int_equal(vmm_blk_preadv(blk, 1000, (int64_t)len, iov, cnt, 0), 0);
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != 0x5a) {
            print_error("byte %zu: %#x\n", i, buf[i]);
            fail();
        }
    }
    assert_int_equal(buf[len], 0);      /* nothing past the request */
    assert_int_equal(vmm_block_fault_rule_hits(f, 0), 17);

    /* An exact 4k request is not split; 64k aligned is 16 pieces. */
    assert_int_equal(vmm_blk_pread(blk, 8192, 4096, buf, 0), 0);
    assert_int_equal(vmm_block_fault_rule_hits(f, 0), 18);

    assert_int_equal(vmm_blk_pwrite(blk, 0, 65536, buf, 0), 0);
    assert_int_equal(vmm_block_fault_rule_hits(f, 1), 16);
    /* FUA: one flush after all pieces. */
    assert_int_equal(vmm_blk_pwrite(blk, 0, 65536, buf, VMM_REQ_FUA), 0);
    assert_int_equal(vmm_block_fault_rule_hits(f, 1), 32);
    assert_int_equal(vmm_block_fault_rule_hits(f, 4), 1);

    assert_int_equal(vmm_blk_pwrite_zeroes(blk, 4096, 65536, 0), 0);
    assert_int_equal(vmm_block_fault_rule_hits(f, 2), 16);
    assert_int_equal(vmm_blk_pdiscard(blk, 0, 65536 + 4096), 0);
    assert_int_equal(vmm_block_fault_rule_hits(f, 3), 17);
    g_free(buf);
    vmm_blk_unref(blk);
}

/* Data through a split path, misaligned and scattered, on a real file. */
static void test_split_file_data(void **state)
{
    (void)state;
    char *path = tmpfile_make(1 << 20, false);
    VmmBlockBackend *blk = blk_open("driver=raw,file.driver=file,file.filename=%s,"
                                    "file.max-transfer=8k", path);
    assert_int_equal(vmm_blk_max_transfer(blk), 8192);   /* raw inherits */

    /* Read 100000 bytes at 3001 in 8k pieces into a scattered buffer. */
    size_t len = 100000;
    unsigned char *buf = g_malloc(len);
    struct iovec iov[400];
    int cnt = scatter(buf, len, iov, 400);
    assert_int_equal(vmm_blk_preadv(blk, 3001, (int64_t)len, iov, cnt, 0), 0);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(buf[i], pattern_byte(3001 + (int64_t)i));
    }

    /* Write a different pattern the same way, read it back whole. */
    for (size_t i = 0; i < len; i++) {
        buf[i] = (unsigned char)(i * 13 + 1);
    }
    assert_int_equal(vmm_blk_pwritev(blk, 70001, (int64_t)len, iov, cnt, 0), 0);
    unsigned char *back = g_malloc(len + 2);
    assert_int_equal(vmm_blk_pread(blk, 70000, (int64_t)len + 2, back, 0), 0);
    assert_int_equal(back[0], pattern_byte(70000));          /* untouched */
    assert_int_equal(back[len + 1], pattern_byte(70001 + (int64_t)len));
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(back[i + 1], (unsigned char)(i * 13 + 1));
    }
    /* Zeroes over a split range. */
    assert_int_equal(vmm_blk_pwrite_zeroes(blk, 8192, 32768, 0), 0);
    assert_int_equal(vmm_blk_pread(blk, 8191, 32770, back, 0), 0);
    assert_int_equal(back[0], pattern_byte(8191));
    for (size_t i = 1; i <= 32768; i++) {
        assert_int_equal(back[i], 0);
    }
    assert_int_equal(back[32769], pattern_byte(8192 + 32768));
    g_free(back);
    g_free(buf);
    vmm_blk_unref(blk);
    tmpfile_remove(path);
}

/* A failing middle piece fails the request; later pieces are not issued. */
static void test_split_error_middle(void **state)
{
    (void)state;
    static const struct { const char *op; int errnum; } cases[] = {
        { "read", EIO }, { "write", ENOSPC }, { "write-zeroes", EIO }, { "discard", EPERM },
    };
    unsigned char buf[65536] = { 0 };
    for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
        /* Rule 0 counts pieces, rule 1 fails the one at [20k, 24k). */
        VmmBlockBackend *blk = blk_open(
            "driver=fault,max-transfer=4k,file.driver=null,file.size=1M,"
            "inject.0.op=%s,inject.0.errno=0,"
            "inject.1.op=%s,inject.1.offset=20k,inject.1.len=1,inject.1.errno=%d",
            cases[c].op, cases[c].op, cases[c].errnum);
        VmmBlockNode *f = vmm_blk_node(blk);
        int ret;
        switch (c) {
        case 0:
            ret = vmm_blk_pread(blk, 0, sizeof(buf), buf, 0);
            break;
        case 1:
            ret = vmm_blk_pwrite(blk, 0, sizeof(buf), buf, 0);
            break;
        case 2:
            ret = vmm_blk_pwrite_zeroes(blk, 0, sizeof(buf), 0);
            break;
        default:
            ret = vmm_blk_pdiscard(blk, 0, sizeof(buf));
            break;
        }
        assert_int_equal(ret, -cases[c].errnum);
        assert_int_equal(vmm_block_fault_rule_hits(f, 0), 6);   /* pieces 0..5 */
        assert_int_equal(vmm_block_fault_rule_hits(f, 1), 1);
        vmm_blk_unref(blk);
    }
}

static void test_max_transfer_option(void **state)
{
    (void)state;
    open_expect_error("driver=null,max-transfer=5G", "max-transfer");
    open_expect_error("driver=null,max-transfer=lots", "max-transfer");
    /* The smaller of a child's limit and the node's own option wins. */
    VmmBlockBackend *blk = blk_open("driver=raw,max-transfer=16k,file.driver=null,"
                                    "file.max-transfer=64k");
    assert_int_equal(vmm_blk_max_transfer(blk), 16384);
    vmm_blk_unref(blk);
    blk = blk_open("driver=null");
    assert_int_equal(vmm_blk_max_transfer(blk), 0);
    vmm_blk_unref(blk);
}

/* ---- Fault rules at run time ------------------------------------------------- */

static void test_fault_rules_runtime(void **state)
{
    (void)state;
    unsigned char buf[4096];
    VmmBlockBackend *blk = blk_open("driver=fault,file.driver=null,file.size=1M,"
                                    "inject.3.op=flush,inject.3.errno=EROFS");
    VmmBlockNode *f = vmm_blk_node(blk);
    GError *err = NULL;

    assert_int_equal(vmm_blk_pread(blk, 8192, 4096, buf, 0), 0);
    int id = vmm_block_fault_add_rule(f, "op=read,offset=8k,len=4k,errno=EIO", &err);
    assert_int_equal(id, 8);
    assert_null(err);
    assert_int_equal(vmm_blk_pread(blk, 8192, 4096, buf, 0), -EIO);
    assert_int_equal(vmm_blk_pread(blk, 0, 4096, buf, 0), 0);
    assert_int_equal(vmm_block_fault_rule_hits(f, id), 1);
    int id2 = vmm_block_fault_add_rule(f, "op=write,errno=ENOSPC,count=1", NULL);
    assert_int_equal(id2, 9);
    assert_int_equal(vmm_blk_pwrite(blk, 0, 512, buf, 0), -ENOSPC);
    assert_int_equal(vmm_blk_pwrite(blk, 0, 512, buf, 0), 0);
    assert_int_equal(vmm_block_fault_rule_hits(f, id2), 1);

    assert_int_equal(vmm_block_fault_remove_rule(f, id), 0);
    assert_int_equal(vmm_blk_pread(blk, 8192, 4096, buf, 0), 0);
    assert_int_equal(vmm_block_fault_remove_rule(f, id), -ENOENT);
    assert_int_equal(vmm_block_fault_rule_hits(f, id), -ENOENT);

    /* Open-time rules have their inject.N index as id. */
    assert_int_equal(vmm_blk_flush(blk), -EROFS);
    assert_int_equal(vmm_block_fault_remove_rule(f, 3), 0);
    assert_int_equal(vmm_blk_flush(blk), 0);

    /* Bad rules name the problem; nothing is added. */
    assert_int_equal(vmm_block_fault_add_rule(f, "op=bogus", &err), -EINVAL);
    assert_non_null(strstr(err->message, "bogus"));
    g_clear_error(&err);
    assert_int_equal(vmm_block_fault_add_rule(f, "errno=EIO,colour=red", &err), -EINVAL);
    assert_non_null(strstr(err->message, "colour"));
    g_clear_error(&err);
    assert_int_equal(vmm_block_fault_add_rule(f, "count=-1", &err), -EINVAL);
    g_clear_error(&err);
    assert_int_equal(vmm_blk_pread(blk, 0, 4096, buf, 0), 0);
    assert_int_equal(vmm_block_fault_add_rule(f, "errno=EIO", NULL), 10);

    /* Not a fault filter. */
    VmmBlockNode *null = open_ok("driver=null");
    assert_int_equal(vmm_block_fault_add_rule(null, "errno=EIO", &err), -ENOTSUP);
    assert_non_null(strstr(err->message, "not a fault filter"));
    g_clear_error(&err);
    assert_int_equal(vmm_block_fault_remove_rule(null, 0), -ENOTSUP);
    vmm_block_node_unref(null);
    vmm_blk_unref(blk);
}

/* An iothread keeps reading while the main loop adds and removes a failing
 * rule: each change is seen by the reader (it waits for that), and every
 * result is 0 or the rule's errno. */
typedef struct Reader {
    VmmBlockBackend *blk;
    int stop;
    bool done;
    int64_t ok, failed, other;      /* written by the reader, read by main */
} Reader;

static void reader_entry(void *opaque)
{
    Reader *r = opaque;
    unsigned char buf[512];
    struct iovec iov = { buf, sizeof(buf) };
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        int ret = vmm_blk_co_preadv(r->blk, 4096, sizeof(buf), &iov, 1, 0);
        int64_t *c = ret == 0 ? &r->ok : ret == -EIO ? &r->failed : &r->other;
        __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
        vmm_co_sleep_ns(NULL, 1000);     /* let the iothread breathe */
    }
    __atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

static bool wait_for_more(int64_t *counter, int64_t than)
{
    int64_t deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (__atomic_load_n(counter, __ATOMIC_ACQUIRE) <= than) {
        if (g_get_monotonic_time() > deadline) {
            return false;
        }
        sched_yield();
    }
    return true;
}

static void test_fault_rules_concurrent(void **state)
{
    (void)state;
    int e = 0;
    VmmIOThread *t = vmm_iothread_new("fault-rules", NULL, &e);
    assert_non_null(t);
    Reader r = { .blk = blk_open("driver=fault,file.driver=null,file.size=1M") };
    VmmBlockNode *f = vmm_blk_node(r.blk);
    assert_int_equal(vmm_blk_set_context(r.blk, vmm_iothread_get_context(t), NULL), 0);
    VmmCoroutine *co = vmm_coroutine_create(reader_entry, &r, &e);
    assert_non_null(co);
    vmm_aio_co_enter(vmm_iothread_get_context(t), co);

    const char *env = getenv("VMM_STRESS_ROUNDS");
    int rounds = env ? atoi(env) : 100;
    for (int i = 0; i < rounds; i++) {
        int id = vmm_block_fault_add_rule(f, i % 2 ? "op=read,errno=EIO"
                                                   : "op=any,offset=4k,len=1,errno=EIO",
                                          NULL);
        assert_true(id >= 8);
        /* Reads that check the rules after the add fail. */
        int64_t failed = __atomic_load_n(&r.failed, __ATOMIC_ACQUIRE);
        assert_true(wait_for_more(&r.failed, failed + 1));
        assert_int_equal(vmm_block_fault_remove_rule(f, id), 0);
        int64_t ok = __atomic_load_n(&r.ok, __ATOMIC_ACQUIRE);
        assert_true(wait_for_more(&r.ok, ok + 1));
    }
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    VMM_AIO_WAIT_WHILE(NULL, !__atomic_load_n(&r.done, __ATOMIC_ACQUIRE));
    assert_int_equal(r.other, 0);
    assert_true(r.failed >= 2 * rounds);
    vmm_blk_unref(r.blk);
    vmm_iothread_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_counts),
        cmocka_unit_test(test_split_file_data),
        cmocka_unit_test(test_split_error_middle),
        cmocka_unit_test(test_max_transfer_option),
        cmocka_unit_test(test_fault_rules_runtime),
        cmocka_unit_test(test_fault_rules_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
