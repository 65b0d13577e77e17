#!/bin/sh
# fire.sh LIB PROGRAM: attach perf to the bh_dispatch probe of LIB, run
# PROGRAM (which uses LIB's event loop) under perf record, and require at
# least one hit.  Skips (77), saying why, where perf or uprobes cannot run.
lib=$1 prog=$2
skip() { echo "SKIP: $*"; exit 77; }
command -v perf >/dev/null 2>&1 || skip "perf is not installed (Debian package linux-perf)"
[ "$(id -u)" = 0 ] || skip "perf probe needs root"
# perf places probes through tracefs: mount it for the test if nobody has.
mounted=
if [ ! -e /sys/kernel/tracing/uprobe_events ] && [ -d /sys/kernel/tracing ] &&
   ! grep -q ' /sys/kernel/tracing ' /proc/mounts; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null && mounted=1
fi
unmount() { [ -z "$mounted" ] || umount /sys/kernel/tracing; }
[ -e /sys/kernel/tracing/uprobe_events ] || [ -e /sys/kernel/debug/tracing/uprobe_events ] ||
  { unmount; skip "no uprobe_events in tracefs (cannot mount tracefs, or a kernel without CONFIG_UPROBE_EVENTS)"; }
readelf -n "$lib" | grep -q 'Name: bh_dispatch' ||
  { unmount; skip "the library has no probes (built without sys/sdt.h)"; }
tmp=$(mktemp -d)
cleanup() { perf probe -q -d 'sdt_vmmkit:bh_dispatch' >/dev/null 2>&1; rm -rf "$tmp"; unmount; }
trap cleanup EXIT
export PERF_BUILDID_DIR="$tmp/buildid"
perf buildid-cache --add "$lib" || { echo "perf buildid-cache failed"; exit 1; }
perf probe -q -d 'sdt_vmmkit:bh_dispatch' >/dev/null 2>&1
perf probe -x "$lib" sdt_vmmkit:bh_dispatch || { echo "perf probe could not place the probe"; exit 1; }
perf record -q -o "$tmp/perf.data" -e sdt_vmmkit:bh_dispatch -- "$prog" || { echo "perf record failed"; exit 1; }
hits=$(perf script -i "$tmp/perf.data" 2>/dev/null | grep -c bh_dispatch)
echo "bh_dispatch fired $hits times"
[ "$hits" -gt 0 ]
