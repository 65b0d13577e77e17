/* SPDX-License-Identifier: MIT */
/* The block graph: opening chains from options, errors, edges, replace,
 * BlockBackends, contexts. */
#include "block-test-util.h"

static void test_open_null(void **state)
{
    (void)state;
    VmmBlockNode *n = open_ok("driver=null,size=64M,node-name=n0");
    assert_string_equal(vmm_block_node_name(n), "n0");
    assert_string_equal(vmm_block_node_driver(n), "null");
    assert_string_equal(vmm_block_node_option(n, "size"), "64M");
    assert_int_equal(vmm_block_node_length(n), 64 << 20);
    assert_ptr_equal(vmm_block_find_node("n0"), n);
    assert_ptr_equal(vmm_block_node_get_context(n), vmm_aio_context_main());
    vmm_block_node_unref(n);
    assert_null(vmm_block_find_node("n0"));
}

static void test_open_raw_over_file(void **state)
{
    (void)state;
    char *path = tmpfile_make(1 << 20, false);
    g_autofree char *opts = g_strdup_printf(
        "driver=raw,node-name=fmt,offset=4096,size=64k,file.driver=file,"
        "file.node-name=proto,file.filename=%s", path);
    VmmBlockNode *n = open_ok(opts);
    assert_int_equal(vmm_block_node_length(n), 65536);
    vmm_graph_rdlock_main_loop();
    VmmBlockChild *c = vmm_block_node_child(n, "file");
    assert_non_null(c);
    assert_string_equal(vmm_block_child_name(c), "file");
    assert_true(vmm_block_child_role(c) & VMM_CHILD_PRIMARY);
    VmmBlockNode *proto = vmm_block_child_node(c);
    assert_string_equal(vmm_block_node_name(proto), "proto");
    assert_int_equal(vmm_block_node_length(proto), 1 << 20);
    assert_int_equal(vmm_block_node_parent_count(proto), 1);
    assert_ptr_equal(vmm_block_node_next_child(n, NULL), c);
    assert_null(vmm_block_node_next_child(n, c));
    vmm_graph_rdunlock_main_loop();
    vmm_block_node_unref(n);
    /* The child went with its only parent. */
    assert_null(vmm_block_find_node("proto"));
    tmpfile_remove(path);
}

static void test_open_errors(void **state)
{
    (void)state;
    open_expect_error("", "'driver' is required");
    open_expect_error("size=1M", "'driver' is required");
    open_expect_error("driver=qcow9", "Unknown driver 'qcow9'");
    open_expect_error("driver=null,colour=blue", "Unknown option 'colour' for driver 'null'");
    open_expect_error("driver=null,size=12Q", "Option 'size' expects a size");
    open_expect_error("driver=null,size=-5", "Option 'size' expects a size");
    open_expect_error("driver=null,read-zeroes=maybe", "expects on/off, not 'maybe'");
    open_expect_error("driver=null,read-pattern=300", "must be a byte");
    open_expect_error("driver=null,latency-ns=abc", "expects an integer");
    open_expect_error("driver=null,size", "has no value");
    open_expect_error("driver=null,size=1M,size=2M", "given twice");
    open_expect_error("driver=null,node-name=9lives", "Invalid node name");
    open_expect_error("driver=raw", "needs a child 'file'");
    open_expect_error("driver=raw,file=nosuchnode", "Node 'nosuchnode'");
    open_expect_error("driver=raw,file.driver=null,file.bogus=1",
                      "Child 'file': Unknown option 'bogus'");
    open_expect_error("driver=raw,file.driver=null,file.size=1M,offset=2M",
                      "beyond the end");
    open_expect_error("driver=raw,file.driver=null,file.size=1M,size=2M", "exceed");
    open_expect_error("driver=file", "'filename' is required");
    int code = open_expect_error("driver=file,filename=/nonexistent/disk.img",
                                 "Could not open '/nonexistent/disk.img'");
    assert_int_equal(code, ENOENT);
    open_expect_error("driver=file,filename=/dev/null", "neither a regular file");
    open_expect_error("driver=file,filename=/etc/hostname,aio=posix", "Option 'aio'");
    open_expect_error("driver=fault,file.driver=null,inject.0.op=munch", "'munch'");
    open_expect_error("driver=fault,file.driver=null,inject.0.errno=EWHAT", "EWHAT");
    open_expect_error("driver=fault,file.driver=null,inject.0.sparkle=1",
                      "Unknown option 'inject.0.sparkle'");
    open_expect_error("driver=fault,file.driver=null,inject.9.op=read",
                      "Unknown option 'inject.9.op'");
    /* Nothing leaked into the node table. */
    assert_null(vmm_block_find_node("#block000"));
}

static void test_duplicate_name_and_reference(void **state)
{
    (void)state;
    VmmBlockNode *a = open_ok("driver=null,size=1M,node-name=base");
    open_expect_error("driver=null,node-name=base", "already in use");
    /* file=NODE attaches an existing node. */
    VmmBlockNode *r = open_ok("driver=raw,file=base,node-name=top");
    vmm_graph_rdlock_main_loop();
    assert_ptr_equal(vmm_block_child_node(vmm_block_node_child(r, "file")), a);
    assert_int_equal(vmm_block_node_parent_count(a), 1);
    vmm_graph_rdunlock_main_loop();
    open_expect_error("driver=raw,file=base,file.driver=null", "not both");
    vmm_block_node_unref(r);
    /* Our reference keeps it. */
    assert_ptr_equal(vmm_block_find_node("base"), a);
    vmm_graph_rdlock_main_loop();
    assert_int_equal(vmm_block_node_parent_count(a), 0);
    vmm_graph_rdunlock_main_loop();
    vmm_block_node_unref(a);
}

static void test_comma_escape(void **state)
{
    (void)state;
    char *dir = g_dir_make_tmp("vmmkit-a,b-XXXXXX", NULL);
    assert_non_null(dir);
    g_autofree char *path = g_build_filename(dir, "x.img", NULL);
    assert_true(g_file_set_contents(path, "0123456789abcdef", 16, NULL));
    GString *esc = g_string_new("driver=file,filename=");
    for (const char *p = path; *p; p++) {
        g_string_append_c(esc, *p);
        if (*p == ',') {
            g_string_append_c(esc, ',');
        }
    }
    VmmBlockNode *n = open_ok(esc->str);
    assert_int_equal(vmm_block_node_length(n), 16);
    assert_string_equal(vmm_block_node_option(n, "filename"), path);
    vmm_block_node_unref(n);
    g_string_free(esc, true);
    unlink(path);
    rmdir(dir);
    g_free(dir);
}

static void test_attach_detach(void **state)
{
    (void)state;
    GError *err = NULL;
    VmmBlockNode *f1 = open_ok("driver=null,size=1M,node-name=f1");
    VmmBlockNode *f2 = open_ok("driver=null,size=2M,node-name=f2");
    VmmBlockNode *raw = open_ok("driver=raw,file=f1,node-name=r");
    assert_int_equal(vmm_block_node_length(raw), 1 << 20);

    /* Name taken, unknown child name, cycle. */
    assert_int_equal(vmm_block_attach_child(raw, f2, "file", VMM_CHILD_DATA, &err), -EEXIST);
    assert_non_null(strstr(err->message, "already has a child 'file'"));
    g_clear_error(&err);
    assert_int_equal(vmm_block_attach_child(raw, f2, "backing", VMM_CHILD_DATA, &err),
                     -EPERM);
    g_clear_error(&err);
    assert_int_equal(vmm_block_attach_child(f1, raw, "file", VMM_CHILD_DATA, &err), -EPERM);
    g_clear_error(&err);

    /* Detach: the raw node now has no medium and length 0. */
    assert_int_equal(vmm_block_detach_child(raw, "file"), 0);
    assert_int_equal(vmm_block_detach_child(raw, "file"), -ENOENT);
    assert_int_equal(vmm_block_node_length(raw), 0);
    vmm_graph_rdlock_main_loop();
    assert_int_equal(vmm_block_node_parent_count(f1), 0);
    vmm_graph_rdunlock_main_loop();

    /* Attach another: the length follows. */
    assert_int_equal(vmm_block_attach_child(raw, f2, "file", VMM_CHILD_DATA, &err), 0);
    assert_int_equal(vmm_block_node_length(raw), 2 << 20);

    /* Cycle: raw2 above raw; attaching raw2 under ... r's child slot is
     * taken, so build the cycle via a fault filter. */
    VmmBlockNode *flt = open_ok("driver=fault,file=r,node-name=flt");
    assert_int_equal(vmm_block_detach_child(raw, "file"), 0);
    assert_int_equal(vmm_block_attach_child(raw, flt, "file", VMM_CHILD_DATA, &err), -ELOOP);
    assert_non_null(strstr(err->message, "cycle"));
    g_clear_error(&err);

    vmm_block_node_unref(flt);
    vmm_block_node_unref(raw);
    vmm_block_node_unref(f1);
    vmm_block_node_unref(f2);
}

static int resized;
static void on_resize(void *opaque)
{
    (void)opaque;
    resized++;
}

static void test_replace(void **state)
{
    (void)state;
    GError *err = NULL;
    VmmBlockNode *a = open_ok("driver=null,size=1M,node-name=a");
    VmmBlockNode *b = open_ok("driver=null,size=1M,node-name=b");
    VmmBlockNode *c = open_ok("driver=null,size=3M,node-name=c");
    VmmBlockNode *r1 = open_ok("driver=raw,file=a,node-name=r1");
    VmmBlockNode *r2 = open_ok("driver=raw,file=a,node-name=r2");
    VmmBlockBackend *blk = vmm_blk_new(NULL, NULL);
    VmmBlockDevOps ops = { .size = sizeof(ops), .resize = on_resize };
    assert_int_equal(vmm_blk_set_dev_ops(blk, &ops, NULL), 0);
    assert_int_equal(vmm_blk_insert(blk, a, &err), 0);
    assert_ptr_equal(vmm_blk_node(blk), a);
    assert_int_equal(vmm_blk_getlength(blk), 1 << 20);

    /* Every edge to a (r1, r2, blk) now points at b. */
    assert_int_equal(vmm_block_replace_node(a, b, &err), 0);
    vmm_graph_rdlock_main_loop();
    assert_int_equal(vmm_block_node_parent_count(a), 0);
    assert_int_equal(vmm_block_node_parent_count(b), 3);
    assert_ptr_equal(vmm_block_child_node(vmm_block_node_child(r1, "file")), b);
    vmm_graph_rdunlock_main_loop();
    assert_ptr_equal(vmm_blk_node(blk), b);

    /* One edge only; lengths follow; the device hears of it. */
    resized = 0;
    assert_int_equal(vmm_block_replace_child(r1, "file", c, &err), 0);
    assert_int_equal(vmm_block_node_length(r1), 3 << 20);
    assert_int_equal(vmm_block_node_length(r2), 1 << 20);
    assert_int_equal(vmm_block_replace_node(b, c, &err), 0);
    assert_int_equal(vmm_blk_getlength(blk), 3 << 20);
    assert_true(resized >= 1);
    assert_int_equal(vmm_block_replace_child(r1, "nope", c, &err), -ENOENT);
    g_clear_error(&err);
    assert_int_equal(vmm_block_replace_child(r1, "file", r1, &err), -ELOOP);
    g_clear_error(&err);

    /* A filter inserted above c keeps its own edge to c. */
    VmmBlockNode *flt = open_ok("driver=fault,file=c,node-name=flt2");
    assert_int_equal(vmm_block_replace_node(c, flt, &err), 0);
    assert_ptr_equal(vmm_blk_node(blk), flt);
    vmm_graph_rdlock_main_loop();
    assert_ptr_equal(vmm_block_child_node(vmm_block_node_child(flt, "file")), c);
    assert_ptr_equal(vmm_block_child_node(vmm_block_node_child(r1, "file")), flt);
    vmm_graph_rdunlock_main_loop();

    vmm_blk_unref(blk);
    vmm_block_node_unref(flt);
    vmm_block_node_unref(r1);
    vmm_block_node_unref(r2);
    vmm_block_node_unref(a);
    vmm_block_node_unref(b);
    vmm_block_node_unref(c);
    assert_null(vmm_block_find_node("a"));
    assert_null(vmm_block_find_node("c"));
}

static void test_backend_basics(void **state)
{
    (void)state;
    GError *err = NULL;
    VmmBlockBackend *blk = vmm_blk_new(NULL, NULL);
    assert_int_equal(vmm_blk_getlength(blk), -ENOMEDIUM);
    char buf[512];
    assert_int_equal(vmm_blk_pread(blk, 0, 512, buf, 0), -ENOMEDIUM);
    VmmBlockNode *n = open_ok("driver=null,size=1M");
    assert_int_equal(vmm_blk_insert(blk, n, &err), 0);
    assert_int_equal(vmm_blk_insert(blk, n, &err), -EBUSY);
    g_clear_error(&err);
    vmm_block_node_unref(n);                   /* the BlockBackend holds it */
    assert_int_equal(vmm_blk_getlength(blk), 1 << 20);
    assert_false(vmm_blk_is_read_only(blk));
    vmm_blk_remove(blk);
    assert_null(vmm_blk_node(blk));
    vmm_blk_unref(blk);

    blk = vmm_blk_new_open("driver=null,size=4k,read-only=on", 0, &err);
    assert_non_null(blk);
    assert_true(vmm_blk_is_read_only(blk));
    assert_int_equal(vmm_blk_pwrite(blk, 0, 512, buf, 0), -EPERM);
    vmm_blk_unref(blk);
    assert_null(vmm_blk_new_open("driver=null,bad=1", 0, &err));
    assert_non_null(strstr(err->message, "bad"));
    g_clear_error(&err);
}

static void test_context_move(void **state)
{
    (void)state;
    GError *err = NULL;
    int e = 0;
    VmmIOThread *t = vmm_iothread_new("blk-ctx", NULL, &e);
    assert_non_null(t);
    VmmAioContext *ictx = vmm_iothread_get_context(t);
    VmmBlockBackend *blk = vmm_blk_new_open(
        "driver=raw,node-name=top,file.driver=null,file.node-name=bottom", 0, &err);
    assert_non_null(blk);
    VmmBlockNode *top = vmm_blk_node(blk);
    VmmBlockNode *bottom = vmm_block_find_node("bottom");

    assert_int_equal(vmm_blk_set_context(blk, ictx, &err), 0);
    assert_ptr_equal(vmm_blk_get_context(blk), ictx);
    assert_ptr_equal(vmm_block_node_get_context(top), ictx);
    assert_ptr_equal(vmm_block_node_get_context(bottom), ictx);

    /* Moving the child moves its parents and their BlockBackend too. */
    assert_int_equal(vmm_block_node_set_context(bottom, vmm_aio_context_main(), &err), 0);
    assert_ptr_equal(vmm_blk_get_context(blk), vmm_aio_context_main());
    assert_ptr_equal(vmm_block_node_get_context(top), vmm_aio_context_main());

    /* A device that did not agree keeps the BlockBackend where it is. */
    VmmBlockDevOps ops = { .size = sizeof(ops) };
    vmm_blk_set_dev_ops(blk, &ops, NULL);
    assert_int_equal(vmm_block_node_set_context(bottom, ictx, &err), -EBUSY);
    assert_non_null(strstr(err->message, "device"));
    g_clear_error(&err);
    assert_ptr_equal(vmm_block_node_get_context(bottom), vmm_aio_context_main());
    /* ... but the holder may move it. */
    assert_int_equal(vmm_blk_set_context(blk, ictx, &err), 0);
    assert_ptr_equal(vmm_block_node_get_context(bottom), ictx);
    assert_int_equal(vmm_blk_set_context(blk, vmm_aio_context_main(), &err), 0);

    vmm_blk_unref(blk);
    vmm_iothread_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_null),
        cmocka_unit_test(test_open_raw_over_file),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_duplicate_name_and_reference),
        cmocka_unit_test(test_comma_escape),
        cmocka_unit_test(test_attach_detach),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_backend_basics),
        cmocka_unit_test(test_context_move),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
