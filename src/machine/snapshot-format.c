/* SPDX-License-Identifier: MIT */
/* The machine snapshot file format; see snapshot-format.h. */
#include "machine/snapshot-format.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

static int fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t why_len, const char *fmt, ...)
{
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

const char *snap_section_name(uint32_t type)
{
    switch (type) {
    case SNAP_SEC_VCPU: return "vcpu";
    case SNAP_SEC_VM: return "vm";
    case SNAP_SEC_SERIAL: return "serial";
    case SNAP_SEC_VIRTIO_PCI: return "virtio-pci";
    case SNAP_SEC_RAM: return "ram";
    default: return "unknown";
    }
}

static uint32_t crc(const void *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    const uint8_t *b = p;
    while (n) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, chunk);
        b += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

void snap_header_encode(SnapHeader *h, uint8_t out[SNAP_HEADER_SIZE])
{
    memcpy(h->magic, SNAP_MAGIC, 8);
    h->version = SNAP_VERSION;
    h->header_size = SNAP_HEADER_SIZE;
    h->header_crc = 0;
    memset(out, 0, SNAP_HEADER_SIZE);
    memcpy(out, h, sizeof(*h));
    h->header_crc = crc(out, SNAP_HEADER_SIZE);
    memcpy(out + offsetof(SnapHeader, header_crc), &h->header_crc, sizeof(h->header_crc));
}

const SnapSection *snap_find(const SnapHeader *h, uint32_t type, uint32_t index)
{
    for (uint32_t i = 0; i < h->nsections && i < SNAP_MAX_SECTIONS; i++) {
        if (h->sec[i].type == type && h->sec[i].index == index) {
            return &h->sec[i];
        }
    }
    return NULL;
}

int snap_header_parse(const uint8_t *buf, size_t len, uint64_t file_size, SnapHeader *out,
                      char *why, size_t why_len)
{
    if (len < SNAP_HEADER_SIZE || file_size < SNAP_HEADER_SIZE) {
        return fail(why, why_len, "truncated: %" PRIu64 " bytes, shorter than the %u-byte header",
                    file_size < len ? file_size : (uint64_t)len, SNAP_HEADER_SIZE);
    }
    if (memcmp(buf, SNAP_MAGIC, 8) != 0) {
        return fail(why, why_len, "not a vmmkit snapshot (bad magic)");
    }
    SnapHeader h;
    memcpy(&h, buf, sizeof(h));
    if (h.version == SNAP_VERSION_NO_TSC) {
        /* The same header with a shorter configuration: the section table
         * follows it sooner.  No TSC rate: restored at the host's. */
        const size_t cfg1 = offsetof(SnapConfig, tsc_khz);
        memset(&h.cfg, 0, sizeof(h.cfg));
        memcpy(&h.cfg, buf + offsetof(SnapHeader, cfg), cfg1);
        memcpy(h.sec, buf + offsetof(SnapHeader, cfg) + cfg1, sizeof(h.sec));
    } else if (h.version != SNAP_VERSION) {
        return fail(why, why_len, "format version %u, this library reads versions %u and %u",
                    h.version, SNAP_VERSION_NO_TSC, SNAP_VERSION);
    }
    if (h.header_size != SNAP_HEADER_SIZE) {
        return fail(why, why_len, "header size %u, expected %u", h.header_size,
                    SNAP_HEADER_SIZE);
    }
    uint8_t copy[SNAP_HEADER_SIZE];
    memcpy(copy, buf, SNAP_HEADER_SIZE);
    memset(copy + offsetof(SnapHeader, header_crc), 0, sizeof(h.header_crc));
    if (crc(copy, SNAP_HEADER_SIZE) != h.header_crc) {
        return fail(why, why_len, "header checksum mismatch (corrupt header)");
    }
    const SnapConfig *c = &h.cfg;
    if (c->cpus == 0 || c->cpus > 64 || c->ram_size < (32ull << 20) ||
        c->ram_size > (1ull << 40) || c->ram_size % SNAP_PAGE ||
        c->ndevices > SNAP_MAX_DEVICES) {
        return fail(why, why_len, "impossible configuration (%u vCPUs, %" PRIu64
                    " bytes of RAM, %u devices)", c->cpus, c->ram_size, c->ndevices);
    }
    if (h.nsections > SNAP_MAX_SECTIONS) {
        return fail(why, why_len, "%u sections, at most %u", h.nsections, SNAP_MAX_SECTIONS);
    }
    for (uint32_t i = 0; i < h.nsections; i++) {
        const SnapSection *s = &h.sec[i];
        const char *name = snap_section_name(s->type);
        if (s->type < SNAP_SEC_VCPU || s->type > SNAP_SEC_RAM) {
            return fail(why, why_len, "section %u has unknown type %u", i, s->type);
        }
        if (s->offset < SNAP_HEADER_SIZE || s->offset > file_size ||
            s->length > file_size - s->offset) {
            return fail(why, why_len, "truncated: section %s %u at %" PRIu64 " (%" PRIu64
                        " bytes) ends past the file's %" PRIu64 " bytes", name, s->index,
                        s->offset, s->length, file_size);
        }
        if (s->type == SNAP_SEC_RAM) {
            if (s->index != 0 || s->offset % SNAP_PAGE || s->length != c->ram_size) {
                return fail(why, why_len, "RAM image of %" PRIu64 " bytes at %" PRIu64
                            " (needs %" PRIu64 " bytes, page aligned)", s->length, s->offset,
                            c->ram_size);
            }
        } else if (s->length > SNAP_MAX_RECORD) {
            return fail(why, why_len, "section %s %u of %" PRIu64 " bytes is too large",
                        name, s->index, s->length);
        }
        for (uint32_t j = 0; j < i; j++) {
            if (h.sec[j].type == s->type && h.sec[j].index == s->index) {
                return fail(why, why_len, "section %s %u appears twice", name, s->index);
            }
        }
    }
    for (uint32_t i = 0; i < c->cpus; i++) {
        const SnapSection *s = snap_find(&h, SNAP_SEC_VCPU, i);
        if (!s) {
            return fail(why, why_len, "no state for vCPU %u", i);
        }
        if (s->length != c->vcpu_state_size) {
            return fail(why, why_len, "vCPU %u state of %" PRIu64 " bytes, the header says %u",
                        i, s->length, c->vcpu_state_size);
        }
    }
    for (uint32_t i = 0; i < c->ndevices; i++) {
        if (!snap_find(&h, SNAP_SEC_VIRTIO_PCI, i)) {
            return fail(why, why_len, "no state for device %u", i);
        }
    }
    static const uint32_t needed[] = { SNAP_SEC_VM, SNAP_SEC_SERIAL, SNAP_SEC_RAM };
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        if (!snap_find(&h, needed[i], 0)) {
            return fail(why, why_len, "no %s section", snap_section_name(needed[i]));
        }
    }
    for (uint32_t i = 0; i < h.nsections; i++) {
        const SnapSection *s = &h.sec[i];
        if ((s->type == SNAP_SEC_VCPU && s->index >= c->cpus) ||
            (s->type == SNAP_SEC_VIRTIO_PCI && s->index >= c->ndevices) ||
            ((s->type == SNAP_SEC_VM || s->type == SNAP_SEC_SERIAL) && s->index != 0)) {
            return fail(why, why_len, "section %s %u does not belong to the configuration",
                        snap_section_name(s->type), s->index);
        }
    }
    *out = h;
    return 0;
}

int snap_section_check(const SnapSection *s, const void *data, char *why, size_t why_len)
{
    if (crc(data, (size_t)s->length) != s->crc) {
        return fail(why, why_len, "section %s %u: checksum mismatch (corrupt data)",
                    snap_section_name(s->type), s->index);
    }
    return 0;
}

int snap_config_match(const SnapConfig *file, const SnapConfig *want, char *why,
                      size_t why_len)
{
    if (want->ram_size && file->ram_size != want->ram_size) {
        return fail(why, why_len, "RAM size mismatch: the snapshot has %" PRIu64
                    " bytes, the machine %" PRIu64, file->ram_size, want->ram_size);
    }
    if (want->cpus && file->cpus != want->cpus) {
        return fail(why, why_len, "vCPU count mismatch: the snapshot has %u, the machine %u",
                    file->cpus, want->cpus);
    }
    if (want->vcpu_state_size && file->vcpu_state_size != want->vcpu_state_size) {
        return fail(why, why_len, "vCPU state record of %u bytes, this library's is %u",
                    file->vcpu_state_size, want->vcpu_state_size);
    }
    if (want->xsave_size && file->xsave_size > want->xsave_size) {
        return fail(why, why_len, "XSAVE area of %u bytes, this KVM takes %u",
                    file->xsave_size, want->xsave_size);
    }
    return 0;
}

void snap_put(SnapBuf *b, const void *v, size_t n)
{
    if (b->overflow || n > b->len - b->pos) {
        b->overflow = true;
        return;
    }
    if (b->p) {
        memcpy(b->p + b->pos, v, n);
    }
    b->pos += n;
}

bool snap_get(SnapBuf *b, void *v, size_t n)
{
    if (b->overflow || n > b->len - b->pos) {
        b->overflow = true;
        memset(v, 0, n);
        return false;
    }
    memcpy(v, b->p + b->pos, n);
    b->pos += n;
    return true;
}
