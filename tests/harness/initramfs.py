"""A gzip'd cpio (newc) initramfs written directly, without a staging tree.

Holds busybox, the kvm modules, the test programs with the shared libraries
`ldd` lists, each test's extra files, and an /init shell script that loads
the modules, runs every program under its own timeout and prints a marker
line around each so the host can map results back (see vmrun.py).
"""

import gzip
import hashlib
import os
import shlex
import stat
import subprocess

MARK = '@@VMMKIT@@'
LIBDIR = '/lib/x86_64-linux-gnu'


class InitramfsError(Exception):
    pass


class Cpio:
    """Collects entries; parent directories are added on demand."""

    def __init__(self):
        self._out = bytearray()
        self._dirs = set()
        self._files = set()
        self._ino = 1

    def _header(self, name, mode, size, nlink=1):
        name_b = name.encode() + b'\0'
        fields = [self._ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name_b), 0]
        self._ino += 1
        hdr = b'070701' + b''.join(b'%08X' % v for v in fields)
        self._out += hdr + name_b
        self._out += b'\0' * (-len(self._out) % 4)

    def _parents(self, path):
        parts = path.strip('/').split('/')[:-1]
        for i in range(1, len(parts) + 1):
            self.dir('/'.join(parts[:i]))

    def dir(self, path, mode=0o755):
        path = path.strip('/')
        if not path or path in self._dirs:
            return
        self._parents(path)
        self._dirs.add(path)
        self._header(path, stat.S_IFDIR | mode, 0, 2)

    def file(self, path, data, mode=0o644):
        path = path.strip('/')
        if path in self._files:
            return
        self._parents(path)
        self._files.add(path)
        self._header(path, stat.S_IFREG | mode, len(data))
        self._out += data
        self._out += b'\0' * (-len(self._out) % 4)

    def symlink(self, path, target):
        path = path.strip('/')
        self._parents(path)
        self._files.add(path)
        data = target.encode()
        self._header(path, stat.S_IFLNK | 0o777, len(data))
        self._out += data
        self._out += b'\0' * (-len(self._out) % 4)

    def finish(self, level=1):
        self._header('TRAILER!!!', 0, 0)
        return gzip.compress(bytes(self._out), compresslevel=level)


def shared_libraries(program):
    """[(path inside, host path)] for what the dynamic loader will map."""
    p = subprocess.run(['ldd', program], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=dict(os.environ, LD_PRELOAD=''))
    if p.returncode != 0:
        if 'not a dynamic executable' in p.stdout or 'statically linked' in p.stdout:
            return []
        raise InitramfsError('ldd %s: %s' % (program, p.stdout.strip()))
    libs = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if '=>' in line:
            soname, rest = [s.strip() for s in line.split('=>', 1)]
            host = rest.split(' (')[0].strip()
            if host == 'not found' or not host:
                raise InitramfsError('ldd %s: %s not found' % (program, soname))
            libs.append((LIBDIR + '/' + soname, host))
        elif line.startswith('/'):
            host = line.split(' (')[0].strip()
            libs.append((host, host))      # the dynamic loader, at its own path
    return libs


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


def _is_elf(path):
    with open(path, 'rb') as f:
        return f.read(4) == b'\x7fELF'


def _env_lines(env):
    return ''.join('export %s=%s\n' % (k, shlex.quote(v)) for k, v in sorted(env.items()))


INIT_HEAD = r'''#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=%(libdir)s HOME=/tmp TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/shm /dev/pts && mount -t tmpfs tmpfs /dev/shm && mount -t devpts devpts /dev/pts
M=%(mark)s
up() { read u _ < /proc/uptime; echo $u; }
fatal() {
    echo "$M fatal $*"
    dmesg | tail -n 40 | sed "s/^/$M dmesg /"
    echo "$M poweroff"
    poweroff -f
}
echo "$M booted $(up)"
'''

INIT_TEST = r'''
run_test() {
    idx=$1; t=$2; shift 2
    read b _ < /proc/uptime
    echo "$M begin $idx $b"
    if cd /t/$idx; then
        timeout -s KILL $t "$@" </dev/null 2>&1
        rc=$?
    else
        rc=127
    fi
    read e _ < /proc/uptime
    echo "$M end $idx $rc $b $e"
}
'''


def init_script(modules, tests, env):
    """The /init: modules is [name], tests is [(idx, timeout, argv, env)]."""
    s = INIT_HEAD % {'libdir': LIBDIR, 'mark': MARK}
    for name in modules:
        s += 'insmod /modules/%s.ko || fatal "insmod %s failed: exit status $?"\n' % (name, name)
    s += '[ -c /dev/kvm ] || fatal "no /dev/kvm after loading %s"\n' % ' '.join(modules)
    s += 'echo 1 > /proc/sys/kernel/printk\n'
    s += _env_lines(env)
    s += 'echo "$M ready $(up)"\n'
    s += INIT_TEST
    for idx, timeout, argv, tenv in tests:
        line = 'run_test %d %d %s' % (idx, timeout, ' '.join(shlex.quote(a) for a in argv))
        if tenv:
            line = '( export %s; %s )' % (
                ' '.join('%s=%s' % (k, shlex.quote(v)) for k, v in sorted(tenv.items())), line)
        s += line + '\n'
    s += 'echo "$M done $(up)"\npoweroff -f\n'
    return s


PIECE_MIN = 4 << 20     # files this big from the kernel cache ship as cached pieces


def _cached_piece(host, cache_dir):
    """A gzip'd cpio holding just `host` at files/<key>/<name>, compressed once
    and cached (the kernel unpacks concatenated archives): the 66 MB vmlinux
    costs ≈4 s of gzip otherwise.  Returns (path inside, archive bytes)."""
    st = os.stat(host)
    ident = '%s %d %d' % (os.path.realpath(host), st.st_size, st.st_mtime_ns)
    key = hashlib.sha1(ident.encode()).hexdigest()[:16]
    inside = 'files/%s/%s' % (key, os.path.basename(host))
    path = os.path.join(cache_dir, key + '.cpio.gz')
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        c = Cpio()
        c.file(inside, _read(host), 0o644)
        tmp = '%s.tmp%d' % (path, os.getpid())
        with open(tmp, 'wb') as f:
            f.write(c.finish())
        os.rename(tmp, path)
    return '/' + inside, _read(path)


def build(kernel, tests, env, module_names):
    """Gzip'd cpio bytes. tests: list of dicts with idx, timeout, exe, args,
    files [(name, host path)], env."""
    c = Cpio()
    pieces = []
    piece_dir = os.path.join(kernel.tree, '.pieces')
    for d in ('bin', 'dev', 'proc', 'sys', 'tmp', 'modules', 't', 'lib64', LIBDIR):
        c.dir(d)
    c.file('bin/busybox', _read('/bin/busybox'), 0o755)
    modules = kernel.load_order(module_names)
    for name, image in modules:
        c.file('modules/%s.ko' % name, image)
    entries, libs_of = [], {}
    for t in tests:
        base = '/t/%d' % t['idx']
        c.dir(base)
        exe = os.path.realpath(t['exe'])
        c.file(base + '/' + os.path.basename(exe), _read(exe), 0o755)
        if exe not in libs_of:
            libs_of[exe] = shared_libraries(exe) if _is_elf(exe) else []
            for inside, host in libs_of[exe]:
                c.file(inside, _read(host), 0o755)
        for name, host in t['files']:
            if os.path.realpath(host).startswith(os.path.realpath(kernel.tree) + '/') and \
                    os.path.getsize(host) >= PIECE_MIN:
                inside, piece = _cached_piece(host, piece_dir)
                pieces.append(piece)
                c.symlink(base + '/' + name, inside)
            else:
                c.file(base + '/' + name, _read(host),
                       0o755 if os.access(host, os.X_OK) else 0o644)
        argv = ['./' + os.path.basename(exe)] + t['args']
        entries.append((t['idx'], t['timeout'], argv, t['env']))
    c.file('init', init_script([m for m, _ in modules], entries, env).encode(), 0o755)
    return c.finish() + b''.join(pieces)
