/* SPDX-License-Identifier: MIT */
/*
 * The block graph: nodes, child edges, opening a chain from options,
 * attach/detach/replace, and moving a connected set of nodes to another
 * AioContext.  Everything here runs in the main loop; graph changes happen
 * under the graph write lock (see graph-lock.c), reads under the read lock
 * (the main loop's is free).
 */
#include <errno.h>
#include <string.h>

#include "block/block-int.h"

GPtrArray *block_all_nodes;
static unsigned auto_name_counter;

static const BlockDriver *const drivers[] = {
    &block_driver_null, &block_driver_file, &block_driver_raw, &block_driver_fault,
};

static const BlockDriver *find_driver(const char *name)
{
    for (size_t i = 0; i < VMM_ARRAY_SIZE(drivers); i++) {
        if (!strcmp(drivers[i]->name, name)) {
            return drivers[i];
        }
    }
    return NULL;
}

VmmBlockNode *vmm_block_find_node(const char *name)
{
    if (!name || !block_all_nodes) {
        return NULL;
    }
    for (guint i = 0; i < block_all_nodes->len; i++) {
        VmmBlockNode *n = g_ptr_array_index(block_all_nodes, i);
        if (!strcmp(n->node_name, name)) {
            return n;
        }
    }
    return NULL;
}

static bool valid_node_name(const char *s)
{
    if (!g_ascii_isalpha(*s)) {
        return false;
    }
    for (; *s; s++) {
        if (!g_ascii_isalnum(*s) && *s != '-' && *s != '_' && *s != '.') {
            return false;
        }
    }
    return true;
}

/* ---- Edges ------------------------------------------------------------------ */

VmmBlockNode *block_node_parent_of(VmmBlockChild *c)
{
    return c->klass == &block_child_of_node ? c->parent : NULL;
}

static VmmBlockChild **parent_children_head(VmmBlockChild *c)
    VMM_NO_TSA
{
    VmmBlockNode *p = block_node_parent_of(c);
    return p ? &p->children : NULL;
}

VmmBlockChild *block_child_attach(void *parent, const BlockChildClass *klass,
                                  VmmBlockNode *child, const char *name, unsigned role)
{
    VmmBlockChild *c = g_new0(VmmBlockChild, 1);
    c->name = g_strdup(name);
    c->role = role;
    c->klass = klass;
    c->parent = parent;
    c->bs = child;
    vmm_block_node_ref(child);

    VmmBlockChild **head = parent_children_head(c);
    if (head) {
        VmmBlockChild **pp = head;
        while (*pp) {
            pp = &(*pp)->next_child;
        }
        *pp = c;
        VmmBlockNode *p = parent;
        if (!strcmp(name, "file") || (p->drv->child_names &&
                                       !strcmp(name, p->drv->child_names[0]))) {
            p->file = c;
        }
    }
    c->next_parent = child->parents;
    child->parents = c;

    /* A quiesced child keeps its new parent quiet too. */
    if (vk_atomic_read(&child->quiesce_counter) > 0 && c->klass->drained_begin) {
        c->quiesced_parent = true;
        c->klass->drained_begin(c);
    }
    return c;
}

static void unlink_from_target(VmmBlockChild *c) GRAPH_WRLOCK
{
    VmmBlockNode *bs = c->bs;
    for (VmmBlockChild **pp = &bs->parents; *pp; pp = &(*pp)->next_parent) {
        if (*pp == c) {
            *pp = c->next_parent;
            break;
        }
    }
    c->next_parent = NULL;
    if (c->quiesced_parent) {
        c->quiesced_parent = false;
        if (c->klass->drained_end) {
            c->klass->drained_end(c);
        }
    }
}

/* Does not drop the child's reference: the caller unrefs the old child
 * after vmm_graph_wrunlock() (deleting a node takes the write lock). */
void block_child_detach(VmmBlockChild *c)
{
    VmmBlockChild **head = parent_children_head(c);
    if (head) {
        for (VmmBlockChild **pp = head; *pp; pp = &(*pp)->next_child) {
            if (*pp == c) {
                *pp = c->next_child;
                break;
            }
        }
        VmmBlockNode *p = c->parent;
        if (p->file == c) {
            p->file = NULL;
        }
    }
    unlink_from_target(c);
    g_free(c->name);
    g_free(c);
}

/* Points @c at @to; takes a reference to @to, the caller drops the old. */
void block_child_set_target(VmmBlockChild *c, VmmBlockNode *to)
{
    unlink_from_target(c);
    vmm_block_node_ref(to);
    c->bs = to;
    c->next_parent = to->parents;
    to->parents = c;
    if (vk_atomic_read(&to->quiesce_counter) > 0 && c->klass->drained_begin) {
        c->quiesced_parent = true;
        c->klass->drained_begin(c);
    }
}

bool block_node_is_below(VmmBlockNode *top, VmmBlockNode *n)
{
    if (top == n) {
        return true;
    }
    for (VmmBlockChild *c = top->children; c; c = c->next_child) {
        if (block_node_is_below(c->bs, n)) {
            return true;
        }
    }
    return false;
}

void block_node_refresh_length(VmmBlockNode *n)
{
    if (n->drv->refresh_length) {
        n->drv->refresh_length(n);
    }
    for (VmmBlockChild *c = n->parents; c; c = c->next_parent) {
        VmmBlockNode *p = block_node_parent_of(c);
        if (p) {
            block_node_refresh_length(p);
        } else if (c->klass->resize) {
            c->klass->resize(c);
        }
    }
}

/* ---- Node lifetime ----------------------------------------------------------- */

void vmm_block_node_ref(VmmBlockNode *n)
{
    n->refcnt++;
}

static void node_delete(VmmBlockNode *n)
{
    GPtrArray *old = g_ptr_array_new();

    if (n->drv->close) {
        n->drv->close(n);
    }
    vmm_graph_wrlock();
    while (n->children) {
        VmmBlockChild *c = n->children;
        g_ptr_array_add(old, c->bs);
        block_child_detach(c);
    }
    vmm_graph_wrunlock();
    for (guint i = 0; i < old->len; i++) {
        vmm_block_node_unref(g_ptr_array_index(old, i));
    }
    g_ptr_array_free(old, true);
    g_ptr_array_remove(block_all_nodes, n);
    vk_mutex_destroy(&n->reqs_lock);
    if (n->options) {
        g_hash_table_destroy(n->options);
    }
    g_free(n->opaque);
    g_free(n->node_name);
    g_free(n);
}

void vmm_block_node_unref(VmmBlockNode *n)
{
    if (!n) {
        return;
    }
    assert(n->refcnt > 0);
    if (--n->refcnt == 0) {
        node_delete(n);
    }
}

/* ---- Opening ------------------------------------------------------------------ */

static VmmBlockNode *open_node(BlockOpts *o, int flags, GError **errp);

static bool driver_has_opt(const BlockDriver *drv, const char *key)
{
    for (const BlockOptDesc *d = drv->opts; d && d->name; d++) {
        size_t l = strlen(d->name);
        /* "prefix.*" accepts every "prefix.<anything>"; the driver checks. */
        if (l > 2 && !strcmp(d->name + l - 2, ".*") ? !strncmp(d->name, key, l - 1)
                                                   : !strcmp(d->name, key)) {
            return true;
        }
    }
    return false;
}

static bool driver_has_child(const BlockDriver *drv, const char *name)
{
    for (const char *const *c = drv->child_names; c && *c; c++) {
        if (!strcmp(*c, name)) {
            return true;
        }
    }
    return false;
}

/* Open or look up each child the driver takes; NULL entries are absent. */
static bool open_children(const BlockDriver *drv, BlockOpts *o, int flags,
                          VmmBlockNode **kids, GError **errp)
{
    int i = 0;
    for (const char *const *cn = drv->child_names; cn && *cn; cn++, i++) {
        g_autofree char *ref = block_opts_take(o, *cn);
        BlockOpts *sub = block_opts_take_prefix(o, *cn);
        if (ref && sub) {
            g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                        "Give either '%s=NODE' or '%s.*' options, not both", *cn, *cn);
            block_opts_free(sub);
            return false;
        }
        if (ref) {
            kids[i] = vmm_block_find_node(ref);
            if (!kids[i]) {
                g_set_error(errp, BLOCK_ERR_DOMAIN, ENOENT,
                            "Node '%s' (for child '%s') does not exist", ref, *cn);
                return false;
            }
            vmm_block_node_ref(kids[i]);
        } else if (sub) {
            GError *err = NULL;
            kids[i] = open_node(sub, flags, &err);
            block_opts_free(sub);
            if (!kids[i]) {
                g_propagate_prefixed_error(errp, err, "Child '%s': ", *cn);
                return false;
            }
        } else if (i == 0) {
            g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                        "Driver '%s' needs a child '%s': give %s.driver=... or %s=NODE",
                        drv->name, *cn, *cn, *cn);
            return false;
        }
    }
    return true;
}

static bool key_known(const char *key, const void *drv)
{
    return driver_has_opt(drv, key);
}

static bool check_unknown(const BlockDriver *drv, BlockOpts *o, GError **errp)
{
    const char *k = block_opts_first_rejected(o, key_known, drv);
    if (k) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "Unknown option '%s' for driver '%s'", k,
                    drv->name);
        return false;
    }
    return true;
}

static VmmBlockNode *node_alloc(const BlockDriver *drv, char *name, bool ro)
{
    VmmBlockNode *n = g_new0(VmmBlockNode, 1);
    if (!name) {
        name = g_strdup_printf("#block%03u", auto_name_counter++);
        n->auto_named = true;
    }
    n->node_name = name;
    n->drv = drv;
    n->opaque = drv->instance_size ? g_malloc0(drv->instance_size) : NULL;
    n->refcnt = 1;
    n->read_only = ro;
    n->ctx = vmm_aio_context_main();
    n->request_alignment = 1;
    n->mem_alignment = 1;
    vk_mutex_init(&n->reqs_lock);
    if (!block_all_nodes) {
        block_all_nodes = g_ptr_array_new();
    }
    g_ptr_array_add(block_all_nodes, n);
    n->quiesce_counter = block_drain_all_count;
    n->quiesced_by_all = block_drain_all_count > 0;
    return n;
}

/* Attach the opened children, then let the driver open the node. */
static int node_attach_and_open(VmmBlockNode *n, VmmBlockNode **kids, BlockOpts *o,
                                int flags, GError **errp)
{
    const BlockDriver *drv = n->drv;
    vmm_graph_wrlock();
    int i = 0;
    for (const char *const *cn = drv->child_names; cn && *cn; cn++, i++) {
        if (kids[i]) {
            block_child_attach(n, &block_child_of_node, kids[i], *cn, drv->child_role);
        }
    }
    vmm_graph_wrunlock();

    vmm_graph_rdlock_main_loop();
    int ret = drv->open(n, o, flags, errp);
    vmm_graph_rdunlock_main_loop();
    if (ret < 0) {
        return ret;
    }
    if (block_opts_first_key(o)) {
        /* Declared but not consumed: a driver bug, reported as unknown. */
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "Unknown option '%s' for driver '%s'",
                    block_opts_first_key(o), drv->name);
        if (drv->close) {
            drv->close(n);
        }
        return -EINVAL;
    }
    return 0;
}

uint32_t block_node_cap_max_transfer(VmmBlockNode *n, uint32_t declared)
{
    uint32_t max = declared;
    if (n->max_transfer_opt && (!max || n->max_transfer_opt < max)) {
        max = n->max_transfer_opt;
    }
    uint32_t align = n->request_alignment;
    if (max && align > 1) {
        max = MAX(VMM_ALIGN_DOWN(max, align), align);
    }
    return max;
}

/* The generic "max-transfer" option, after the driver opened the node
 * (its alignment is known). */
static bool apply_max_transfer(VmmBlockNode *n, uint64_t opt, GError **errp)
{
    if (opt && (opt > UINT32_MAX || opt % n->request_alignment)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Option 'max-transfer' (%" PRIu64 ") must be a multiple of %u (the "
                    "request alignment of '%s') and below 4G", opt, n->request_alignment,
                    n->node_name);
        return false;
    }
    n->max_transfer_opt = (uint32_t)opt;
    n->max_transfer = block_node_cap_max_transfer(n, n->max_transfer);
    return true;
}

static VmmBlockNode *open_node(BlockOpts *o, int flags, GError **errp)
{
    g_autofree char *dname = block_opts_take(o, "driver");
    if (!dname) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "Option 'driver' is required");
        return NULL;
    }
    const BlockDriver *drv = find_driver(dname);
    if (!drv) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Unknown driver '%s' (known: null, file, raw, fault)", dname);
        return NULL;
    }
    GHashTable *shown = block_opts_dup_table(o);
    g_hash_table_insert(shown, g_strdup("driver"), g_strdup(dname));
    char *name = block_opts_take(o, "node-name");
    bool ro = false;
    uint64_t max_transfer = 0;
    VmmBlockNode *kids[4] = { NULL };
    VmmBlockNode *n = NULL;

    if (name && !valid_node_name(name)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Invalid node name '%s' (a letter, then letters, digits, '-', '_', '.')",
                    name);
        goto fail;
    }
    if (name && vmm_block_find_node(name)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EEXIST, "Node name '%s' is already in use",
                    name);
        goto fail;
    }
    if (!block_opts_take_bool(o, "read-only", false, &ro, errp) ||
        !block_opts_take_size(o, "max-transfer", 0, &max_transfer, errp)) {
        goto fail;
    }
    if (flags & VMM_BLOCK_RDONLY) {
        ro = true;
    }
    assert(!drv->child_names || g_strv_length((char **)drv->child_names) <
           VMM_ARRAY_SIZE(kids));
    if (!open_children(drv, o, ro ? flags | VMM_BLOCK_RDONLY : flags, kids, errp) ||
        !check_unknown(drv, o, errp)) {
        goto fail;
    }

    n = node_alloc(drv, name, ro);
    name = NULL;
    n->options = shown;
    shown = NULL;
    if (kids[0]) {
        n->ctx = kids[0]->ctx;
    }
    if (node_attach_and_open(n, kids, o, flags, errp) < 0) {
        goto fail;
    }
    if (!apply_max_transfer(n, max_transfer, errp)) {
        if (n->drv->close) {
            n->drv->close(n);
        }
        goto fail;
    }
    for (size_t i = 0; i < VMM_ARRAY_SIZE(kids); i++) {
        vmm_block_node_unref(kids[i]);
    }
    return n;

fail:
    if (n) {
        n->drv = &block_driver_null;     /* no close for a failed open */
        g_free(n->opaque);
        n->opaque = NULL;
        n->refcnt = 1;
        vmm_block_node_unref(n);
    }
    for (size_t i = 0; i < VMM_ARRAY_SIZE(kids); i++) {
        vmm_block_node_unref(kids[i]);
    }
    g_free(name);
    if (shown) {
        g_hash_table_destroy(shown);
    }
    return NULL;
}

VmmBlockNode *vmm_block_open(const char *options, int flags, GError **errp)
{
    if (!options) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "No options given");
        return NULL;
    }
    BlockOpts *o = block_opts_parse(options, errp);
    if (!o) {
        return NULL;
    }
    VmmBlockNode *n = open_node(o, flags, errp);
    block_opts_free(o);
    return n;
}

/* ---- Accessors ---------------------------------------------------------------- */

const char *vmm_block_node_name(VmmBlockNode *n)
{
    return n->node_name;
}

const char *vmm_block_node_driver(VmmBlockNode *n)
{
    return n->drv->name;
}

const char *vmm_block_node_option(VmmBlockNode *n, const char *key)
{
    return n->options ? g_hash_table_lookup(n->options, key) : NULL;
}

int64_t vmm_block_node_length(VmmBlockNode *n)
{
    return vk_atomic_read(&n->total_bytes);
}

VmmAioContext *vmm_block_node_get_context(VmmBlockNode *n)
{
    return vk_atomic_read(&n->ctx);
}

VmmBlockChild *vmm_block_node_child(VmmBlockNode *parent, const char *name)
{
    for (VmmBlockChild *c = parent->children; c; c = c->next_child) {
        if (!strcmp(c->name, name)) {
            return c;
        }
    }
    return NULL;
}

VmmBlockChild *vmm_block_node_next_child(VmmBlockNode *parent, VmmBlockChild *prev)
{
    return prev ? prev->next_child : parent->children;
}

int vmm_block_node_parent_count(VmmBlockNode *n)
{
    int k = 0;
    for (VmmBlockChild *c = n->parents; c; c = c->next_parent) {
        k++;
    }
    return k;
}

VmmBlockNode *vmm_block_child_node(VmmBlockChild *c)
{
    return c->bs;
}

const char *vmm_block_child_name(VmmBlockChild *c)
{
    return c->name;
}

unsigned vmm_block_child_role(VmmBlockChild *c)
{
    return c->role;
}

/* ---- Attach, detach, replace ----------------------------------------------------- */

int vmm_block_attach_child(VmmBlockNode *parent, VmmBlockNode *child, const char *name,
                           unsigned role, GError **errp)
{
    int ret;

    if (!parent || !child || !name) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "attach_child: NULL argument");
        return -EINVAL;
    }
    vmm_graph_rdlock_main_loop();
    if (!driver_has_child(parent->drv, name)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EPERM, "Driver '%s' takes no child '%s'",
                    parent->drv->name, name);
        ret = -EPERM;
    } else if (vmm_block_node_child(parent, name)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EEXIST, "Node '%s' already has a child '%s'",
                    parent->node_name, name);
        ret = -EEXIST;
    } else if (block_node_is_below(child, parent)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, ELOOP,
                    "Attaching '%s' under '%s' would make a cycle",
                    child->node_name, parent->node_name);
        ret = -ELOOP;
    } else {
        ret = 0;
    }
    vmm_graph_rdunlock_main_loop();
    if (ret < 0) {
        return ret;
    }
    ret = block_node_move_context(child, parent->ctx, NULL, errp);
    if (ret < 0) {
        return ret;
    }
    vmm_block_drained_begin(parent);
    vmm_graph_wrlock();
    block_child_attach(parent, &block_child_of_node, child, name, role);
    block_node_refresh_length(parent);
    vmm_graph_wrunlock();
    vmm_block_drained_end(parent);
    return 0;
}

int vmm_block_detach_child(VmmBlockNode *parent, const char *name)
{
    vmm_graph_rdlock_main_loop();
    VmmBlockChild *c = parent && name ? vmm_block_node_child(parent, name) : NULL;
    vmm_graph_rdunlock_main_loop();
    if (!c) {
        return -ENOENT;
    }
    VmmBlockNode *old = c->bs;
    vmm_block_node_ref(old);
    vmm_block_drained_begin(old);
    vmm_graph_wrlock();
    block_child_detach(c);
    vmm_block_node_unref(old);   /* the edge's reference; ours keeps it alive */
    block_node_refresh_length(parent);
    vmm_graph_wrunlock();
    vmm_block_drained_end(old);
    vmm_block_node_unref(old);
    return 0;
}

/* Repoints @edges (NULL-terminated array) from @from to @to. */
static int replace_edges(VmmBlockNode *from, VmmBlockNode *to, VmmBlockChild **edges,
                         GError **errp)
{
    int ret = block_node_move_context(to, from->ctx, NULL, errp);
    if (ret < 0) {
        return ret;
    }
    vmm_block_node_ref(from);
    vmm_block_node_ref(to);
    vmm_block_drained_begin(from);
    vmm_block_drained_begin(to);
    vmm_graph_wrlock();
    int k = 0;
    for (VmmBlockChild **e = edges; *e; e++, k++) {
        block_child_set_target(*e, to);
    }
    block_node_refresh_length(to);
    vmm_graph_wrunlock();
    vmm_block_drained_end(to);
    vmm_block_drained_end(from);
    while (k-- > 0) {
        vmm_block_node_unref(from);      /* each edge's old reference */
    }
    vmm_block_node_unref(to);
    vmm_block_node_unref(from);
    return 0;
}

int vmm_block_replace_node(VmmBlockNode *from, VmmBlockNode *to, GError **errp)
{
    if (!from || !to) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "replace_node: NULL argument");
        return -EINVAL;
    }
    if (from == to) {
        return 0;
    }
    g_autoptr(GPtrArray) edges = g_ptr_array_new();
    vmm_graph_rdlock_main_loop();
    for (VmmBlockChild *c = from->parents; c; c = c->next_parent) {
        VmmBlockNode *p = block_node_parent_of(c);
        /* Skip @to's own edges (a filter inserted above @from keeps it). */
        if (p && block_node_is_below(to, p)) {
            continue;
        }
        g_ptr_array_add(edges, c);
    }
    vmm_graph_rdunlock_main_loop();
    g_ptr_array_add(edges, NULL);
    return replace_edges(from, to, (VmmBlockChild **)edges->pdata, errp);
}

int vmm_block_replace_child(VmmBlockNode *parent, const char *name, VmmBlockNode *to,
                            GError **errp)
{
    if (!parent || !name || !to) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "replace_child: NULL argument");
        return -EINVAL;
    }
    vmm_graph_rdlock_main_loop();
    VmmBlockChild *c = vmm_block_node_child(parent, name);
    bool loop = c && block_node_is_below(to, parent);
    vmm_graph_rdunlock_main_loop();
    if (!c) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, ENOENT, "Node '%s' has no child '%s'",
                    parent->node_name, name);
        return -ENOENT;
    }
    if (loop) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, ELOOP,
                    "Making '%s' a child of '%s' would make a cycle", to->node_name,
                    parent->node_name);
        return -ELOOP;
    }
    if (c->bs == to) {
        return 0;
    }
    VmmBlockChild *edges[2] = { c, NULL };
    return replace_edges(c->bs, to, edges, errp);
}

/* ---- AioContext of a connected set of nodes ---------------------------------------- */

static bool visit(GPtrArray *visited, void *p)
{
    for (guint i = 0; i < visited->len; i++) {
        if (g_ptr_array_index(visited, i) == p) {
            return false;
        }
    }
    g_ptr_array_add(visited, p);
    return true;
}

int block_node_can_set_context(VmmBlockNode *n, VmmAioContext *ctx, VmmBlockChild *from,
                               GPtrArray *visited, GError **errp)
{
    (void)from;
    if (!visit(visited, n)) {
        return 0;
    }
    for (VmmBlockChild *c = n->parents; c; c = c->next_parent) {
        int ret = c->klass->can_set_context(c, ctx, visited, errp);
        if (ret < 0) {
            return ret;
        }
    }
    for (VmmBlockChild *c = n->children; c; c = c->next_child) {
        int ret = block_node_can_set_context(c->bs, ctx, c, visited, errp);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

void block_node_apply_context(VmmBlockNode *n, VmmAioContext *ctx, VmmBlockChild *from,
                              GPtrArray *visited)
{
    (void)from;
    if (!visit(visited, n)) {
        return;
    }
    vk_atomic_set(&n->ctx, ctx);
    if (n->drv->set_context) {
        n->drv->set_context(n, ctx);
    }
    for (VmmBlockChild *c = n->parents; c; c = c->next_parent) {
        c->klass->set_context(c, ctx, visited);
    }
    for (VmmBlockChild *c = n->children; c; c = c->next_child) {
        block_node_apply_context(c->bs, ctx, c, visited);
    }
}

int block_node_move_context(VmmBlockNode *n, VmmAioContext *ctx, VmmBlockChild *ignore,
                            GError **errp)
{
    if (vmm_block_node_get_context(n) == ctx) {
        return 0;
    }
    g_autoptr(GPtrArray) visited = g_ptr_array_new();
    if (ignore) {
        g_ptr_array_add(visited, ignore->parent);
    }
    vmm_graph_rdlock_main_loop();
    int ret = block_node_can_set_context(n, ctx, NULL, visited, errp);
    vmm_graph_rdunlock_main_loop();
    if (ret < 0) {
        return ret;
    }
    /* Every node of the set is drained while its context changes: no
     * request runs in the old context afterwards. */
    g_autoptr(GPtrArray) nodes = g_ptr_array_new();
    vmm_graph_rdlock_main_loop();
    for (guint i = 0; i < visited->len; i++) {
        void *p = g_ptr_array_index(visited, i);
        for (guint j = 0; j < block_all_nodes->len; j++) {
            if (g_ptr_array_index(block_all_nodes, j) == p) {
                g_ptr_array_add(nodes, p);
                vmm_block_node_ref(p);
            }
        }
    }
    vmm_graph_rdunlock_main_loop();
    for (guint i = 0; i < nodes->len; i++) {
        vmm_block_drained_begin(g_ptr_array_index(nodes, i));
    }
    g_ptr_array_set_size(visited, 0);
    if (ignore) {
        g_ptr_array_add(visited, ignore->parent);
    }
    vmm_graph_rdlock_main_loop();
    block_node_apply_context(n, ctx, NULL, visited);
    vmm_graph_rdunlock_main_loop();
    for (guint i = 0; i < nodes->len; i++) {
        vmm_block_drained_end(g_ptr_array_index(nodes, i));
        vmm_block_node_unref(g_ptr_array_index(nodes, i));
    }
    return 0;
}

int vmm_block_node_set_context(VmmBlockNode *n, VmmAioContext *ctx, GError **errp)
{
    if (!n || !ctx) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "set_context: NULL argument");
        return -EINVAL;
    }
    return block_node_move_context(n, ctx, NULL, errp);
}

/* Edges whose parent is a node: drain and context go up the graph. */
static void child_node_drained_begin(VmmBlockChild *c)
{
    block_drained_begin_nopoll(c->parent);
}

static void child_node_drained_end(VmmBlockChild *c)
{
    vmm_block_drained_end(c->parent);
}

static bool child_node_drained_poll(VmmBlockChild *c)
{
    return block_node_drain_busy(c->parent);
}

static int child_node_can_set_context(VmmBlockChild *c, VmmAioContext *ctx,
                                      GPtrArray *visited, GError **errp) VMM_NO_TSA
{
    return block_node_can_set_context(c->parent, ctx, c, visited, errp);
}

static void child_node_set_context(VmmBlockChild *c, VmmAioContext *ctx,
                                   GPtrArray *visited) VMM_NO_TSA
{
    block_node_apply_context(c->parent, ctx, c, visited);
}

static const char *child_node_parent_name(VmmBlockChild *c)
{
    return ((VmmBlockNode *)c->parent)->node_name;
}

const BlockChildClass block_child_of_node = {
    .kind = "node",
    .drained_begin = child_node_drained_begin,
    .drained_end = child_node_drained_end,
    .drained_poll = child_node_drained_poll,
    .can_set_context = child_node_can_set_context,
    .set_context = child_node_set_context,
    .parent_name = child_node_parent_name,
};
