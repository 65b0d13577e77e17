/* SPDX-License-Identifier: MIT */
/* Guest RAM regions: memfd-backed shared mappings, or anonymous private
 * mappings aligned for transparent huge pages (VMM_RAM_PRIVATE). */
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
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif

/* The alignment that lets both the host (THP) and KVM (2 MiB NPT/EPT
 * entries: host address and GPA congruent modulo 2 MiB) use large pages. */
#define RAM_THP_ALIGN (2ull << 20)

struct VmmRamRegion {
    int refcnt;
    int fd;
    void *host;
    uint64_t length;
    uint64_t page_size;
    void *map;          /* what munmap() takes: host minus alignment slack */
    uint64_t map_length;
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

static int ram_map_shared(VmmRamRegion *r, const VmmRamRegionOptions *o,
                          unsigned mfd_flags)
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
    r->host = r->map = p;
    r->map_length = r->length;
    /* Where the host allows THP for shmem only on request ("advise"). */
    (void)madvise(p, r->length, MADV_HUGEPAGE);
    return 0;
}

static int ram_map_private(VmmRamRegion *r, const VmmRamRegionOptions *o)
{
    int mflags = MAP_PRIVATE | MAP_ANONYMOUS;
    uint64_t slack = 0;

    if (o->flags & VMM_RAM_NORESERVE) {
        mflags |= MAP_NORESERVE;
    }
    if (o->flags & VMM_RAM_HUGEPAGES) {
        /* hugetlb mappings come aligned to their page size. */
        mflags |= MAP_HUGETLB |
                  (int)((unsigned)__builtin_ctzll(r->page_size) << MAP_HUGE_SHIFT);
    } else if (r->length >= RAM_THP_ALIGN) {
        slack = RAM_THP_ALIGN;      /* length <= INT64_MAX: no wrap */
    }
    void *p = mmap(NULL, r->length + slack, PROT_READ | PROT_WRITE, mflags, -1, 0);
    if (p == MAP_FAILED) {
        return -errno;
    }
    r->host = r->map = p;
    r->map_length = r->length;
    if (slack) {
        /* Keep exactly the aligned [host, host + length) and give back the
         * slack on both sides: nothing else can share its huge pages. */
        uintptr_t host = VMM_ALIGN_UP((uintptr_t)p, (uintptr_t)slack);
        uintptr_t head = host - (uintptr_t)p;
        if (head) {
            munmap(p, head);
        }
        if (slack - head) {
            munmap((void *)(host + r->length), slack - head);
        }
        r->host = r->map = (void *)host;
        if (madvise(r->host, r->length, MADV_HUGEPAGE) < 0 && errno != EINVAL) {
            return -errno;   /* EINVAL: a kernel without THP; 4 KiB pages */
        }
    }
    return 0;
}

static int ram_map(VmmRamRegion *r, const VmmRamRegionOptions *o, unsigned mfd_flags)
{
    int err = (o->flags & VMM_RAM_PRIVATE) ? ram_map_private(r, o)
                                           : ram_map_shared(r, o, mfd_flags);
    if (err == 0) {
        /* Guest RAM in a core dump is rarely wanted and can be huge. */
        (void)madvise(r->host, r->length, MADV_DONTDUMP);
    }
    return err;
}

static void ram_free(VmmRamRegion *r)
{
    if (r->map) {
        munmap(r->map, r->map_length);
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
        opts->length == 0 || (opts->flags & ~(VMM_RAM_HUGEPAGES | VMM_RAM_NORESERVE | VMM_RAM_PRIVATE))) {
        err = VMM_MISUSE_ERR(-EINVAL, "invalid RAM region options");
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
    vk_atomic_inc(&r->refcnt);
}

void vmm_ram_region_unref(VmmRamRegion *r)
{
    if (r && vk_atomic_sub_fetch(&r->refcnt, 1) == 0) {
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
