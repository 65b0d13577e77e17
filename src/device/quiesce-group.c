/* SPDX-License-Identifier: MIT */
/*
 * VM-wide quiesce: vCPU gates, then every device's pause (requested all at
 * once, waited for together with a timeout), then extra stages such as the
 * block layer's drain.  Pause completions may arrive in any thread; each
 * member's state changes under g->lock.  A device that misses the deadline
 * is marked CANCELLED: when its pause is granted later, the completion
 * unpauses it at once, so an aborted quiesce leaves nothing stuck; a group
 * freed meanwhile is freed by that last completion.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "device/device-internal.h"
#include "util/lock.h"
#include "util/atomic.h"
#include "util/log.h"
#include "vmmkit/accel.h"
#include "vmmkit/aio.h"
#include "vmmkit/block.h"
#include "vmmkit/device.h"

enum { M_IDLE, M_PENDING, M_PAUSED, M_CANCELLED };

typedef struct QDev {
    VmmQuiesceGroup *g;
    VmmDevice *dev;
    int state;              /* M_*, under g->lock */
    int err;
} QDev;

typedef struct QStage {
    char *name;
    VmmQuiesceStageBegin *begin;
    VmmQuiesceStageEnd *end;
    void *opaque;
} QStage;

struct VmmQuiesceGroup {
    VmmMutex lock;
    QDev **devs;
    unsigned ndevs;
    VmmAccelGate **gates;
    unsigned ngates;
    QStage *stages;
    unsigned nstages;
    unsigned stages_begun;
    bool quiesced;
    unsigned pending;       /* devices still quiescing, under lock */
    bool orphaned;          /* freed while pending: the last completion frees */
};

VmmQuiesceGroup *vmm_quiesce_group_new(int *errp)
{
    VmmQuiesceGroup *g = calloc(1, sizeof(*g));

    if (!g) {
        if (errp) {
            *errp = -ENOMEM;
        }
        return NULL;
    }
    vk_mutex_init(&g->lock);
    return g;
}

static void *grow(void *arr, unsigned n, size_t elem)
{
    return realloc(arr, (n + 1) * elem);
}

int vmm_quiesce_group_add_device(VmmQuiesceGroup *g, VmmDevice *dev)
{
    if (!g || !dev || g->quiesced) {
        return g && g->quiesced ? -EBUSY : -EINVAL;
    }
    QDev **d = grow(g->devs, g->ndevs, sizeof(*d));
    QDev *q = calloc(1, sizeof(*q));
    if (!d || !q) {
        if (d) {
            g->devs = d;
        }
        free(q);
        return -ENOMEM;
    }
    q->g = g;
    q->dev = dev;
    g->devs = d;
    g->devs[g->ndevs++] = q;
    return 0;
}

int vmm_quiesce_group_add_gate(VmmQuiesceGroup *g, VmmAccelGate *gate)
{
    if (!g || !gate || g->quiesced) {
        return g && g->quiesced ? -EBUSY : -EINVAL;
    }
    VmmAccelGate **a = grow(g->gates, g->ngates, sizeof(*a));
    if (!a) {
        return -ENOMEM;
    }
    g->gates = a;
    g->gates[g->ngates++] = gate;
    return 0;
}

int vmm_quiesce_group_add_stage(VmmQuiesceGroup *g, const char *name,
                                VmmQuiesceStageBegin *begin, VmmQuiesceStageEnd *end,
                                void *opaque)
{
    if (!g || !begin || g->quiesced) {
        return g && g->quiesced ? -EBUSY : -EINVAL;
    }
    QStage *s = grow(g->stages, g->nstages, sizeof(*s));
    if (!s) {
        return -ENOMEM;
    }
    g->stages = s;
    char *n = strdup(name ? name : "stage");
    if (!n) {
        return -ENOMEM;
    }
    g->stages[g->nstages++] = (QStage){ n, begin, end, opaque };
    return 0;
}

static int drain_begin(void *opaque)
{
    (void)opaque;
    vmm_block_drain_all_begin();
    return 0;
}

static void drain_end(void *opaque)
{
    (void)opaque;
    vmm_block_drain_all_end();
}

int vmm_quiesce_group_add_block_drain(VmmQuiesceGroup *g)
{
    return vmm_quiesce_group_add_stage(g, "block-drain", drain_begin, drain_end, NULL);
}

static void group_destroy(VmmQuiesceGroup *g)
{
    for (unsigned i = 0; i < g->ndevs; i++) {
        free(g->devs[i]);
    }
    for (unsigned i = 0; i < g->nstages; i++) {
        free(g->stages[i].name);
    }
    free(g->devs);
    free(g->gates);
    free(g->stages);
    vk_mutex_destroy(&g->lock);
    free(g);
}

void vmm_quiesce_group_free(VmmQuiesceGroup *g)
{
    if (!g) {
        return;
    }
    if (g->quiesced) {
        VMM_MISUSE("quiesce group freed while quiesced");
        return;
    }
    vk_mutex_lock(&g->lock);
    bool busy = g->pending != 0;
    g->orphaned = busy;
    vk_mutex_unlock(&g->lock);
    if (!busy) {
        group_destroy(g);
    }
    /* Otherwise a late completion still points at its QDev: the last one
     * frees the group (pause_done). */
}

/* A device's pause completed (any thread). */
static void pause_done(VmmDevice *dev, int ret, void *opaque)
{
    QDev *q = opaque;
    VmmQuiesceGroup *g = q->g;
    bool unpause = false;

    vk_mutex_lock(&g->lock);
    g->pending--;
    if (q->state == M_CANCELLED) {
        unpause = ret == 0;
        q->state = M_IDLE;
    } else {
        q->state = ret == 0 ? M_PAUSED : M_IDLE;
        q->err = ret;
    }
    bool destroy = g->orphaned && g->pending == 0;
    vk_mutex_unlock(&g->lock);
    if (unpause) {
        vmm_device_unpause(dev);
    }
    if (destroy) {
        group_destroy(g);
    }
    vmm_aio_wait_kick();
}

static bool devices_pending(void *opaque)
{
    VmmQuiesceGroup *g = opaque;

    vk_mutex_lock(&g->lock);
    bool p = g->pending != 0;
    vk_mutex_unlock(&g->lock);
    return p;
}

/* Undo the device pauses: granted ones unpause, pending ones are
 * cancelled (unpaused when granted). */
static bool devices_delivering(VmmQuiesceGroup *g)
{
    for (unsigned i = 0; i < g->ndevs; i++) {
        if (device_delivering(g->devs[i]->dev)) {
            return true;
        }
    }
    return false;
}

static void devices_resume(VmmQuiesceGroup *g)
{
    for (unsigned i = 0; i < g->ndevs; i++) {
        QDev *q = g->devs[i];
        vk_mutex_lock(&g->lock);
        int st = q->state;
        if (st == M_PENDING) {
            q->state = M_CANCELLED;
        } else if (st == M_PAUSED) {
            q->state = M_IDLE;
        }
        vk_mutex_unlock(&g->lock);
        if (st == M_PAUSED) {
            vmm_device_unpause(q->dev);
        }
    }
    /* A device that finished quiescing in its own thread may still be in
     * that thread's delivery loop, which then performs our unpause after
     * we return.  Wait for it, so that the group's devices run again when
     * vmm_quiesce_group_end() returns; the loop kicks aio-wait as it ends
     * (device_run()), and polling the main context here lets a callback
     * that needs the main loop finish. */
    VMM_AIO_WAIT_WHILE(NULL, devices_delivering(g));
}

static int devices_quiesce(VmmQuiesceGroup *g, int64_t timeout_ns, const char **who)
{
    for (unsigned i = 0; i < g->ndevs; i++) {
        QDev *q = g->devs[i];
        vk_mutex_lock(&g->lock);
        q->state = M_PENDING;
        q->err = 0;
        g->pending++;
        vk_mutex_unlock(&g->lock);
        if (vmm_device_pause(q->dev, pause_done, q) < 0) {
            pause_done(q->dev, -ENOMEM, q);
        }
    }
    int ret = vmm_aio_wait_while_timeout_(NULL, devices_pending, g,
                                          timeout_ns < 0 ? 0 /* forever */ :
                                          timeout_ns ? timeout_ns : 1);
    for (unsigned i = 0; i < g->ndevs; i++) {
        QDev *q = g->devs[i];
        vk_mutex_lock(&g->lock);
        int st = q->state, err = q->err;
        vk_mutex_unlock(&g->lock);
        if (st == M_PAUSED) {
            continue;
        }
        if (who) {
            *who = vmm_device_name(q->dev);
        }
        vk_error("VM quiesce: device '%s' %s", vmm_device_name(q->dev),
                  st == M_PENDING ? "did not finish quiescing in time" : "refused to quiesce");
        ret = st == M_PENDING ? -ETIMEDOUT : (err < 0 ? err : -EIO);
        break;
    }
    if (ret < 0) {
        devices_resume(g);
    }
    return ret;
}

static void gates_end(VmmQuiesceGroup *g, unsigned n) VMM_NO_TSA
{
    while (n--) {
        vmm_accel_ioctl_inhibit_end(g->gates[n]);
    }
}

static void stages_end(VmmQuiesceGroup *g)
{
    while (g->stages_begun) {
        QStage *s = &g->stages[--g->stages_begun];
        if (s->end) {
            s->end(s->opaque);
        }
    }
}

int vmm_quiesce_group_begin(VmmQuiesceGroup *g, int64_t timeout_ns, const char **who)
    VMM_NO_TSA
{
    if (!g || g->quiesced) {
        return VMM_MISUSE_ERR(-EINVAL, "quiesce group %s", g ? "already quiesced" : "is NULL");
    }
    for (unsigned i = 0; i < g->ngates; i++) {
        vmm_accel_ioctl_inhibit_begin(g->gates[i]);
    }
    int ret = devices_quiesce(g, timeout_ns, who);
    if (ret < 0) {
        gates_end(g, g->ngates);
        return ret;
    }
    g->stages_begun = 0;
    for (unsigned i = 0; i < g->nstages; i++) {
        ret = g->stages[i].begin(g->stages[i].opaque);
        if (ret < 0) {
            if (who) {
                *who = g->stages[i].name;
            }
            vk_error("VM quiesce: stage '%s' failed (%d)", g->stages[i].name, ret);
            stages_end(g);
            devices_resume(g);
            gates_end(g, g->ngates);
            return ret;
        }
        g->stages_begun++;
    }
    g->quiesced = true;
    return 0;
}

void vmm_quiesce_group_end(VmmQuiesceGroup *g) VMM_NO_TSA
{
    if (!g || !g->quiesced) {
        VMM_MISUSE("quiesce group not quiesced");
        return;
    }
    stages_end(g);
    devices_resume(g);
    gates_end(g, g->ngates);
    g->quiesced = false;
}
