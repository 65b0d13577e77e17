/* SPDX-License-Identifier: MIT */
/*
 * Internal: the block layer's data structures and the driver interface.
 *
 * Locking (checked by clang -Wthread-safety through the annotations):
 *  - the graph (children/parents lists, edge targets, node contexts)
 *    changes only in the main loop under the graph write lock, and is read
 *    under the read lock (GRAPH_RDLOCK) or in the main loop;
 *  - a driver's I/O callbacks are guarded function pointers: calling one
 *    needs the read lock;
 *  - in_flight and quiesce counters are atomics (barriers named at use).
 */
#ifndef VMM_BLOCK_INT_H
#define VMM_BLOCK_INT_H

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/uio.h>

#include "vmmkit/block.h"
#include "util/lock.h"
#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"

#define GRAPH_RDLOCK     VMM_GRAPH_RDLOCK
#define GRAPH_WRLOCK     VMM_GRAPH_WRLOCK
#define GRAPH_UNLOCKED   VMM_GRAPH_UNLOCKED
#define GRAPH_RDLOCK_PTR VMM_GRAPH_RDLOCK_PTR
#define GRAPH_WRLOCK_PTR VMM_GRAPH_WRLOCK_PTR
#define coroutine_fn     VMM_COROUTINE_FN

#define BLOCK_ERR_DOMAIN g_quark_from_static_string("vmmkit-block")

/* ---- Options ---------------------------------------------------------------- */

typedef enum BlockOptType {
    BLOCK_OPT_STRING,
    BLOCK_OPT_BOOL,      /* on/off, true/false, yes/no, 1/0 */
    BLOCK_OPT_INT,       /* signed decimal or 0x hex */
    BLOCK_OPT_SIZE,      /* bytes with optional k/K, M, G, T suffix (x1024) */
} BlockOptType;

typedef struct BlockOptDesc {
    const char *name;
    BlockOptType type;
    const char *help;
} BlockOptDesc;

/* Flattened options ("file.filename" -> "x.img"); keys are taken (removed)
 * as they are consumed, so leftovers are unknown options. */
typedef struct BlockOpts BlockOpts;

BlockOpts *block_opts_parse(const char *str, GError **errp);
BlockOpts *block_opts_new(void);
void block_opts_free(BlockOpts *o);
void block_opts_set(BlockOpts *o, const char *key, const char *value);
bool block_opts_has(BlockOpts *o, const char *key);
/* Returns the value (owned by the caller, g_free) and removes the key. */
char *block_opts_take(BlockOpts *o, const char *key);
/* Moves every "prefix.k" to a new BlockOpts as "k"; NULL if there is none. */
BlockOpts *block_opts_take_prefix(BlockOpts *o, const char *prefix);
/* First remaining key (sorted), or NULL. */
const char *block_opts_first_key(BlockOpts *o);
/* The first key (sorted) for which @ok is false, or NULL. */
const char *block_opts_first_rejected(BlockOpts *o, bool (*ok)(const char *, const void *),
                                      const void *arg);
/* Copy of every key/value, for vmm_block_node_option(). */
GHashTable *block_opts_dup_table(BlockOpts *o);
/* Typed getters: take the key if present, else *out = dflt.  Return false
 * with *errp naming the key and the value when it does not parse. */
bool block_opts_take_bool(BlockOpts *o, const char *key, bool dflt, bool *out,
                          GError **errp);
bool block_opts_take_int(BlockOpts *o, const char *key, int64_t dflt, int64_t *out,
                         GError **errp);
bool block_opts_take_size(BlockOpts *o, const char *key, uint64_t dflt, uint64_t *out,
                          GError **errp);
bool block_parse_size(const char *s, uint64_t *out);
/* errno from "EIO", "eio", "5", "-5". */
bool block_parse_errno(const char *s, int *out);

/* ---- Drivers ---------------------------------------------------------------- */

typedef struct BlockDriver {
    const char *name;
    size_t instance_size;             /* bytes of n->opaque */
    const BlockOptDesc *opts;         /* driver options, {NULL} terminated */
    /* Children the driver takes: NULL, or names {NULL} terminated; the
     * first is required. */
    const char *const *child_names;
    unsigned child_role;              /* role of those children */
    bool is_filter;

    /* Main loop.  Children are attached; options not in @opts were
     * rejected already.  Sets n->total_bytes, alignments. */
    int (*open)(VmmBlockNode *n, BlockOpts *o, int flags, GError **errp) GRAPH_RDLOCK_PTR;
    void (*close)(VmmBlockNode *n);

    /* Coroutine, read lock.  Requests are in range and aligned to
     * n->request_alignment; buffers to n->mem_alignment. */
    int (*co_preadv)(VmmBlockNode *n, int64_t offset, int64_t bytes,
                     const struct iovec *iov, int iovcnt, int flags) GRAPH_RDLOCK_PTR;
    int (*co_pwritev)(VmmBlockNode *n, int64_t offset, int64_t bytes,
                      const struct iovec *iov, int iovcnt, int flags) GRAPH_RDLOCK_PTR;
    int (*co_flush)(VmmBlockNode *n) GRAPH_RDLOCK_PTR;
    int (*co_pdiscard)(VmmBlockNode *n, int64_t offset, int64_t bytes) GRAPH_RDLOCK_PTR;
    /* NULL: the generic layer writes zeroes from a buffer. */
    int (*co_pwrite_zeroes)(VmmBlockNode *n, int64_t offset, int64_t bytes,
                            int flags) GRAPH_RDLOCK_PTR;
    /* Main loop, read lock: recompute n->total_bytes (child changed). */
    void (*refresh_length)(VmmBlockNode *n) GRAPH_RDLOCK_PTR;
    /* Main loop, drained: the node moved to @ctx. */
    void (*set_context)(VmmBlockNode *n, VmmAioContext *ctx);
} BlockDriver;

extern const BlockDriver block_driver_null;
extern const BlockDriver block_driver_file;
extern const BlockDriver block_driver_raw;
extern const BlockDriver block_driver_fault;

/* ---- Graph ------------------------------------------------------------------ */

/* What kind of parent an edge has; the class answers drain questions. */
typedef struct BlockChildClass {
    const char *kind;                           /* "node", "backend" */
    void (*drained_begin)(VmmBlockChild *c);    /* main loop */
    void (*drained_end)(VmmBlockChild *c);      /* main loop */
    bool (*drained_poll)(VmmBlockChild *c);     /* main loop: still busy? */
    /* Recursive context change of the parent side; see block_set_context. */
    int (*can_set_context)(VmmBlockChild *c, VmmAioContext *ctx, GPtrArray *visited,
                           GError **errp);
    void (*set_context)(VmmBlockChild *c, VmmAioContext *ctx, GPtrArray *visited);
    void (*resize)(VmmBlockChild *c);
    const char *(*parent_name)(VmmBlockChild *c);
} BlockChildClass;

struct VmmBlockChild {
    char *name;
    unsigned role;
    VmmBlockNode *bs;                           /* the child node */
    const BlockChildClass *klass;
    void *parent;                               /* VmmBlockNode or VmmBlockBackend */
    bool quiesced_parent;                       /* parent drained_begin called */
    VmmBlockChild *next_child;                  /* in parent's children list */
    VmmBlockChild *next_parent;                 /* in bs's parents list */
};

extern const BlockChildClass block_child_of_node;
extern const BlockChildClass block_child_of_backend;

struct VmmBlockNode {
    char *node_name;
    const BlockDriver *drv;
    void *opaque;
    GHashTable *options;                        /* as given, for display */
    int refcnt;                                 /* main loop */
    bool read_only;
    bool auto_named;
    VmmAioContext *ctx;                         /* changes under drain */

    int64_t total_bytes;                        /* set by open/refresh */
    uint32_t request_alignment;                 /* power of two, >= 1 */
    size_t mem_alignment;                       /* power of two, >= 1 */
    /* Largest request the driver gets (a multiple of request_alignment);
     * larger ones are split (io.c).  0: no limit.  Drivers set it in open
     * (filters and raw inherit their child's); block_node_cap_max_transfer()
     * applies the node's "max-transfer" option. */
    uint32_t max_transfer;
    uint32_t max_transfer_opt;                  /* option; 0: none */

    VmmBlockChild *children VMM_GUARDED_BY(vmm_graph_lock);
    VmmBlockChild *parents VMM_GUARDED_BY(vmm_graph_lock);
    VmmBlockChild *file VMM_GUARDED_BY(vmm_graph_lock);  /* child "file", or NULL */

    unsigned in_flight;                         /* atomic */
    int quiesce_counter;                        /* atomic reads, main-loop writes */
    bool quiesced_by_all;                       /* inside drain_all */

    /* Serialising misaligned writes (read-modify-write). */
    VmmMutex reqs_lock;
    struct BlockTrackedReq *tracked;            /* under reqs_lock */
};

/* A write that may overlap a read-modify-write of the same aligned block. */
typedef struct BlockTrackedReq {
    int64_t start, end;                         /* aligned range */
    bool serialising;
    VmmCoroutine *co;
    struct BlockTrackedReq *next;
    struct BlockWaiter *waiters;
} BlockTrackedReq;

/* All nodes, for drain_all and lookups: main loop. */
extern GPtrArray *block_all_nodes;
extern int block_drain_all_count;

/* Graph changes: main loop, write lock. */
VmmBlockChild *block_child_attach(void *parent, const BlockChildClass *klass,
                                  VmmBlockNode *child, const char *name, unsigned role)
    GRAPH_WRLOCK;
void block_child_detach(VmmBlockChild *c) GRAPH_WRLOCK;
void block_child_set_target(VmmBlockChild *c, VmmBlockNode *to) GRAPH_WRLOCK;
VmmBlockNode *block_node_parent_of(VmmBlockChild *c);
bool block_node_is_below(VmmBlockNode *top, VmmBlockNode *n) GRAPH_RDLOCK;

/* Context change of a connected set: check, then apply (main loop, drained). */
int block_node_can_set_context(VmmBlockNode *n, VmmAioContext *ctx, VmmBlockChild *from,
                               GPtrArray *visited, GError **errp) GRAPH_RDLOCK;
void block_node_apply_context(VmmBlockNode *n, VmmAioContext *ctx, VmmBlockChild *from,
                              GPtrArray *visited) GRAPH_RDLOCK;
int block_node_move_context(VmmBlockNode *n, VmmAioContext *ctx, VmmBlockChild *ignore,
                            GError **errp) GRAPH_UNLOCKED;

/* @declared (a driver's limit, 0: none) capped by the node's max-transfer
 * option and made a multiple of its request alignment. */
uint32_t block_node_cap_max_transfer(VmmBlockNode *n, uint32_t declared);

/* Length refresh after a graph change (main loop). */
void block_node_refresh_length(VmmBlockNode *n) GRAPH_RDLOCK;

/* ---- Drain ------------------------------------------------------------------- */

void block_inc_in_flight(VmmBlockNode *n);
void block_dec_in_flight(VmmBlockNode *n);
/* Quiesce without polling (the graph writer uses it). */
void block_drained_begin_nopoll(VmmBlockNode *n);
void block_drain_all_begin_nopoll(void);
void block_drain_poll_all(void);
bool block_node_drain_busy(VmmBlockNode *n);

/* ---- Graph lock internals ---------------------------------------------------- */

/* The sum of reader counts (tests), and whether readers use asymmetric
 * fences (membarrier). */
uint32_t block_graph_reader_count(void);
bool block_graph_uses_membarrier(void);
/* Debug helpers; no-ops unless VMM_DEBUG_CHECKS. */
void block_assert_main_loop(const char *func);

/* ---- Request path ------------------------------------------------------------ */

int coroutine_fn block_co_preadv(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                 const struct iovec *iov, int iovcnt, int flags)
    GRAPH_RDLOCK;
int coroutine_fn block_co_pwritev(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                  const struct iovec *iov, int iovcnt, int flags)
    GRAPH_RDLOCK;
int coroutine_fn block_co_flush(VmmBlockNode *n) GRAPH_RDLOCK;
int coroutine_fn block_co_pdiscard(VmmBlockNode *n, int64_t offset, int64_t bytes)
    GRAPH_RDLOCK;
int coroutine_fn block_co_pwrite_zeroes(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                        int flags) GRAPH_RDLOCK;
/* Child forms: c may be NULL (-ENOMEDIUM). */
int coroutine_fn block_child_co_preadv(VmmBlockChild *c, int64_t offset, int64_t bytes,
                                       const struct iovec *iov, int iovcnt, int flags)
    GRAPH_RDLOCK;
int coroutine_fn block_child_co_pwritev(VmmBlockChild *c, int64_t offset, int64_t bytes,
                                        const struct iovec *iov, int iovcnt, int flags)
    GRAPH_RDLOCK;

/* iovec helpers. */
size_t block_iov_size(const struct iovec *iov, int iovcnt);
/* The part [@skip, @skip + @bytes) of @iov as an iovec array in @dst (@cap
 * entries).  Returns the number of entries it needs; if that is more than
 * @cap, @dst holds only the first @cap. */
int block_iov_slice(const struct iovec *iov, int iovcnt, size_t skip, size_t bytes,
                    struct iovec *dst, int cap);
size_t block_iov_to_buf(const struct iovec *iov, int iovcnt, size_t offset, void *buf,
                        size_t bytes);
size_t block_iov_from_buf(const struct iovec *iov, int iovcnt, size_t offset,
                          const void *buf, size_t bytes);
void block_iov_memset(const struct iovec *iov, int iovcnt, int c, size_t bytes);

/* ---- Coroutine wait lists (readers, queued requests, serialising) ----------- */

/* A coroutine waiting for something, woken in the context it waits in. */
typedef struct BlockWaiter {
    VmmCoroutine *co;
    struct BlockWaiter *next;
} BlockWaiter;

/* Add the running coroutine to *@list (caller holds the lock protecting
 * the list), drop @lock, yield; returns with @lock NOT held. */
void coroutine_fn block_wait_on(BlockWaiter **list, VmmMutex *lock) VMM_RELEASE(*lock);
/* Detach every waiter from *@list (caller holds the lock); then, without
 * the lock, block_wake_all() them. */
BlockWaiter *block_waiters_take(BlockWaiter **list);
void block_wake_all(BlockWaiter *w);

#endif /* VMM_BLOCK_INT_H */
