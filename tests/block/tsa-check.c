/* SPDX-License-Identifier: MIT */
/*
 * Compiled (not run) by clang with -Wthread-safety -Werror: each CASE must
 * fail to compile because a caller lacks the graph lock; CASE 0 holds the
 * locks and must compile.  See test 'tsa-negative' in meson.build.
 */
#include "vmmkit/block.h"

static int guarded_value VMM_GUARDED_BY(vmm_graph_lock);

typedef struct Ops {
    int (*read)(VmmBlockNode *n) VMM_GRAPH_RDLOCK_PTR;
} Ops;

static int reads_graph(VmmBlockNode *n) VMM_GRAPH_RDLOCK;
static int reads_graph(VmmBlockNode *n)
{
    return vmm_block_node_parent_count(n);
}

int tsa_case(VmmBlockNode *n, Ops *ops);
int tsa_case(VmmBlockNode *n, Ops *ops)
{
    int r = 0;
#if CASE == 0
    vmm_graph_rdlock_main_loop();
    r = reads_graph(n) + ops->read(n) + guarded_value;
    vmm_graph_rdunlock_main_loop();
    vmm_graph_wrlock();
    guarded_value = r;
    vmm_graph_wrunlock();
#elif CASE == 1
    r = vmm_block_node_parent_count(n);    /* read lock missing */
#elif CASE == 2
    r = ops->read(n);                      /* guarded function pointer */
#elif CASE == 3
    vmm_graph_rdlock_main_loop();
    guarded_value = 1;                     /* write needs the write lock */
    vmm_graph_rdunlock_main_loop();
#elif CASE == 4
    vmm_graph_rdlock_main_loop();          /* never released */
    r = reads_graph(n);
#endif
    (void)n;
    (void)ops;
    return r;
}
