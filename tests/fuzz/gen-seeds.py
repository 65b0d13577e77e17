#!/usr/bin/env python3
"""Write the hand-made seed inputs of the fuzz corpora (the fuzzers add
their own finds next to them).  Layout: see fuzz-virtqueue.c."""
import os
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))


class Mem:
    def __init__(self):
        self.b = bytearray(0x3000)

    def put(self, off, data):
        if off + len(data) > len(self.b):
            self.b.extend(bytes(off + len(data) - len(self.b)))
        self.b[off:off + len(data)] = data

    def desc(self, i, addr, ln, flags, nxt, table=0):
        self.put(table + 16 * i, struct.pack('<QIHH', addr, ln, flags, nxt))

    def avail(self, heads, qsize, used_event=0):
        self.put(0x1000, struct.pack('<HH', 0, len(heads)))
        for i, h in enumerate(heads):
            self.put(0x1004 + 2 * i, struct.pack('<H', h))
        self.put(0x1004 + 2 * qsize, struct.pack('<H', used_event))


NEXT, WRITE, INDIRECT = 1, 2, 4


def write(target, name, flags, mem, prefix=b''):
    d = os.path.join(here, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'seed-' + name), 'wb') as f:
        f.write(bytes([flags]) + prefix + bytes(mem.b))


def vq_seeds():
    m = Mem()                       # qsize 16: byte0 bits 4-6 = 3
    m.desc(0, 0x4000, 16, NEXT, 1)
    m.desc(1, 0x5000, 64, WRITE, 0)
    m.avail([0], 16)
    write('virtqueue', 'simple', 0x30, m)
    m = Mem()
    m.desc(0, 0x6000, 48, INDIRECT, 0)
    m.desc(0, 0x4000, 8, NEXT, 1, table=0x6000)
    m.desc(1, 0x4100, 8, NEXT, 2, table=0x6000)
    m.desc(2, 0x5000, 32, WRITE, 0, table=0x6000)
    m.avail([0], 16)
    write('virtqueue', 'indirect', 0x31, m)
    m = Mem()
    for i in range(8):
        m.desc(2 * i, 0x4000 + 0x100 * i, 16, NEXT, 2 * i + 1)
        m.desc(2 * i + 1, 0x21000 - 8, 16, WRITE, 0)     # ROM/RAM edge
    m.avail([2 * i for i in range(8)], 16, used_event=3)
    write('virtqueue', 'event-idx-batch', 0x33, m)
    m = Mem()
    m.desc(0, 0x4000, 16, NEXT, 0)                       # loop
    m.avail([0], 16)
    write('virtqueue', 'loop', 0x30, m)


def blk_req(hdr_type, sector, data_len, data_write, extra=b''):
    m = Mem()
    m.put(0x4000, struct.pack('<IIQ', hdr_type, 0, sector))
    m.put(0x4010, extra)
    n = 0
    m.desc(n, 0x4000, 16, NEXT, n + 1); n += 1
    if data_len:
        m.desc(n, 0x4010 if not data_write else 0x8000, data_len,
               NEXT | (WRITE if data_write else 0), n + 1); n += 1
    m.desc(n, 0x5000, 1, WRITE, 0)
    m.avail([0], 16)
    return m


def blk_seeds():
    write('virtio-blk-req', 'read', 0x00, blk_req(0, 8, 4096, True))
    write('virtio-blk-req', 'write', 0x00, blk_req(1, 16, 512, False))
    write('virtio-blk-req', 'flush', 0x00, blk_req(4, 0, 0, False))
    write('virtio-blk-req', 'get-id', 0x00, blk_req(8, 0, 20, True))
    seg = struct.pack('<QII', 64, 8, 0)
    write('virtio-blk-req', 'discard', 0x04, blk_req(11, 0, 16, False, seg))
    seg = struct.pack('<QII', 64, 8, 1)
    write('virtio-blk-req', 'write-zeroes', 0x04, blk_req(13, 0, 16, False, seg))
    write('virtio-blk-req', 'read-past-end', 0x00, blk_req(0, 2047, 1024, True))
    write('virtio-blk-req', 'write-ro', 0x02, blk_req(1, 0, 512, False))
    write('virtio-blk-req', 'unaligned-4k', 0x08, blk_req(0, 1, 4096, True))


def net_tx_seeds():
    m = Mem()                                            # header + frame at once
    m.desc(0, 0x4000, 12 + 60, 0, 0)
    m.avail([0], 16)
    write('virtio-net-tx', 'one', 0x00, m)
    m = Mem()                                            # header apart, two frames
    m.desc(0, 0x4000, 12, NEXT, 1)
    m.desc(1, 0x4100, 1514, 0, 0)
    m.desc(2, 0x5000, 12, NEXT, 3)
    m.desc(3, 0x5100, 200, 0, 0)
    m.avail([0, 2], 16)
    write('virtio-net-tx', 'split', 0x02, m)
    m = Mem()                                            # header in pieces
    m.desc(0, 0x6000, 48, INDIRECT, 0)
    m.desc(0, 0x4000, 5, NEXT, 1, table=0x6000)
    m.desc(1, 0x4010, 7, NEXT, 2, table=0x6000)
    m.desc(2, 0x4100, 100, 0, 0, table=0x6000)
    m.avail([0], 16)
    write('virtio-net-tx', 'indirect', 0x01, m)
    m = Mem()
    m.desc(0, 0x4000, 11, 0, 0)                          # shorter than the header
    m.avail([0], 16)
    write('virtio-net-tx', 'short', 0x00, m)
    m = Mem()
    m.desc(0, 0x4000, 12, NEXT, 1)
    m.desc(1, 0x5000, 64, WRITE, 0)                      # writable in a tx chain
    m.avail([0], 16)
    write('virtio-net-tx', 'writable', 0x00, m)


def net_rx_seeds():
    def bufs(n, ln, flags=WRITE):
        m = Mem()
        for i in range(n):
            m.desc(i, 0x4000 + 0x1000 * i, ln, flags, 0)
        m.avail(list(range(n)), 16)
        return m
    le = lambda v: struct.pack('<H', v)
    write('virtio-net-rx', 'one', 0x00, bufs(4, 2048), le(12 + 100))
    write('virtio-net-rx', 'mrg', 0x04, bufs(8, 1024), le(12 + 3000))
    write('virtio-net-rx', 'mrg-too-few', 0x04, bufs(2, 1024), le(12 + 3000))
    write('virtio-net-rx', 'too-large', 0x00, bufs(2, 200), le(12 + 600))
    write('virtio-net-rx', 'tso-mrg', 0x06, bufs(16, 4096), le(65535))
    write('virtio-net-rx', 'readable', 0x00, bufs(1, 2048, 0), le(12 + 60))
    write('virtio-net-rx', 'short', 0x04, bufs(1, 8), le(12 + 60))
    m = Mem()
    m.desc(0, 0x6000, 32, INDIRECT, 0)
    m.desc(0, 0x4000, 6, NEXT | WRITE, 1, table=0x6000)  # header split
    m.desc(1, 0x4010, 1600, WRITE, 0, table=0x6000)
    m.avail([0], 16)
    write('virtio-net-rx', 'indirect', 0x01, m, le(12 + 1500))
def snap_file(version=2, cpus=1, serial=None, vpci=None, ram_off=8192,
              ram=32 << 20, drop=None):
    """A snapshot file's start (layout: src/machine/snapshot-format.h); the
    fuzz target sees zeros after it."""
    import zlib
    recs = [(1, i, bytes(range(100))) for i in range(cpus)]
    recs.append((2, 0, bytes(64)))
    if serial is None:
        serial = bytes([0, 0, 3, 0, 0x60, 0xb0, 0, 0x0c, 0, 0, 0, 0]) + bytes(64) + bytes(4)
    recs.append((3, 0, serial))
    if vpci is None:
        cfg = bytearray(256)
        cfg[0:4] = struct.pack('<HH', 0x1af4, 0x1042)
        body = struct.pack('<I', 1) + bytes(cfg) + struct.pack('<IIQHHBBBB', 0, 0, 0, 0xffff,
                                                                 0, 0, 0, 0, 0)
        body += struct.pack('<HHIQQQ', 256, 0xffff, 0, 0, 0, 0)
        body += bytes(2 * 16) + bytes(16)
        vpci = body
    recs.append((4, 0, vpci))
    if drop is not None:
        del recs[drop]
    pos = 4096
    secs = []
    data = b''
    for t, i, b in recs:
        secs.append(struct.pack('<IIQQII', t, i, pos, len(b), zlib.crc32(b), 0))
        data += b
        pos += len(b)
    secs.append(struct.pack('<IIQQII', 5, 0, ram_off, ram, 0, 0))
    cfg = struct.pack('<QII8HII', ram, cpus, 1, 2, 0, 0, 0, 0, 0, 0, 0, 100, 4096)
    if version >= 2:                    # the TSC rate (kHz) and a reserved word
        cfg += struct.pack('<II', 2500000, 0)
    hdr = bytearray(4096)
    hdr[0:24] = b'VMMKSNAP' + struct.pack('<IIII', version, 4096, 0, len(secs))
    hdr[24:24 + len(cfg)] = cfg
    off = 24 + len(cfg)
    for sec in secs:
        hdr[off:off + 32] = sec
        off += 32
    hdr[16:20] = struct.pack('<I', zlib.crc32(bytes(hdr)))
    return bytes(hdr) + data


def snap_seeds():
    d = os.path.join(here, 'corpus', 'snapshot')
    os.makedirs(d, exist_ok=True)

    def put(name, b):
        with open(os.path.join(d, 'seed-' + name), 'wb') as f:
            f.write(b)
    put('valid', snap_file())
    put('two-cpus', snap_file(cpus=2))
    put('version-1', snap_file(version=1))
    put('version-3', snap_file(version=3))
    put('truncated-header', snap_file()[:1000])
    put('no-serial', snap_file(drop=2))
    put('ram-unaligned', snap_file(ram_off=8200))
    put('ram-beyond', snap_file(ram=1 << 40))
    bad = bytearray(snap_file())
    bad[4096 + 5] ^= 1
    put('bad-record-crc', bytes(bad))
    bad = bytearray(snap_file())
    bad[70] ^= 1
    put('bad-header-crc', bytes(bad))
    put('serial-fifo-overrun', snap_file(serial=bytes(12) + bytes(64) + bytes([63, 64, 0, 0])))


def vpci_seeds():
    """Register sequences a driver writes (layout: see fuzz-virtio-pci.c)."""
    d = os.path.join(here, 'corpus', 'virtio-pci')
    os.makedirs(d, exist_ok=True)
    sz = {1: 0, 2: 1, 4: 2, 8: 3}

    def op(kind, size, off, val=0, read=False):
        return struct.pack('<BBHQ', kind, sz[size] | (4 if read else 0), off, val)

    def cfg(reg, size, val):      # config write through 0xCF8/0xCFC (slot 1)
        return op(4, 4, 8, reg & 0xfc) + op(4, size, reg & 3, val)

    bringup = (cfg(0x04, 2, 6) + cfg(0x42, 2, 0x8000) +
               op(3, 4, 0, 0xfee00000) + op(3, 4, 8, 0x30) + op(3, 4, 12, 0) +
               op(1, 1, 0x14, 1) + op(1, 1, 0x14, 3) + op(1, 4, 0x0c, 0) +
               op(1, 4, 0x08, 1) + op(1, 4, 0x0c, 1) + op(1, 1, 0x14, 0xb) +
               op(1, 2, 0x16, 0) + op(1, 2, 0x1a, 0) + op(1, 2, 0x18, 16) +
               op(1, 8, 0x20, 0x10000) + op(1, 8, 0x28, 0x11000) +
               op(1, 4, 0x30, 0x12000) + op(1, 4, 0x34, 0) + op(1, 2, 0x1c, 1) +
               op(1, 1, 0x14, 0xf))
    seeds = {
        'bringup': bringup,
        'bringup-kick-irq': bringup + op(1, 2, 0x3000, 0) + op(5, 1, 0, 0) +
                            op(5, 1, 0, 1) + op(0, 1, 0x1000, read=True),
        'msix-masked-then-unmasked': bringup + op(3, 4, 12, 1) + op(5, 1, 0, 0) +
                                     op(2, 8, 0x800, read=True) + op(3, 4, 12, 0),
        # What a guest writes must not make its machine's state unloadable.
        'queue-size-3': op(1, 2, 0x16, 1) + op(1, 2, 0x18, 3) + op(1, 2, 0x1c, 1),
        'queue-sel-high': op(1, 2, 0x16, 0x1234),
        'devcfg-odd': op(0, 2, 0x2001) + op(1, 4, 0x200a, 0x11223344) +
                      op(0, 8, 0x2008),
        'bar-moved': bringup + cfg(0x10, 4, 0xffffffff) + cfg(0x10, 4, 0xd0000000) +
                     cfg(0x04, 2, 0) + cfg(0x04, 2, 6),
        'reset': bringup + op(1, 1, 0x14, 0) + op(1, 2, 0x3004, 1),
    }
    for name, b in seeds.items():
        with open(os.path.join(d, 'seed-' + name), 'wb') as f:
            f.write(b)


vq_seeds()
blk_seeds()
net_tx_seeds()
net_rx_seeds()
snap_seeds()
vpci_seeds()
