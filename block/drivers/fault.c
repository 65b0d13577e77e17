/* SPDX-License-Identifier: MIT */
/*
 * The fault-injection filter: passes requests to its child "file", except
 * that rules make chosen operations at chosen offsets fail with a chosen
 * errno, or wait first.  Rules given at open are "inject.N.<key>" (N =
 * 0..7, the rule's id); vmm_block_fault_add_rule() adds more at run time
 * ("<key>=...,..."), vmm_block_fault_remove_rule() removes any.  Keys:
 *   op=read|write|flush|discard|write-zeroes|any   (default any)
 *   offset=0 len=0      the byte range a request must touch (len 0: all)
 *   errno=EIO           the error (name or number; 0: only delay)
 *   delay-ns=0          wait this long first
 *   count=0             fire this many times, then pass (0: always)
 *
 * Threads: requests check the rules in any AioContext; rules are added and
 * removed in the main loop.  The list and each rule's hit count are under
 * the node's `lock`, held only while a request picks its error and delay
 * (never across the delay), so a request sees a rule wholly or not at all
 * and a removed rule is freed when nobody can be looking at it.
 */
#include <errno.h>
#include <string.h>

#include "block/block-int.h"

#define FAULT_OPEN_RULES 8

enum { F_READ = 1, F_WRITE = 2, F_FLUSH = 4, F_DISCARD = 8, F_ZEROES = 16, F_ANY = 31 };

typedef struct FaultRule {
    int id;
    unsigned ops;
    int64_t offset, len;
    int err;
    int64_t delay_ns;
    int64_t count;            /* 0: unlimited */
    int64_t hits;             /* times fired; under FaultState.lock */
    struct FaultRule *next;
} FaultRule;

typedef struct FaultState {
    /* Protects rules, next_id and every rule's hits.  (clang's analysis
     * cannot name a sibling member in C; rules_append() requires it.) */
    VmmMutex lock;
    FaultRule *rules;                        /* in id order */
    int next_id;
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

/* Fill @rule from @r's keys; @what names the rule in messages. */
static bool parse_rule(BlockOpts *r, const char *what, FaultRule *rule, GError **errp)
{
    g_autofree char *op = block_opts_take(r, "op");
    g_autofree char *err = block_opts_take(r, "errno");
    uint64_t off, len;
    rule->ops = F_ANY;
    rule->err = EIO;
    if (op && !parse_op(op, &rule->ops)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "%s.op: '%s' is not read, write, flush, discard, write-zeroes "
                    "or any", what, op);
        return false;
    }
    if (err && strcmp(err, "0") && !block_parse_errno(err, &rule->err)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "%s.errno: '%s' is not an errno name or number", what, err);
        return false;
    }
    if (err && !strcmp(err, "0")) {
        rule->err = 0;
    }
    if (!block_opts_take_size(r, "offset", 0, &off, errp) ||
        !block_opts_take_size(r, "len", 0, &len, errp) ||
        !block_opts_take_int(r, "delay-ns", 0, &rule->delay_ns, errp) ||
        !block_opts_take_int(r, "count", 0, &rule->count, errp)) {
        g_prefix_error(errp, "%s: ", what);
        return false;
    }
    const char *left = block_opts_first_key(r);
    if (left) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "Unknown option '%s.%s' for "
                    "driver 'fault'", what, left);
        return false;
    }
    if (rule->delay_ns < 0 || rule->count < 0 || off > INT64_MAX || len > INT64_MAX) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "%s: delay-ns and count must be >= 0, offset and len below 2^63", what);
        return false;
    }
    rule->offset = (int64_t)off;
    rule->len = (int64_t)len;
    return true;
}

/* Append @rule (ids ascend along the list). */
static void rules_append(FaultState *s, FaultRule *rule) VMM_REQUIRES(s->lock)
{
    FaultRule **pp = &s->rules;
    while (*pp) {
        pp = &(*pp)->next;
    }
    rule->next = NULL;
    *pp = rule;
}

/* At open failure and close: nobody else can see the rules. */
static void rules_free(FaultState *s)
{
    while (s->rules) {
        FaultRule *r = s->rules;
        s->rules = r->next;
        g_free(r);
    }
}

static int fault_open(VmmBlockNode *n, BlockOpts *o, int flags, GError **errp) GRAPH_RDLOCK
{
    FaultState *s = n->opaque;
    (void)flags;
    vk_mutex_init(&s->lock);
    vk_mutex_lock(&s->lock);
    s->next_id = FAULT_OPEN_RULES;
    vk_mutex_unlock(&s->lock);
    for (int i = 0; i < FAULT_OPEN_RULES; i++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "inject.%d", i);
        BlockOpts *r = block_opts_take_prefix(o, prefix);
        if (!r) {
            continue;
        }
        FaultRule *rule = g_new0(FaultRule, 1);
        rule->id = i;
        bool ok = parse_rule(r, prefix, rule, errp);
        block_opts_free(r);
        if (!ok) {
            g_free(rule);
            goto fail;
        }
        vk_mutex_lock(&s->lock);
        rules_append(s, rule);
        vk_mutex_unlock(&s->lock);
    }
    const char *left = block_opts_first_key(o);
    if (left) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Unknown option '%s' for driver 'fault' (rules are inject.0 .. inject.%d)",
                    left, FAULT_OPEN_RULES - 1);
        goto fail;
    }
    n->total_bytes = n->file->bs->total_bytes;
    n->request_alignment = n->file->bs->request_alignment;
    n->mem_alignment = n->file->bs->mem_alignment;
    n->max_transfer = n->file->bs->max_transfer;
    return 0;

fail:
    rules_free(s);
    vk_mutex_destroy(&s->lock);
    return -EINVAL;
}

static void fault_close(VmmBlockNode *n)
{
    FaultState *s = n->opaque;
    rules_free(s);
    vk_mutex_destroy(&s->lock);
}

static void fault_refresh_length(VmmBlockNode *n) GRAPH_RDLOCK
{
    if (n->file) {
        vk_atomic_set(&n->total_bytes, vk_atomic_read(&n->file->bs->total_bytes));
        vk_atomic_set(&n->max_transfer,
                       block_node_cap_max_transfer(n, n->file->bs->max_transfer));
    }
}

/* Returns the errno to fail with (0: pass), after any delay.  Rules are
 * applied in id order: every matching rule adds its delay, the first
 * matching one with an errno decides the error. */
static int coroutine_fn fault_check(VmmBlockNode *n, unsigned op, int64_t offset,
                                    int64_t bytes)
{
    FaultState *s = n->opaque;
    int64_t delay = 0;
    int err = 0;
    vk_mutex_lock(&s->lock);
    for (FaultRule *r = s->rules; r && !err; r = r->next) {
        if (!(r->ops & op)) {
            continue;
        }
        if (r->len && op != F_FLUSH &&
            !(offset < r->offset + r->len && r->offset < offset + bytes)) {
            continue;
        }
        if (r->count && r->hits >= r->count) {
            continue;
        }
        r->hits++;
        delay += r->delay_ns;
        err = r->err;
    }
    vk_mutex_unlock(&s->lock);
    if (delay) {
        vmm_co_sleep_ns(NULL, delay);
    }
    return err;
}

/* ---- Rules at run time ------------------------------------------------------ */

static FaultState *fault_state(VmmBlockNode *n)
{
    return n && n->drv == &block_driver_fault ? n->opaque : NULL;
}

int vmm_block_fault_add_rule(VmmBlockNode *n, const char *rule, GError **errp)
{
    FaultState *s = fault_state(n);
    if (!s) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, ENOTSUP, "Node '%s' is not a fault filter",
                    n ? n->node_name : "(null)");
        return -ENOTSUP;
    }
    if (!rule) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "No rule given");
        return -EINVAL;
    }
    BlockOpts *o = block_opts_parse(rule, errp);
    if (!o) {
        return -EINVAL;
    }
    FaultRule *r = g_new0(FaultRule, 1);
    bool ok = parse_rule(o, "rule", r, errp);
    block_opts_free(o);
    if (!ok) {
        g_free(r);
        return -EINVAL;
    }
    vk_mutex_lock(&s->lock);
    if (s->next_id == INT32_MAX) {
        vk_mutex_unlock(&s->lock);
        g_free(r);
        g_set_error(errp, BLOCK_ERR_DOMAIN, ENOSPC, "Node '%s': out of rule ids",
                    n->node_name);
        return -ENOSPC;
    }
    r->id = s->next_id++;
    rules_append(s, r);
    vk_mutex_unlock(&s->lock);
    return r->id;
}

int vmm_block_fault_remove_rule(VmmBlockNode *n, int id)
{
    FaultState *s = fault_state(n);
    if (!s) {
        return -ENOTSUP;
    }
    vk_mutex_lock(&s->lock);
    for (FaultRule **pp = &s->rules; *pp; pp = &(*pp)->next) {
        FaultRule *r = *pp;
        if (r->id == id) {
            *pp = r->next;
            vk_mutex_unlock(&s->lock);
            g_free(r);          /* requests only look at it under the lock */
            return 0;
        }
    }
    vk_mutex_unlock(&s->lock);
    return -ENOENT;
}

int64_t vmm_block_fault_rule_hits(VmmBlockNode *n, int id)
{
    FaultState *s = fault_state(n);
    if (!s) {
        return -ENOTSUP;
    }
    int64_t ret = -ENOENT;
    vk_mutex_lock(&s->lock);
    for (FaultRule *r = s->rules; r; r = r->next) {
        if (r->id == id) {
            ret = r->hits;
            break;
        }
    }
    vk_mutex_unlock(&s->lock);
    return ret;
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
    .close = fault_close,
    .co_preadv = fault_co_preadv,
    .co_pwritev = fault_co_pwritev,
    .co_flush = fault_co_flush,
    .co_pdiscard = fault_co_pdiscard,
    .co_pwrite_zeroes = fault_co_pwrite_zeroes,
    .refresh_length = fault_refresh_length,
};
