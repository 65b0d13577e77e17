"""Boot the emulated machine once and collect each test program's result.

The guest's /init (initramfs.py) prints marker lines on the serial console:
    @@VMMKIT@@ booted <uptime>          kernel reached /init
    @@VMMKIT@@ ready <uptime>           modules loaded, /dev/kvm present
    @@VMMKIT@@ begin <idx> <uptime>     a program starts; its output follows
    @@VMMKIT@@ end <idx> <rc> <t0> <t1> it exited with status rc
    @@VMMKIT@@ fatal <message>          boot failed (then "dmesg" lines)
    @@VMMKIT@@ done <uptime>            every program ran
The host enforces its own deadlines too (boot, and each program's timeout
plus a grace period), so a hung emulated machine is killed and reported.
"""

import collections
import ctypes
import os
import signal
import select
import subprocess
import tempfile
import time

import initramfs

MARK = initramfs.MARK
QEMU = os.environ.get('VMMKIT_QEMU', 'qemu-system-x86_64')
GRACE_S = 30            # beyond a program's own timeout, for the guest to kill it
MAX_LINES = 50000       # output kept per program


def boot_timeout():
    return float(os.environ.get('VMMKIT_KVM_BOOT_TIMEOUT', '150'))


class TestResult:
    def __init__(self, idx):
        self.idx = idx
        self.output = []        # lines the program printed
        self.rc = None          # exit status; None when it did not finish
        self.elapsed = None     # seconds, guest clock
        self.message = None     # why it failed, when the harness knows


class Boot:
    def __init__(self):
        self.ready = False
        self.done = False
        self.fatal = None       # boot failure message
        self.dmesg = []
        self.console = collections.deque(maxlen=200)   # the console's last lines
        self.results = {}
        self.boot_s = None      # host seconds from qemu start to "ready"
        self.booted_s = None    # ... to /init
        self.done_s = None      # ... to "done"
        self.exit_s = None      # ... to qemu's exit
        self.wall_s = None
        self.current = None     # TestResult of the program running now


def _die_with_parent():
    """In the qemu child: SIGKILL it when the harness dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def qemu_command(vmlinuz, initrd, smp, mem, append=''):
    accel = 'tcg,thread=single' if smp > 1 else 'tcg'
    cpu = os.environ.get('VMMKIT_QEMU_CPU', 'max')
    return [QEMU, '-accel', accel, '-cpu', cpu, '-m', str(mem), '-smp', str(smp),
            '-nographic', '-no-reboot', '-nic', 'none',
            '-kernel', vmlinuz, '-initrd', initrd,
            '-append', ('console=ttyS0 loglevel=1 panic=-1 ' + append).strip()]


def _handle_marker(boot, fields, prefix, t0, on_output):
    kind = fields[0] if fields else ''
    cur = boot.current
    if prefix and cur is not None:
        cur.output.append(prefix)
        on_output(cur.idx, prefix)
    if kind == 'booted':
        boot.booted_s = time.monotonic() - t0
    elif kind == 'ready':
        boot.ready = True
        boot.boot_s = time.monotonic() - t0
    elif kind == 'begin' and len(fields) >= 2:
        idx = int(fields[1])
        boot.current = boot.results.setdefault(idx, TestResult(idx))
    elif kind == 'end' and len(fields) >= 5 and cur is not None:
        cur.rc = int(fields[2])
        cur.elapsed = float(fields[4]) - float(fields[3])
        boot.current = None
    elif kind == 'fatal':
        boot.fatal = ' '.join(fields[1:])
    elif kind == 'dmesg':
        boot.dmesg.append(' '.join(fields[1:]))
    elif kind == 'done':
        boot.done = True
        boot.done_s = time.monotonic() - t0


def _feed_line(boot, line, t0, on_output):
    boot.console.append(line)
    i = line.find(MARK)
    if i >= 0:
        _handle_marker(boot, line[i + len(MARK):].split(), line[:i], t0, on_output)
    elif boot.current is not None:
        out = boot.current.output
        if len(out) < MAX_LINES:
            out.append(line)
        elif len(out) == MAX_LINES:
            out.append('[kvm-harness: output cut after %d lines]' % MAX_LINES)
        on_output(boot.current.idx, line)


def _deadline(boot, timeouts, t0, last_change):
    if not boot.ready:
        return t0 + boot_timeout()
    if boot.current is not None:
        return last_change + timeouts[boot.current.idx] + GRACE_S
    return last_change + GRACE_S


def _pump(proc, boot, timeouts, on_output, log):
    """Read the console until qemu exits or a deadline passes; False on timeout."""
    t0 = time.monotonic()
    buf = b''
    last_change, state = t0, None
    fd = proc.stdout.fileno()
    while True:
        st = (boot.ready, boot.current.idx if boot.current else None, len(boot.results))
        if st != state:
            state, last_change = st, time.monotonic()
        left = _deadline(boot, timeouts, t0, last_change) - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            if buf:
                _feed_line(boot, buf.decode(errors='replace').rstrip('\r'), t0, on_output)
            return True
        if log:
            log.write(chunk)
            log.flush()
        buf += chunk
        *lines, buf = buf.split(b'\n')
        for raw in lines:
            _feed_line(boot, raw.decode(errors='replace').rstrip('\r'), t0, on_output)


def _explain_timeout(boot, timeouts):
    if not boot.ready:
        boot.fatal = boot.fatal or ('the emulated machine did not become ready within '
                                    '%.0f s' % boot_timeout())
    elif boot.current is not None:
        cur = boot.current
        cur.message = ('hung: no result %d s after its %d s timeout; the emulated '
                       'machine stopped responding and was killed' %
                       (GRACE_S, timeouts[cur.idx]))


def run(kernel, tests, smp=1, mem=1024, env=None, modules=None, on_output=None,
        log_path=None, log=lambda s: None):
    """Boot once, run `tests` (see initramfs.build). Returns a Boot."""
    on_output = on_output or (lambda idx, line: None)
    modules = modules or []
    timeouts = {t['idx']: t['timeout'] for t in tests}
    boot = Boot()
    t_start = time.monotonic()
    image = initramfs.build(kernel, tests, env or {}, modules)
    log('initramfs: %d KiB built in %.2f s' % (len(image) // 1024, time.monotonic() - t_start))
    with tempfile.NamedTemporaryFile(prefix='vmmkit-initrd-', suffix='.cpio.gz') as f:
        f.write(image)
        f.flush()
        boot_image = kernel.vmlinuz
        if os.environ.get('VMMKIT_KVM_PVH', '1') != '0':
            boot_image = kernel.pvh_vmlinux() or kernel.vmlinuz
        cmd = qemu_command(boot_image, f.name, smp, mem)
        log('boot: ' + ' '.join(cmd))
        logf = open(log_path, 'wb') if log_path else None
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        t_qemu = time.monotonic()
        try:
            if not _pump(proc, boot, timeouts, on_output, logf):
                _explain_timeout(boot, timeouts)
            if boot.done:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            boot.exit_s = time.monotonic() - t_qemu
            if logf:
                logf.close()
    boot.wall_s = time.monotonic() - t_start
    if not boot.ready and not boot.fatal:
        boot.fatal = 'the emulated machine stopped before /init was ready (qemu exit %s)' % \
            proc.returncode
    return boot
