/* SPDX-License-Identifier: MIT */
/*
 * Host-side unpacking of a bzImage's compressed vmlinux (kernel-unpack.h).
 *
 * The payload is decoded as a stream: the first few KiB (the ELF header
 * and program headers) into a small buffer, then each PT_LOAD segment's
 * bytes straight into guest RAM at its physical address, the bytes between
 * segments (section headers, relocation tables) into a scratch buffer that
 * is overwritten as it goes.  Nothing here trusts the image: the segments
 * are checked by x86_elf_parse_head against the size the trailer states
 * and against the RAM before a byte is written, and the stream must decode
 * to exactly that size with its integrity check passing.
 */
#include "machine/kernel-unpack.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lzma.h>
#define ZLIB_CONST
#include <zlib.h>

#define HEAD_LEN    4096u               /* the ELF and program headers */
#define SCRATCH_LEN (64u << 10)         /* bytes no segment wants */
#define XZ_MEMLIMIT (256ull << 20)      /* Linux uses a 32 MiB dictionary */

typedef struct Decoder {
    X86PayloadFormat format;
    bool ended;                 /* the stream's end (and check) was reached */
    lzma_stream xz;
    z_stream gz;
} Decoder;

static int dec_init(Decoder *d, const uint8_t *in, size_t len, X86PayloadFormat f)
{
    memset(d, 0, sizeof(*d));
    d->format = f;
    if (f == X86_PAYLOAD_XZ) {
        d->xz = (lzma_stream)LZMA_STREAM_INIT;
        lzma_ret r = lzma_stream_decoder(&d->xz, XZ_MEMLIMIT, 0);
        if (r != LZMA_OK) {
            return r == LZMA_MEM_ERROR ? -ENOMEM : -EINVAL;
        }
        d->xz.next_in = in;
        d->xz.avail_in = len;
        return 0;
    }
    if (f == X86_PAYLOAD_GZIP) {
        if (len > UINT_MAX) {
            return -EINVAL;
        }
        int r = inflateInit2(&d->gz, 16 + MAX_WBITS);   /* gzip framing only */
        if (r != Z_OK) {
            return r == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
        }
        d->gz.next_in = in;
        d->gz.avail_in = (uInt)len;
        return 0;
    }
    d->format = X86_PAYLOAD_NONE;
    return -ENOTSUP;
}

static void dec_free(Decoder *d)
{
    if (d->format == X86_PAYLOAD_XZ) {
        lzma_end(&d->xz);
    } else if (d->format == X86_PAYLOAD_GZIP) {
        inflateEnd(&d->gz);
    }
}

/* Decode up to @n bytes into @dst; returns how many (fewer only at the
 * stream's end) or -EINVAL for corrupt or truncated input. */
static long dec_some(Decoder *d, uint8_t *dst, size_t n)
{
    if (d->ended || n == 0) {
        return 0;
    }
    if (d->format == X86_PAYLOAD_XZ) {
        d->xz.next_out = dst;
        d->xz.avail_out = n;
        lzma_ret r = lzma_code(&d->xz, LZMA_FINISH);
        if (r == LZMA_STREAM_END) {
            d->ended = true;
        } else if (r != LZMA_OK) {
            return -EINVAL;     /* data or check error, or input ran out */
        }
        return (long)(n - d->xz.avail_out);
    }
    d->gz.next_out = dst;
    d->gz.avail_out = n > (1u << 30) ? (1u << 30) : (uInt)n;
    uInt asked = d->gz.avail_out;
    int r = inflate(&d->gz, Z_NO_FLUSH);
    if (r == Z_STREAM_END) {
        d->ended = true;
    } else if (r != Z_OK) {
        return -EINVAL;         /* Z_BUF_ERROR: the input ran out */
    }
    return (long)(asked - d->gz.avail_out);
}

/* Exactly @n bytes into @dst, else -EINVAL. */
static int dec_read(Decoder *d, uint8_t *dst, size_t n)
{
    while (n > 0) {
        long got = dec_some(d, dst, n);
        if (got < 0) {
            return (int)got;
        }
        if (got == 0 && d->ended) {
            return -EINVAL;     /* shorter than the trailer said */
        }
        /* got == 0 before the end: the decoder consumed headers only.  It
         * cannot loop: both libraries report an error (LZMA_BUF_ERROR,
         * Z_BUF_ERROR) on a call that can make no progress. */
        dst += got;
        n -= (size_t)got;
    }
    return 0;
}

static int dec_skip(Decoder *d, uint8_t *scratch, uint64_t n)
{
    while (n > 0) {
        size_t k = n < SCRATCH_LEN ? (size_t)n : SCRATCH_LEN;
        int r = dec_read(d, scratch, k);
        if (r < 0) {
            return r;
        }
        n -= k;
    }
    return 0;
}

/* All output consumed: the stream must end here (and its check pass). */
static int dec_finish(Decoder *d, uint8_t *scratch)
{
    while (!d->ended) {
        long got = dec_some(d, scratch, 1);
        if (got != 0) {
            return -EINVAL;     /* longer than the trailer said, or corrupt */
        }
    }
    return 0;
}

/* Segment indices sorted by file offset (insertion sort: at most 16). */
static void order_by_offset(const X86ElfKernel *ek, unsigned *idx)
{
    for (unsigned i = 0; i < ek->nseg; i++) {
        unsigned j = i;
        while (j > 0 && ek->seg[idx[j - 1]].offset > ek->seg[i].offset) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
}

/* The segments, in file order, must not overlap in the file (a stream is
 * read once) and must fit in RAM. */
static int check_layout(const X86ElfKernel *ek, const unsigned *idx, uint64_t ram_len)
{
    uint64_t file_end = 0;
    for (unsigned k = 0; k < ek->nseg; k++) {
        const X86ElfSegment *s = &ek->seg[idx[k]];
        if (s->offset < file_end) {
            return -EINVAL;
        }
        file_end = s->offset + s->filesz;   /* x86_elf_parse_head: no wrap */
        if (s->paddr > ram_len || s->memsz > ram_len - s->paddr) {
            return -E2BIG;
        }
    }
    return 0;
}

/* Decode the rest of the stream (@size bytes in all, @head_len of them in
 * @head), the segments' bytes into @ram in the order @idx gives. */
static int load_segments(Decoder *d, const X86ElfKernel *ek, const unsigned *idx,
                         const uint8_t *head, size_t head_len, uint8_t *scratch,
                         uint8_t *ram, uint64_t size)
{
    int r = 0;
    uint64_t pos = head_len;            /* bytes decoded so far */
    for (unsigned k = 0; k < ek->nseg && r == 0; k++) {
        const X86ElfSegment *s = &ek->seg[idx[k]];
        uint8_t *dst = ram + s->paddr;
        uint64_t end = s->offset + s->filesz;
        /* The part the head already holds (only ever the first segments). */
        if (s->offset < head_len) {
            uint64_t n = (end < head_len ? end : head_len) - s->offset;
            memcpy(dst, head + s->offset, n);
        }
        uint64_t from = s->offset > head_len ? s->offset : head_len;
        if (end > from) {
            r = dec_skip(d, scratch, from - pos);
            if (r == 0) {
                r = dec_read(d, dst + (from - s->offset), end - from);
            }
            pos = end;
        }
        memset(dst + s->filesz, 0, s->memsz - s->filesz);
    }
    if (r == 0) {
        r = dec_skip(d, scratch, size - pos);
    }
    return r == 0 ? dec_finish(d, scratch) : r;
}

int x86_unpack_elf(const uint8_t *img, const X86Payload *pl, uint8_t *ram,
                   uint64_t ram_len, X86ElfKernel *ek)
{
    uint8_t head[HEAD_LEN];
    if (pl->unpacked_size > ram_len) {
        return -E2BIG;          /* a kernel file larger than the guest's RAM */
    }
    size_t head_len = pl->unpacked_size < HEAD_LEN ? pl->unpacked_size : HEAD_LEN;
    Decoder d;
    int r = dec_init(&d, img + pl->offset, pl->length, pl->format);
    if (r < 0) {
        return r;
    }
    uint8_t *scratch = malloc(SCRATCH_LEN);
    if (!scratch) {
        dec_free(&d);
        return -ENOMEM;
    }
    r = dec_read(&d, head, head_len);
    if (r == 0) {
        r = x86_elf_parse_head(head, head_len, pl->unpacked_size, ek);
        r = r == -ENOEXEC ? -EINVAL : r;
    }
    unsigned idx[X86_ELF_MAX_SEGS];
    if (r == 0) {
        order_by_offset(ek, idx);
        r = check_layout(ek, idx, ram_len);
    }
    if (r == 0) {
        r = load_segments(&d, ek, idx, head, head_len, scratch, ram, pl->unpacked_size);
    }
    free(scratch);
    dec_free(&d);
    return r;
}
