/* SPDX-License-Identifier: MIT */
/*
 * The fault-injection filter: passes requests to its child "file", except
 * that rules make chosen operations at chosen offsets fail with a chosen
 * errno, or wait first.  Up to 8 rules, "inject.N.<key>":
 *   op=read|write|flush|discard|write-zeroes|any   (default any)
 *   offset=0 len=0      the byte range a request must touch (len 0: all)
 *   errno=EIO           the error (name or number; 0: only delay)
 *   delay-ns=0          wait this long first
 *   count=0             fire this many times, then pass (0: always)
 */
#include <errno.h>
#include <string.h>

#include "block/block-int.h"

#define FAULT_MAX_RULES 8

enum { F_READ = 1, F_WRITE = 2, F_FLUSH = 4, F_DISCARD = 8, F_ZEROES = 16, F_ANY = 31 };

typedef struct FaultRule {
    unsigned ops;
    int64_t offset, len;
    int err;
    int64_t delay_ns;
    int64_t count;            /* 0: unlimited */
    int64_t fired;            /* atomic */
} FaultRule;

typedef struct FaultState {
    int nrules;
    FaultRule rules[FAULT_MAX_RULES];
} FaultState;

static const BlockOptDesc fault_opts[] = {
    { "inject.*", BLOCK_OPT_STRING, "inject.N.{op,offset,len,errno,delay-ns,count}" },
    { NULL, 0, NULL },
};

static const char *const fault_children[] = { "file", NULL };

static bool parse_op(const char *s, unsigned *out)
{
    static const struct { const char *name; unsigned v; } ops[] = {
        { "read", F_READ }, { "write", F_WRITE }, { "flush", F_FLUSH },
        { "discard", F_DISCARD }, { "write-zeroes", F_ZEROES }, { "any", F_ANY },
    };
    for (size_t i = 0; i < VMM_ARRAY_SIZE(ops); i++) {
        if (!strcmp(s, ops[i].name)) {
            *out = ops[i].v;
            return true;
        }
    }
    return false;
}

static bool parse_rule(BlockOpts *r, int idx, FaultRule *rule, GError **errp)
{
    g_autofree char *op = block_opts_take(r, "op");
    g_autofree char *err = block_opts_take(r, "errno");
    uint64_t off, len;
    rule->ops = F_ANY;
    rule->err = EIO;
    if (op && !parse_op(op, &rule->ops)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "inject.%d.op: '%s' is not read, write, flush, discard, write-zeroes "
                    "or any", idx, op);
        return false;
    }
    if (err && strcmp(err, "0") && !block_parse_errno(err, &rule->err)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "inject.%d.errno: '%s' is not an errno name or number", idx, err);
        return false;
    }
    if (err && !strcmp(err, "0")) {
        rule->err = 0;
    }
    if (!block_opts_take_size(r, "offset", 0, &off, errp) ||
        !block_opts_take_size(r, "len", 0, &len, errp) ||
        !block_opts_take_int(r, "delay-ns", 0, &rule->delay_ns, errp) ||
        !block_opts_take_int(r, "count", 0, &rule->count, errp)) {
        g_prefix_error(errp, "inject.%d: ", idx);
        return false;
    }
    const char *left = block_opts_first_key(r);
    if (left) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "Unknown option 'inject.%d.%s' for "
                    "driver 'fault'", idx, left);
        return false;
    }
    if (rule->delay_ns < 0 || rule->count < 0) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "inject.%d: delay-ns and count must be >= 0", idx);
        return false;
    }
    rule->offset = (int64_t)off;
    rule->len = (int64_t)len;
    return true;
}

static int fault_open(VmmBlockNode *n, BlockOpts *o, int flags, GError **errp) GRAPH_RDLOCK
{
    FaultState *s = n->opaque;
    (void)flags;
    for (int i = 0; i < FAULT_MAX_RULES; i++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "inject.%d", i);
        BlockOpts *r = block_opts_take_prefix(o, prefix);
        if (!r) {
            continue;
        }
        bool ok = parse_rule(r, i, &s->rules[s->nrules], errp);
        block_opts_free(r);
        if (!ok) {
            return -EINVAL;
        }
        s->nrules++;
    }
    const char *left = block_opts_first_key(o);
    if (left) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Unknown option '%s' for driver 'fault' (rules are inject.0 .. inject.%d)",
                    left, FAULT_MAX_RULES - 1);
        return -EINVAL;
    }
    n->total_bytes = n->file->bs->total_bytes;
    n->request_alignment = n->file->bs->request_alignment;
    n->mem_alignment = n->file->bs->mem_alignment;
    return 0;
}

static void fault_refresh_length(VmmBlockNode *n) GRAPH_RDLOCK
{
    if (n->file) {
        vmm_atomic_set(&n->total_bytes, vmm_atomic_read(&n->file->bs->total_bytes));
    }
}

/* Returns the errno to fail with (0: pass), after any delay. */
static int coroutine_fn fault_check(VmmBlockNode *n, unsigned op, int64_t offset,
                                    int64_t bytes)
{
    FaultState *s = n->opaque;
    for (int i = 0; i < s->nrules; i++) {
        FaultRule *r = &s->rules[i];
        if (!(r->ops & op)) {
            continue;
        }
        if (r->len && op != F_FLUSH &&
            !(offset < r->offset + r->len && r->offset < offset + bytes)) {
            continue;
        }
        if (r->count && vmm_atomic_fetch_add(&r->fired, 1) >= r->count) {
            continue;
        }
        if (r->delay_ns) {
            vmm_co_sleep_ns(NULL, r->delay_ns);
        }
        if (r->err) {
            return r->err;
        }
    }
    return 0;
}

static int coroutine_fn fault_co_preadv(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                        const struct iovec *iov, int iovcnt, int flags) GRAPH_RDLOCK
{
    int err = fault_check(n, F_READ, offset, bytes);
    return err ? -err : block_child_co_preadv(n->file, offset, bytes, iov, iovcnt, flags);
}

static int coroutine_fn fault_co_pwritev(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                         const struct iovec *iov, int iovcnt, int flags) GRAPH_RDLOCK
{
    int err = fault_check(n, F_WRITE, offset, bytes);
    return err ? -err : block_child_co_pwritev(n->file, offset, bytes, iov, iovcnt, flags);
}

static int coroutine_fn fault_co_flush(VmmBlockNode *n) GRAPH_RDLOCK
{
    int err = fault_check(n, F_FLUSH, 0, 0);
    if (err) {
        return -err;
    }
    return n->file ? block_co_flush(n->file->bs) : -ENOMEDIUM;
}

static int coroutine_fn fault_co_pdiscard(VmmBlockNode *n, int64_t offset, int64_t bytes) GRAPH_RDLOCK
{
    int err = fault_check(n, F_DISCARD, offset, bytes);
    if (err) {
        return -err;
    }
    return n->file ? block_co_pdiscard(n->file->bs, offset, bytes) : -ENOMEDIUM;
}

static int coroutine_fn fault_co_pwrite_zeroes(VmmBlockNode *n, int64_t offset,
                                               int64_t bytes, int flags) GRAPH_RDLOCK
{
    int err = fault_check(n, F_ZEROES, offset, bytes);
    if (err) {
        return -err;
    }
    return n->file ? block_co_pwrite_zeroes(n->file->bs, offset, bytes, flags) : -ENOMEDIUM;
}

const BlockDriver block_driver_fault = {
    .name = "fault",
    .instance_size = sizeof(FaultState),
    .opts = fault_opts,
    .child_names = fault_children,
    .child_role = VMM_CHILD_FILTERED | VMM_CHILD_PRIMARY,
    .is_filter = true,
    .open = fault_open,
    .co_preadv = fault_co_preadv,
    .co_pwritev = fault_co_pwritev,
    .co_flush = fault_co_flush,
    .co_pdiscard = fault_co_pdiscard,
    .co_pwrite_zeroes = fault_co_pwrite_zeroes,
    .refresh_length = fault_refresh_length,
};
