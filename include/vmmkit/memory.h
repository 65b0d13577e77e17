/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/memory.h - guest RAM, the guest-physical address map, and DMA.
 *
 * A VmmRamRegion is host memory for the guest: a memfd (shareable with
 * another process or with KVM by fd), mapped shared, optionally backed by
 * huge pages.  A VmmGuestMemory maps guest-physical addresses (GPAs) to
 * ranges of regions.  Readers (DMA from any thread) see the map through
 * RCU; writers publish a new copy of the map and free the old one after a
 * grace period, so a lookup never blocks and never sees a torn map.
 *
 * DMA: vmm_dma_read()/vmm_dma_write() copy; vmm_dma_map() turns a GPA
 * range into host iovecs.  Every access is checked: a range that wraps
 * around the 64-bit address space, touches a hole between sections, or
 * writes to a read-only section fails without touching memory.
 *
 * Lifetime of mapped pointers: the pointers vmm_dma_map() returns stay
 * valid until the section is removed.  Removing guest memory under a device
 * that holds mappings is only legal while that device is quiesced
 * (vmmkit/device.h delivers the DMA-map change to quiesced devices); the
 * host memory itself is unmapped only after an RCU grace period and after
 * the last region reference is dropped.
 */
#ifndef VMMKIT_MEMORY_H
#define VMMKIT_MEMORY_H

#include <sys/uio.h>

#include "vmmkit/common.h"

VMM_BEGIN_DECLS

typedef struct VmmRamRegion VmmRamRegion;
typedef struct VmmGuestMemory VmmGuestMemory;

/* ---- RAM regions ----------------------------------------------------------- */

/* Back the region with hugetlbfs pages (MFD_HUGETLB).  Creation fails with
 * a negative errno when the host has no huge pages to give. */
#define VMM_RAM_HUGEPAGES   (1u << 0)
/* Do not reserve swap for the region (MAP_NORESERVE). */
#define VMM_RAM_NORESERVE   (1u << 1)
/* Anonymous private memory instead of a memfd: it cannot be shared with
 * another process (vmm_ram_region_fd() returns -1), but the kernel can back
 * it with transparent huge pages, which shmem mappings only get when the
 * host enables them for shmem (mostly it does not).  The mapping is aligned
 * to 2 MiB and advised MADV_HUGEPAGE, so KVM maps the guest with 2 MiB
 * pages: far fewer nested-page faults while the guest first touches its
 * memory (the kernel's decompression and early boot).  With
 * VMM_RAM_HUGEPAGES it uses MAP_HUGETLB pages instead. */
#define VMM_RAM_PRIVATE     (1u << 2)

typedef struct VmmRamRegionOptions {
    size_t size;            /* sizeof(VmmRamRegionOptions), for ABI growth */
    uint64_t length;        /* bytes; a multiple of the page size in use */
    const char *name;       /* memfd name, for /proc/PID/maps; may be NULL */
    uint32_t flags;         /* VMM_RAM_* */
    uint64_t hugepage_size; /* with VMM_RAM_HUGEPAGES: 2 MiB, 1 GiB; 0 = default */
} VmmRamRegionOptions;

/* Create a zero-filled region (refcount 1).  Errors: -EINVAL (@opts NULL or
 * its size too small, length 0 or not a multiple of the page size in use,
 * an unknown flag, a hugepage_size that is not a power of two), -ENOMEM,
 * or the errno of memfd_create/ftruncate/mmap/madvise.  Any thread. */
VMM_EXPORT VmmRamRegion *vmm_ram_region_new(const VmmRamRegionOptions *opts,
                                            int *errp);
/* Any thread. */
VMM_EXPORT void vmm_ram_region_ref(VmmRamRegion *r);
/* The last reference unmaps and closes the region.  Any thread. */
VMM_EXPORT void vmm_ram_region_unref(VmmRamRegion *r);
/* The host address of the region's first byte.  Any thread. */
VMM_EXPORT void *vmm_ram_region_host(VmmRamRegion *r);
/* Any thread. */
VMM_EXPORT uint64_t vmm_ram_region_length(VmmRamRegion *r);
/* The page size backing the region (4 KiB or the huge page size). */
VMM_EXPORT uint64_t vmm_ram_region_page_size(VmmRamRegion *r);
/* The region's memfd, owned by the region (do not close it); pass it to
 * another process or map it again to share the memory.  -1 for a
 * VMM_RAM_PRIVATE region.  Any thread. */
VMM_EXPORT int vmm_ram_region_fd(VmmRamRegion *r);

/* ---- The guest-physical address map ---------------------------------------- */

/* The section is read-only for DMA (ROM); vmm_dma_write() fails -EACCES. */
#define VMM_MEM_READONLY    (1u << 0)

/* One contiguous GPA range backed by one region. */
typedef struct VmmMemorySection {
    uint64_t gpa;
    uint64_t length;
    void *host;             /* host address of gpa */
    VmmRamRegion *region;
    uint64_t offset;        /* offset of gpa's byte in the region */
    int fd;                 /* the region's memfd */
    uint32_t flags;         /* VMM_MEM_* */
} VmmMemorySection;

/* Called after a section is added (@added) or removed (!@added).  It runs
 * in the thread that changed the map, with the map's update lock held: it
 * must not change the map itself. */
typedef void VmmMemoryListenerFunc(void *opaque, const VmmMemorySection *s,
                                   bool added);

/* The maximum number of sections in one map. */
#define VMM_GUEST_MEMORY_MAX_SECTIONS 512

/* An empty map (refcount 1).  Any thread. */
VMM_EXPORT VmmGuestMemory *vmm_guest_memory_new(int *errp);
/* Any thread. */
VMM_EXPORT void vmm_guest_memory_ref(VmmGuestMemory *mem);
/* The last reference drops every section and waits for retired maps to be
 * freed; not from inside an RCU read-side section.  Any thread. */
VMM_EXPORT void vmm_guest_memory_unref(VmmGuestMemory *mem);

/*
 * Map [@gpa, @gpa + @length) to @region at @offset (takes a region
 * reference).  @gpa, @offset and @length must be page aligned (4 KiB, and
 * the region's page size), non-empty, inside the region, not wrapping, and
 * not overlapping another section.  Errors: -EINVAL, -EOVERFLOW (wraps),
 * -EEXIST (overlap), -ENOSPC (too many sections), -ENOMEM.
 * Main loop (updates are serialized by an internal lock).
 */
VMM_EXPORT int vmm_guest_memory_add(VmmGuestMemory *mem, uint64_t gpa,
                                    VmmRamRegion *region, uint64_t offset,
                                    uint64_t length, uint32_t flags);
/*
 * Remove the section that starts at @gpa with exactly @length (-ENOENT if
 * there is none).  Devices that hold DMA mappings into it must be quiesced
 * (vmm_device_dma_map_change()).  Main loop.
 */
VMM_EXPORT int vmm_guest_memory_remove(VmmGuestMemory *mem, uint64_t gpa,
                                       uint64_t length);

/* Register @fn; it is called at once for every existing section (added),
 * then on every change.  Main loop. */
VMM_EXPORT int vmm_guest_memory_add_listener(VmmGuestMemory *mem,
                                             VmmMemoryListenerFunc *fn,
                                             void *opaque);
/* Unregister (-ENOENT if not registered).  No calls happen after it
 * returns.  Main loop. */
VMM_EXPORT int vmm_guest_memory_remove_listener(VmmGuestMemory *mem,
                                                VmmMemoryListenerFunc *fn,
                                                void *opaque);

/* Copy the section containing @gpa into *@out (-ENOENT in a hole).
 * Any thread. */
VMM_EXPORT int vmm_guest_memory_find(VmmGuestMemory *mem, uint64_t gpa,
                                     VmmMemorySection *out);

/* ---- DMA ------------------------------------------------------------------- */

/*
 * Dirty log of device writes, for live migration: KVM logs what vCPUs
 * write, not what the host writes into guest RAM on a device's behalf.
 * While on, every guest page that vmm_dma_write() writes, that
 * vmm_dma_map(VMM_DMA_TO_GUEST) maps (marked when mapped, i.e. before the
 * device writes: read the log once the device is quiesced to see every
 * write), or that a virtqueue pins writable (its used ring: marked when
 * pinned only, so a migration sends the rings of enabled queues with the
 * device state) is recorded, for the GPAs the map covered when logging
 * started.  Turning it on again clears it.
 *
 * vmm_guest_memory_log_dirty: 0, -EINVAL (@mem NULL), -ENOMEM.  Main loop.
 * vmm_guest_memory_get_dirty: fetch and clear the bits of @npages pages
 * from @gpa (a multiple of 256 KiB) into @bitmap ((@npages+63)/64 words;
 * pages outside the log read 0).  0, -EINVAL (NULL, misaligned @gpa),
 * -ENOENT (logging is off; @bitmap zeroed).  Any thread.
 */
VMM_EXPORT int vmm_guest_memory_log_dirty(VmmGuestMemory *mem, bool on);
VMM_EXPORT int vmm_guest_memory_get_dirty(VmmGuestMemory *mem, uint64_t gpa,
                                          uint64_t npages, uint64_t *bitmap);

/*
 * Copy @len bytes from guest @gpa into @buf.  The range may span adjacent
 * sections.  Errors (nothing is copied): -EOVERFLOW (gpa + len wraps),
 * -EFAULT (part of the range is not RAM).  Any thread.
 */
VMM_EXPORT int vmm_dma_read(VmmGuestMemory *mem, uint64_t gpa, void *buf,
                            size_t len);
/* As vmm_dma_read(), towards the guest; -EACCES for a read-only section. */
VMM_EXPORT int vmm_dma_write(VmmGuestMemory *mem, uint64_t gpa,
                             const void *buf, size_t len);

/* vmm_dma_map() direction: the device writes (fills) the buffer. */
#define VMM_DMA_TO_GUEST    (1u << 0)

/*
 * Translate [@gpa, @gpa + @len) into at most @max_iov host iovecs (one per
 * section crossed), stored in @iov.  Returns the number of iovecs (0 for
 * @len == 0), or -EOVERFLOW (wraps), -EFAULT (a hole), -EACCES (read-only
 * section with VMM_DMA_TO_GUEST), -ENOBUFS (more than @max_iov needed).
 * The pointers stay valid as the header comment describes.  Any thread.
 */
VMM_EXPORT int vmm_dma_map(VmmGuestMemory *mem, uint64_t gpa, uint64_t len,
                           uint32_t flags, struct iovec *iov, unsigned max_iov);

VMM_END_DECLS

#endif /* VMMKIT_MEMORY_H */
