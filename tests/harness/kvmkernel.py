"""Debian's kernel for the emulated machine: fetch, cache, resolve modules.

The kernel package is fetched with `apt-get download` (never installed) and
extracted with `dpkg-deb -x` into a cache that survives `rm -rf build`:
    $VMMKIT_CACHE_DIR, else /var/cache/vmmkit (when writable), else
    ~/.cache/vmmkit; the tree lives in kernel/<package>_<version>/.
VMMKIT_KERNEL_DIR=<tree> uses an already extracted tree (boot/vmlinuz-*,
lib/modules/<release>/) instead.
"""

import fcntl
import gzip
import lzma
import os
import shutil
import struct
import subprocess
import tempfile

META_PACKAGE = 'linux-image-amd64'
# Modules that give /dev/kvm on the emulated AMD CPU (SVM), with their
# dependencies found from each module's .modinfo "depends=" entry.
KVM_MODULES = ['kvm-amd']


class KernelError(Exception):
    pass


def cache_root():
    env = os.environ.get('VMMKIT_CACHE_DIR')
    if env:
        return env
    sys_dir = '/var/cache/vmmkit'
    try:
        os.makedirs(sys_dir, exist_ok=True)
        if os.access(sys_dir, os.W_OK):
            return sys_dir
    except OSError:
        pass
    return os.path.join(os.path.expanduser('~'), '.cache', 'vmmkit')


def _run(cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, text=True)
    if p.returncode != 0:
        raise KernelError('%s failed (%d): %s' % (' '.join(cmd), p.returncode,
                                                  p.stderr.strip()[-800:]))
    return p.stdout


def _wanted_package_cached(kdir):
    """_wanted_package(), remembered until apt's package lists change
    (each apt-cache call costs ≈0.8 s)."""
    try:
        stamp = '%d' % os.stat('/var/lib/apt/lists').st_mtime_ns
    except OSError:
        stamp = 'none'
    key = '%s %s' % (stamp, os.environ.get('VMMKIT_KERNEL_PACKAGE', ''))
    memo = os.path.join(kdir, '.wanted')
    try:
        with open(memo) as f:
            k, name, version = f.read().split('\n')[:3]
        if k == key:
            return name, version
    except (OSError, ValueError):
        pass
    try:
        name, version = _wanted_package()
    except KernelError:
        if os.geteuid() != 0:
            raise
        # A machine whose package lists were never fetched (or were cleaned,
        # as container images do): fetch them once and ask again.
        _run(['apt-get', 'update', '-qq'])
        name, version = _wanted_package()
    with open(memo + '.tmp', 'w') as f:
        f.write('%s\n%s\n%s\n' % (key, name, version))
    os.rename(memo + '.tmp', memo)
    return name, version


def _wanted_package():
    """(package, version) of the versioned kernel image apt would install."""
    name = os.environ.get('VMMKIT_KERNEL_PACKAGE')
    if not name:
        for line in _run(['apt-cache', 'depends', META_PACKAGE]).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == 'Depends:' and \
                    parts[1].startswith('linux-image-'):
                name = parts[1]
                break
    if not name:
        raise KernelError('apt-cache names no kernel behind ' + META_PACKAGE)
    for line in _run(['apt-cache', 'show', '--no-all-versions', name]).splitlines():
        if line.startswith('Version:'):
            return name, line.split(None, 1)[1].strip()
    raise KernelError('apt-cache shows no version of ' + name)


def _cached_trees(kdir):
    out = []
    if os.path.isdir(kdir):
        for d in sorted(os.listdir(kdir)):
            if os.path.exists(os.path.join(kdir, d, '.complete')):
                out.append(os.path.join(kdir, d))
    return out


def _extract(kdir, name, version, log):
    tmp = tempfile.mkdtemp(prefix='.fetch-', dir=kdir)
    try:
        log('kernel: apt-get download %s=%s' % (name, version))
        _run(['apt-get', 'download', '-q', '%s=%s' % (name, version)], cwd=tmp)
        debs = [f for f in os.listdir(tmp) if f.endswith('.deb')]
        if len(debs) != 1:
            raise KernelError('apt-get download left %r' % debs)
        log('kernel: dpkg-deb -x ' + debs[0])
        tree = os.path.join(tmp, 'tree')
        _run(['dpkg-deb', '-x', os.path.join(tmp, debs[0]), tree])
        os.unlink(os.path.join(tmp, debs[0]))
        open(os.path.join(tree, '.complete'), 'w').close()
        final = os.path.join(kdir, '%s_%s' % (name, version.replace(':', '%3a')))
        os.rename(tree, final)
        _prune_trees(kdir, final, log)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _prune_trees(kdir, keep, log):
    """Keep the new tree and the one before it (≈400 MB each)."""
    trees = sorted(_cached_trees(kdir), key=os.path.getmtime)
    for old in [t for t in trees if t != keep][:-1]:
        log('kernel: removing old %s' % old)
        shutil.rmtree(old, ignore_errors=True)


def kernel_tree(log=lambda s: None):
    """Path of an extracted kernel package tree, fetching it if needed."""
    env = os.environ.get('VMMKIT_KERNEL_DIR')
    if env:
        return env
    kdir = os.path.join(cache_root(), 'kernel')
    os.makedirs(kdir, exist_ok=True)
    with open(os.path.join(kdir, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            name, version = _wanted_package_cached(kdir)
        except KernelError as e:
            trees = _cached_trees(kdir)
            if trees:       # offline: the newest cached one will do
                log('kernel: %s; using cached %s' % (e, trees[-1]))
                return trees[-1]
            raise
        final = os.path.join(kdir, '%s_%s' % (name, version.replace(':', '%3a')))
        if os.path.exists(os.path.join(final, '.complete')):
            return final
        return _extract(kdir, name, version, log)


class Kernel:
    """A kernel tree: its bzImage and its loadable modules."""

    def __init__(self, tree):
        self.tree = tree
        mods = os.path.join(tree, 'lib', 'modules')
        releases = sorted(os.listdir(mods)) if os.path.isdir(mods) else []
        boots = [f for f in os.listdir(os.path.join(tree, 'boot'))
                 if f.startswith('vmlinuz-')] if os.path.isdir(os.path.join(tree, 'boot')) else []
        if len(releases) != 1 or not boots:
            raise KernelError('%s: want one lib/modules/<release> and boot/vmlinuz-*' % tree)
        self.release = releases[0]
        self.moddir = os.path.join(mods, self.release)
        self.vmlinuz = os.path.join(tree, 'boot', 'vmlinuz-' + self.release)
        if not os.path.exists(self.vmlinuz):
            self.vmlinuz = os.path.join(tree, 'boot', sorted(boots)[-1])
        self._index = None
        self._pvh = False

    def pvh_vmlinux(self):
        """The uncompressed vmlinux, when it has a PVH entry point, else None.
        Booting it skips the bzImage's in-guest decompression (≈3 s under
        emulation).  Extracted once, cached beside the bzImage."""
        if self._pvh is not False:
            return self._pvh
        path = os.path.join(os.path.dirname(self.vmlinuz), 'vmlinux-%s.pvh' % self.release)
        if not os.path.exists(path):
            with open(os.path.join(os.path.dirname(path), '.pvh.lock'), 'w') as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not os.path.exists(path):
                    _write_pvh_vmlinux(self.vmlinuz, path)
        self._pvh = path if os.path.getsize(path) > 0 else None
        return self._pvh

    def _module_index(self):
        if self._index is None:
            self._index = {}
            for dirpath, _, names in os.walk(self.moddir):
                for n in names:
                    base = _module_name(n)
                    if base:
                        self._index[base] = os.path.join(dirpath, n)
        return self._index

    def module_image(self, name):
        """The uncompressed .ko bytes of module `name` (- or _ alike)."""
        path = self._module_index().get(name.replace('-', '_'))
        if path is None:
            raise KernelError('kernel %s has no module %s' % (self.release, name))
        return _decompress(path)

    def load_order(self, names):
        """Modules to insmod, dependencies first, as (name, bytes)."""
        order, seen = [], set()

        def visit(n, depth):
            key = n.replace('-', '_')
            if key in seen:
                return
            if depth > 32:
                raise KernelError('module dependency loop at ' + n)
            image = self.module_image(key)
            for dep in _modinfo_depends(image):
                visit(dep, depth + 1)
            seen.add(key)
            order.append((key, image))
        for n in names:
            visit(n, 0)
        return order


def _module_name(filename):
    for suffix in ('.ko', '.ko.xz', '.ko.zst', '.ko.gz'):
        if filename.endswith(suffix):
            return filename[:-len(suffix)].replace('-', '_')
    return None


def _decompress(path):
    with open(path, 'rb') as f:
        data = f.read()
    if path.endswith('.xz'):
        return lzma.decompress(data)
    if path.endswith('.gz'):
        return gzip.decompress(data)
    if path.endswith('.zst'):
        p = subprocess.run(['zstd', '-d', '-c', '-q', path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise KernelError('zstd -d %s: %s' % (path, p.stderr.decode(errors='replace')))
        return p.stdout
    return data


def _modinfo_depends(image):
    """Names in the module's .modinfo "depends=a,b" string."""
    i = image.find(b'\0depends=')
    if i < 0:
        return []
    start = i + len(b'\0depends=')
    value = image[start:image.index(b'\0', start)].decode()
    return [d for d in value.split(',') if d]


def _bzimage_payload(data):
    """The decompressed kernel ELF inside a bzImage, or None."""
    for magic, kind in ((b'\xfd7zXZ\x00', 'xz'), (b'\x28\xb5\x2f\xfd', 'zstd'),
                        (b'\x1f\x8b\x08\x00', 'gzip')):
        i = data.find(magic)
        if i < 0:
            continue
        try:
            if kind == 'xz':
                out = lzma.LZMADecompressor().decompress(data[i:])
            elif kind == 'gzip':
                d = gzip.zlib.decompressobj(16 + 15)
                out = d.decompress(data[i:])
            else:
                out = subprocess.run(['zstd', '-d', '-c', '-q'], input=data[i:],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
        except (lzma.LZMAError, OSError, gzip.zlib.error):
            continue
        if out[:4] == b'\x7fELF':
            return out
    return None


def _has_pvh_note(elf):
    """True when an ELF64 has a Xen PHYS32_ENTRY note (QEMU's PVH boot)."""
    if elf[4] != 2:
        return False
    phoff, = struct.unpack_from('<Q', elf, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', elf, 0x36)
    for n in range(phnum):
        ptype, _, off, _, _, filesz = struct.unpack_from('<IIQQQQ', elf, phoff + n * phentsize)
        if ptype != 4:          # PT_NOTE
            continue
        pos, end = off, off + filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from('<III', elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b'\0')
            if name == b'Xen' and ntype == 18:
                return True
            pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return False


def _write_pvh_vmlinux(bzimage, path):
    """Write the PVH-bootable vmlinux to path, or an empty file if there is none."""
    with open(bzimage, 'rb') as f:
        elf = _bzimage_payload(f.read())
    if elf is None or not _has_pvh_note(elf):
        elf = b''
    tmp = path + '.tmp%d' % os.getpid()
    with open(tmp, 'wb') as f:
        f.write(elf)
    os.rename(tmp, path)
