/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/block.h - the block layer: a graph of block nodes, the graph lock,
 * drain, BlockBackends (what a device holds) and the built-in drivers.
 *
 * Nodes are opened from an option string such as
 *     "driver=raw,file.driver=file,file.filename=disk.img"
 * (keys as QEMU's -blockdev spells them; "a.b=v" gives option "b" to the
 * child named "a"; "file=NODE" attaches an existing node; ",," is a literal
 * comma).  Drivers: null, file, raw, fault (see docs/block.md).
 *
 * Threads: the graph changes only in the main loop, under the graph write
 * lock, which the functions below take themselves unless they say the
 * caller holds it.  I/O runs in coroutines in any AioContext; a node and the
 * BlockBackends above it belong to one AioContext, changed under drain.
 *
 * Errors: negative errno; configuration errors also fill a GError whose
 * message names the problem (the option, the file, the node).
 *   -EINVAL  bad argument, unknown option, misaligned request the driver
 *            cannot serve
 *   -ERANGE  request beyond the end of the device
 *   -ENOMEDIUM  BlockBackend with no node inserted
 *   -EPERM   write to a read-only node
 *   other    passed up from the driver (an I/O error is never swallowed)
 */
#ifndef VMMKIT_BLOCK_H
#define VMMKIT_BLOCK_H

#include <sys/uio.h>
#include <glib.h>

#include "vmmkit/common.h"
#include "vmmkit/aio.h"
#include "vmmkit/coroutine.h"

VMM_BEGIN_DECLS

typedef struct VmmBlockNode VmmBlockNode;
typedef struct VmmBlockChild VmmBlockChild;
typedef struct VmmBlockBackend VmmBlockBackend;

/* ---- The graph lock ------------------------------------------------------ */

/*
 * The graph lock is a capability for clang's thread-safety analysis; the
 * object itself holds no state.  VMM_GRAPH_RDLOCK marks a function that
 * must be called with the read lock (a coroutine holding
 * vmm_graph_co_rdlock() or the main loop holding
 * vmm_graph_rdlock_main_loop()); VMM_GRAPH_WRLOCK one that needs the write
 * lock.  VMM_GRAPH_RDLOCK_PTR guards a function pointer: calling through it
 * needs the read lock.
 */
typedef struct VMM_CAPABILITY("graph-lock") VmmGraphLock { int unused_; } VmmGraphLock;
VMM_EXPORT extern VmmGraphLock vmm_graph_lock;

#define VMM_GRAPH_RDLOCK      VMM_REQUIRES_SHARED(vmm_graph_lock)
#define VMM_GRAPH_WRLOCK      VMM_REQUIRES(vmm_graph_lock)
#define VMM_GRAPH_UNLOCKED    VMM_EXCLUDES(vmm_graph_lock)
#define VMM_GRAPH_RDLOCK_PTR  VMM_GUARDED_BY(vmm_graph_lock)
#define VMM_GRAPH_WRLOCK_PTR  VMM_GUARDED_BY(vmm_graph_lock)

/* Take/drop the read lock in a coroutine in any AioContext.  Waits while
 * the main loop holds the write lock.  The unlock may run in another
 * context than the lock (the coroutine moved), but in the coroutine that
 * took it: debug builds count each coroutine's holds and abort, naming the
 * misuse, at an unlock without a lock.  Coroutine. */
VMM_EXPORT VMM_COROUTINE_FN void vmm_graph_co_rdlock(void) VMM_ACQUIRE_SHARED(vmm_graph_lock);
VMM_EXPORT VMM_COROUTINE_FN void vmm_graph_co_rdunlock(void) VMM_RELEASE_SHARED(vmm_graph_lock);

/* The main loop's read lock: free (the main loop is the only writer), it
 * exists for the analysis and debug checks (debug builds abort at an
 * unlock without a lock, or a call from another thread).  Main loop, not
 * a coroutine. */
VMM_EXPORT void vmm_graph_rdlock_main_loop(void) VMM_ACQUIRE_SHARED(vmm_graph_lock);
VMM_EXPORT void vmm_graph_rdunlock_main_loop(void) VMM_RELEASE_SHARED(vmm_graph_lock);

/* Take the write lock: quiesces all BlockBackends (new requests queue),
 * waits until no coroutine holds the read lock, and makes new readers wait
 * until vmm_graph_wrunlock().  Callbacks that run while it waits may take
 * the read lock.  Main loop (the thread that polls the main context), not
 * a coroutine, not while holding it: a call from any other thread, or an
 * unlock without a lock, is reported, and debug builds abort naming it. */
VMM_EXPORT void vmm_graph_wrlock(void) VMM_ACQUIRE(vmm_graph_lock);
VMM_EXPORT void vmm_graph_wrunlock(void) VMM_RELEASE(vmm_graph_lock);

/* Tell the analysis the caller holds the read lock (debug builds check it
 * where they can).  For callbacks whose caller the analysis cannot see. */
VMM_EXPORT void vmm_graph_assume_rdlock(void) VMM_ASSERT_SHARED_CAPABILITY(vmm_graph_lock);

/* ---- Nodes ----------------------------------------------------------------- */

/* Open flags. */
#define VMM_BLOCK_RDONLY   0x1   /* read-only (also option "read-only=on") */

/*
 * Open a node (and the children its options describe) from @options, e.g.
 * "driver=raw,offset=1M,file.driver=file,file.filename=/x.img".  Options
 * every node takes: driver (required), node-name, read-only.  The node is
 * in the main context.  Returns a node holding one reference, or NULL
 * with *gerr set (messages name the option or file at fault).  Main loop.
 */
VMM_EXPORT VmmBlockNode *vmm_block_open(const char *options, int flags, GError **gerr);

/* References.  The graph holds its own: a node attached as a child stays
 * alive while attached.  Main loop. */
VMM_EXPORT void vmm_block_node_ref(VmmBlockNode *n);
VMM_EXPORT void vmm_block_node_unref(VmmBlockNode *n);

/* The node named @name, or NULL.  No reference is added.  Main loop. */
VMM_EXPORT VmmBlockNode *vmm_block_find_node(const char *name);

/* Name, driver name, an option's value as given at open (NULL if unset).
 * Any thread, while the caller holds a reference. */
VMM_EXPORT const char *vmm_block_node_name(VmmBlockNode *n);
VMM_EXPORT const char *vmm_block_node_driver(VmmBlockNode *n);
VMM_EXPORT const char *vmm_block_node_option(VmmBlockNode *n, const char *key);

/* Length in bytes, or -errno.  Main loop, or a coroutine holding the read lock. */
VMM_EXPORT int64_t vmm_block_node_length(VmmBlockNode *n);

/* The node's AioContext.  Any thread. */
VMM_EXPORT VmmAioContext *vmm_block_node_get_context(VmmBlockNode *n);

/* ---- Edges ----------------------------------------------------------------- */

/* Roles of a child edge (bit set, as QEMU's BdrvChildRole). */
#define VMM_CHILD_DATA      0x1    /* holds guest data */
#define VMM_CHILD_METADATA  0x2    /* holds the format's metadata */
#define VMM_CHILD_FILTERED  0x4    /* a filter's only child */
#define VMM_CHILD_PRIMARY   0x8    /* the child whose data the parent presents */

/* The child edge of @parent named @name, NULL if none.  Read lock. */
VMM_EXPORT VmmBlockChild *vmm_block_node_child(VmmBlockNode *parent, const char *name)
    VMM_GRAPH_RDLOCK;
/* Iterate children: first (@prev NULL) and next.  Read lock. */
VMM_EXPORT VmmBlockChild *vmm_block_node_next_child(VmmBlockNode *parent,
                                                    VmmBlockChild *prev) VMM_GRAPH_RDLOCK;
/* Number of parent edges (nodes and BlockBackends).  Read lock. */
VMM_EXPORT int vmm_block_node_parent_count(VmmBlockNode *n) VMM_GRAPH_RDLOCK;
/* An edge's child node, name, role bits.  Read lock. */
VMM_EXPORT VmmBlockNode *vmm_block_child_node(VmmBlockChild *c) VMM_GRAPH_RDLOCK;
VMM_EXPORT const char *vmm_block_child_name(VmmBlockChild *c) VMM_GRAPH_RDLOCK;
VMM_EXPORT unsigned vmm_block_child_role(VmmBlockChild *c) VMM_GRAPH_RDLOCK;

/* Attach @child under @parent as edge @name with @role.  The child moves to
 * the parent's AioContext (under drain) if it has no other parent; fails
 * with -EBUSY if it has parents in another context, -EEXIST if @name is
 * taken, -ELOOP if it would make a cycle, -EPERM if the parent's driver
 * takes no such child.  Takes the write lock.  Main loop. */
VMM_EXPORT int vmm_block_attach_child(VmmBlockNode *parent, VmmBlockNode *child,
                                      const char *name, unsigned role, GError **gerr)
    VMM_GRAPH_UNLOCKED;
/* Detach the child edge @name of @parent (drains it first).  Returns 0 or
 * -ENOENT.  Takes the write lock.  Main loop. */
VMM_EXPORT int vmm_block_detach_child(VmmBlockNode *parent, const char *name)
    VMM_GRAPH_UNLOCKED;
/* Make every edge that points at @from (edges from nodes and BlockBackends)
 * point at @to instead, atomically for readers: a request sees one or the
 * other.  Both are drained meanwhile; @to moves to @from's context (-EBUSY
 * if it cannot).  Edges from nodes below @to are kept (a filter inserted
 * above @from keeps pointing at it).  Parents whose length changes are
 * told (VmmBlockDevOps.resize).  Takes the write lock.  Main loop. */
VMM_EXPORT int vmm_block_replace_node(VmmBlockNode *from, VmmBlockNode *to, GError **gerr)
    VMM_GRAPH_UNLOCKED;
/* Make the edge @name of @parent point at @to (the old child loses a
 * reference).  As vmm_block_replace_node() but for one edge. */
VMM_EXPORT int vmm_block_replace_child(VmmBlockNode *parent, const char *name,
                                       VmmBlockNode *to, GError **gerr) VMM_GRAPH_UNLOCKED;

/* Move @n, its children (recursively) and every BlockBackend and node
 * parent of those nodes to @ctx, under drain.  Fails with -EBUSY if a
 * BlockBackend above it is bound to a device that forbids the move.
 * Main loop. */
VMM_EXPORT int vmm_block_node_set_context(VmmBlockNode *n, VmmAioContext *ctx,
                                          GError **gerr) VMM_GRAPH_UNLOCKED;

/* ---- Drain ----------------------------------------------------------------- */

/*
 * Quiesce @n: its parents stop sending requests (BlockBackends queue new
 * ones, devices are told), then wait until no request is in flight in @n
 * or its parents, in whatever AioContext they run.  Nests: the node stays
 * quiesced until as many drained_end calls.  Main loop, not holding the
 * write lock; from a coroutine (any context) the drain runs in the main
 * loop while the coroutine waits (it must not be a request being drained).
 */
VMM_EXPORT void vmm_block_drained_begin(VmmBlockNode *n) VMM_GRAPH_UNLOCKED;
VMM_EXPORT void vmm_block_drained_end(VmmBlockNode *n) VMM_GRAPH_UNLOCKED;
/* As drained_begin, but give up after @timeout_ns: returns 0, or -ETIMEDOUT
 * after undoing the quiesce (no drained_end is then due), or -EINVAL (@n
 * NULL, @timeout_ns < 0, or called from a coroutine).  Main loop. */
VMM_EXPORT int vmm_block_drained_begin_timeout(VmmBlockNode *n, int64_t timeout_ns)
    VMM_GRAPH_UNLOCKED;
/* Every node, including nodes opened while drained.  Main loop. */
VMM_EXPORT void vmm_block_drain_all_begin(void) VMM_GRAPH_UNLOCKED;
VMM_EXPORT void vmm_block_drain_all_end(void) VMM_GRAPH_UNLOCKED;
/* Requests in flight in @n now (for tests and diagnostics).  Any thread. */
VMM_EXPORT unsigned vmm_block_node_in_flight(VmmBlockNode *n);
/* True while @n is quiesced.  Any thread. */
VMM_EXPORT bool vmm_block_node_quiesced(VmmBlockNode *n);

/* ---- BlockBackend: the root a device holds -------------------------------- */

/* Request flags. */
#define VMM_REQ_FUA          0x1   /* write: durable when it completes */
#define VMM_REQ_MAY_UNMAP    0x2   /* write_zeroes: may deallocate */

/* What the device above a BlockBackend is told.  All optional; they run
 * in the main loop. */
typedef struct VmmBlockDevOps {
    size_t size;                                   /* sizeof(VmmBlockDevOps) */
    /* Stop submitting new requests (e.g. stop reading the virtqueue). */
    void (*drained_begin)(void *opaque);
    /* Resume. */
    void (*drained_end)(void *opaque);
    /* True while the device still has requests it is about to submit. */
    bool (*drained_poll)(void *opaque);
    /* The length changed (e.g. the node was replaced).  */
    void (*resize)(void *opaque);
    /* May the BlockBackend move to another AioContext?  Return 0 or
     * -errno (and fill @gerr) to refuse.  NULL: refuse (-EBUSY) once a
     * device is attached, unless it called vmm_blk_set_context itself. */
    int (*can_set_context)(void *opaque, VmmAioContext *ctx, GError **gerr);
    /* The BlockBackend moved to @ctx (while drained). */
    void (*set_context)(void *opaque, VmmAioContext *ctx);
} VmmBlockDevOps;

/* A BlockBackend in @ctx (NULL: the main context), empty.  Main loop. */
VMM_EXPORT VmmBlockBackend *vmm_blk_new(VmmAioContext *ctx, int *errp);
/* Open @options (as vmm_block_open) and insert the node.  Main loop. */
VMM_EXPORT VmmBlockBackend *vmm_blk_new_open(const char *options, int flags, GError **gerr);
/* Detaches the node and frees.  Main loop. */
VMM_EXPORT void vmm_blk_unref(VmmBlockBackend *blk);

/* Insert @n as the root (the node moves to the BlockBackend's context if
 * it has no other parents; -EBUSY if it does and they are elsewhere),
 * remove it.  Main loop. */
VMM_EXPORT int vmm_blk_insert(VmmBlockBackend *blk, VmmBlockNode *n, GError **gerr);
VMM_EXPORT void vmm_blk_remove(VmmBlockBackend *blk);
/* The root node, or NULL.  Main loop, or a coroutine holding the read lock. */
VMM_EXPORT VmmBlockNode *vmm_blk_node(VmmBlockBackend *blk);

/* Attach the device callbacks (@ops is copied up to ops->size; NULL
 * detaches).  -EINVAL for @blk NULL or an @ops->size too small to hold
 * drained_begin.  Main loop. */
VMM_EXPORT int vmm_blk_set_dev_ops(VmmBlockBackend *blk, const VmmBlockDevOps *ops,
                                   void *opaque);
/* Move the BlockBackend and its subtree to @ctx under drain.  Main loop. */
VMM_EXPORT int vmm_blk_set_context(VmmBlockBackend *blk, VmmAioContext *ctx, GError **gerr);
VMM_EXPORT VmmAioContext *vmm_blk_get_context(VmmBlockBackend *blk);

/* Length in bytes, or -errno (-ENOMEDIUM when empty).  Any thread. */
VMM_EXPORT int64_t vmm_blk_getlength(VmmBlockBackend *blk);
/* True if writes fail with -EPERM.  Any thread. */
VMM_EXPORT bool vmm_blk_is_read_only(VmmBlockBackend *blk);
/* The alignment (bytes) requests need to avoid bounce buffers and
 * read-modify-write, and the buffer alignment.  Any thread. */
VMM_EXPORT uint32_t vmm_blk_request_alignment(VmmBlockBackend *blk);
VMM_EXPORT size_t vmm_blk_mem_alignment(VmmBlockBackend *blk);
/* The largest request (bytes) the root node takes in one piece, 0 if there
 * is no limit: larger requests work, split into pieces of at most this
 * size ("max-transfer" option, or the driver's limit).  Any thread. */
VMM_EXPORT uint32_t vmm_blk_max_transfer(VmmBlockBackend *blk);

/* While quiesced, new requests wait until the drain ends (default), or,
 * with @disable, run anyway (for requests the drain itself waits on).
 * Main loop. */
VMM_EXPORT void vmm_blk_set_disable_request_queuing(VmmBlockBackend *blk, bool disable);

/* Drain the BlockBackend's subtree (as vmm_block_drained_begin on its root)
 * and itself.  Main loop. */
VMM_EXPORT void vmm_blk_drain(VmmBlockBackend *blk);

/*
 * I/O from a coroutine in the BlockBackend's AioContext (or another one:
 * the graph lock is taken for the request).  @iov/@iovcnt must cover
 * @bytes bytes (more is ignored; less is -EINVAL).  Returns 0 or -errno.
 * Requests beyond the end fail with -ERANGE, negative offsets with
 * -EINVAL.  Misaligned reads use bounce buffers; misaligned writes
 * read-modify-write.  Coroutine.
 */
VMM_EXPORT VMM_COROUTINE_FN int vmm_blk_co_preadv(VmmBlockBackend *blk, int64_t offset,
                                                  int64_t bytes, const struct iovec *iov,
                                                  int iovcnt, int flags) VMM_GRAPH_UNLOCKED;
VMM_EXPORT VMM_COROUTINE_FN int vmm_blk_co_pwritev(VmmBlockBackend *blk, int64_t offset,
                                                   int64_t bytes, const struct iovec *iov,
                                                   int iovcnt, int flags) VMM_GRAPH_UNLOCKED;
VMM_EXPORT VMM_COROUTINE_FN int vmm_blk_co_flush(VmmBlockBackend *blk) VMM_GRAPH_UNLOCKED;
VMM_EXPORT VMM_COROUTINE_FN int vmm_blk_co_pdiscard(VmmBlockBackend *blk, int64_t offset,
                                                    int64_t bytes) VMM_GRAPH_UNLOCKED;
VMM_EXPORT VMM_COROUTINE_FN int vmm_blk_co_pwrite_zeroes(VmmBlockBackend *blk,
                                                         int64_t offset, int64_t bytes,
                                                         int flags) VMM_GRAPH_UNLOCKED;

/* Synchronous forms: from a coroutine they call the coroutine form; else
 * they run it in a coroutine in the BlockBackend's context and wait
 * (polling that context, or the main context when it runs in an iothread).
 * Main loop, or the BlockBackend context's thread. */
VMM_EXPORT int vmm_blk_pread(VmmBlockBackend *blk, int64_t offset, int64_t bytes,
                             void *buf, int flags) VMM_GRAPH_UNLOCKED;
VMM_EXPORT int vmm_blk_pwrite(VmmBlockBackend *blk, int64_t offset, int64_t bytes,
                              const void *buf, int flags) VMM_GRAPH_UNLOCKED;
VMM_EXPORT int vmm_blk_preadv(VmmBlockBackend *blk, int64_t offset, int64_t bytes,
                              const struct iovec *iov, int iovcnt, int flags)
    VMM_GRAPH_UNLOCKED;
VMM_EXPORT int vmm_blk_pwritev(VmmBlockBackend *blk, int64_t offset, int64_t bytes,
                               const struct iovec *iov, int iovcnt, int flags)
    VMM_GRAPH_UNLOCKED;
VMM_EXPORT int vmm_blk_flush(VmmBlockBackend *blk) VMM_GRAPH_UNLOCKED;
VMM_EXPORT int vmm_blk_pdiscard(VmmBlockBackend *blk, int64_t offset, int64_t bytes)
    VMM_GRAPH_UNLOCKED;
VMM_EXPORT int vmm_blk_pwrite_zeroes(VmmBlockBackend *blk, int64_t offset, int64_t bytes,
                                     int flags) VMM_GRAPH_UNLOCKED;

/* ---- Node-level I/O (filters, jobs, tests) -------------------------------- */

/* As the vmm_blk_co_* calls, on a node, with the read lock held. */
VMM_EXPORT VMM_COROUTINE_FN int vmm_block_co_preadv(VmmBlockNode *n, int64_t offset,
                                                    int64_t bytes, const struct iovec *iov,
                                                    int iovcnt, int flags) VMM_GRAPH_RDLOCK;
VMM_EXPORT VMM_COROUTINE_FN int vmm_block_co_pwritev(VmmBlockNode *n, int64_t offset,
                                                     int64_t bytes, const struct iovec *iov,
                                                     int iovcnt, int flags) VMM_GRAPH_RDLOCK;

/* ---- Fault-injection filter rules at run time ----------------------------- */

/*
 * Add a rule to the fault filter @n (driver "fault"): @rule takes the keys
 * of an open-time "inject.N." rule, e.g. "op=read,offset=64k,len=4k,
 * errno=EIO,count=1" (docs/block.md).  Returns the rule's id (>= 0; rules
 * given at open as inject.N have id N, later ones count up from 8), or
 * -EINVAL (bad rule) / -ENOTSUP (@n is not a fault filter) with @gerr
 * naming the problem.  Requests that start checking rules after the call
 * returns see the rule; requests in any iothread see each rule wholly or
 * not at all.  Main loop, while the caller holds a reference to @n.
 */
VMM_EXPORT int vmm_block_fault_add_rule(VmmBlockNode *n, const char *rule, GError **gerr);
/* Remove rule @id: 0, -ENOENT (no such rule) or -ENOTSUP.  Requests that
 * already picked their error and delay keep them.  Main loop. */
VMM_EXPORT int vmm_block_fault_remove_rule(VmmBlockNode *n, int id);
/* How many times rule @id fired (failed or delayed a request), or -ENOENT
 * / -ENOTSUP.  Main loop. */
VMM_EXPORT int64_t vmm_block_fault_rule_hits(VmmBlockNode *n, int id);

VMM_END_DECLS

#endif /* VMMKIT_BLOCK_H */
