/* SPDX-License-Identifier: MIT */
/* Guest RAM regions: memfd-backed shared mappings. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"
#include "vmmkit/memory.h"

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif

struct VmmRamRegion {
    int refcnt;
    int fd;
    void *host;
    uint64_t length;
    uint64_t page_size;
};

static int ram_page_size(const VmmRamRegionOptions *o, uint64_t *ps,
                         unsigned *mfd_flags)
{
    *mfd_flags = MFD_CLOEXEC;
    if (!(o->flags & VMM_RAM_HUGEPAGES)) {
        *ps = (uint64_t)sysconf(_SC_PAGESIZE);
        return 0;
    }
    uint64_t hps = o->hugepage_size ? o->hugepage_size : 2u << 20;
    if (hps & (hps - 1) || hps < 4096 || hps > (1ull << 40)) {
        return -EINVAL;
    }
    *ps = hps;
    *mfd_flags |= MFD_HUGETLB | ((unsigned)__builtin_ctzll(hps) << MFD_HUGE_SHIFT);
    return 0;
}

static int ram_map(VmmRamRegion *r, const VmmRamRegionOptions *o, unsigned mfd_flags)
{
    r->fd = memfd_create(o->name ? o->name : "vmmkit-ram", mfd_flags);
    if (r->fd < 0) {
        return -errno;
    }
    if (ftruncate(r->fd, (off_t)r->length) < 0) {
        return -errno;
    }
    int mflags = MAP_SHARED;
    if (o->flags & VMM_RAM_NORESERVE) {
        mflags |= MAP_NORESERVE;
    }
    void *p = mmap(NULL, r->length, PROT_READ | PROT_WRITE, mflags, r->fd, 0);
    if (p == MAP_FAILED) {
        return -errno;
    }
    r->host = p;
    /* Guest RAM in a core dump is rarely wanted and can be huge. */
    (void)madvise(p, r->length, MADV_DONTDUMP);
    return 0;
}

static void ram_free(VmmRamRegion *r)
{
    if (r->host) {
        munmap(r->host, r->length);
    }
    if (r->fd >= 0) {
        close(r->fd);
    }
    free(r);
}

VmmRamRegion *vmm_ram_region_new(const VmmRamRegionOptions *opts, int *errp)
{
    int err = -EINVAL;
    uint64_t ps;
    unsigned mfd_flags;

    if (!opts || opts->size < offsetof(VmmRamRegionOptions, hugepage_size) ||
        opts->length == 0 || (opts->flags & ~(VMM_RAM_HUGEPAGES | VMM_RAM_NORESERVE))) {
        VMM_MISUSE("invalid RAM region options");
        goto fail;
    }
    VmmRamRegionOptions o = { 0 };
    memcpy(&o, opts, opts->size < sizeof(o) ? opts->size : sizeof(o));
    err = ram_page_size(&o, &ps, &mfd_flags);
    if (err < 0 || !VMM_IS_ALIGNED(o.length, ps) || o.length > (uint64_t)INT64_MAX) {
        err = -EINVAL;
        goto fail;
    }
    VmmRamRegion *r = calloc(1, sizeof(*r));
    if (!r) {
        err = -ENOMEM;
        goto fail;
    }
    r->refcnt = 1;
    r->fd = -1;
    r->length = o.length;
    r->page_size = ps;
    err = ram_map(r, &o, mfd_flags);
    if (err < 0) {
        ram_free(r);
        goto fail;
    }
    return r;
fail:
    if (errp) {
        *errp = err;
    }
    return NULL;
}

void vmm_ram_region_ref(VmmRamRegion *r)
{
    vmm_atomic_inc(&r->refcnt);
}

void vmm_ram_region_unref(VmmRamRegion *r)
{
    if (r && vmm_atomic_sub_fetch(&r->refcnt, 1) == 0) {
        ram_free(r);
    }
}

void *vmm_ram_region_host(VmmRamRegion *r)
{
    return r->host;
}

uint64_t vmm_ram_region_length(VmmRamRegion *r)
{
    return r->length;
}

uint64_t vmm_ram_region_page_size(VmmRamRegion *r)
{
    return r->page_size;
}

int vmm_ram_region_fd(VmmRamRegion *r)
{
    return r->fd;
}
