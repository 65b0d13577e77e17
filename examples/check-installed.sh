#!/bin/sh
# check-installed.sh MESON BUILDDIR EXAMPLESDIR FILE.c...
# Install the build into a temporary directory, then compile and link every
# example with `cc FILE $(pkg-config --cflags --libs vmmkit)` against that
# copy alone; run glib-loop from it.  Fails if any step fails.  $CC (default
# cc) may add flags, e.g. the sanitizers the library was built with.
set -eu
meson=$1 build=$2 src=$3
shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$meson" install -C "$build" --no-rebuild --quiet --destdir "$tmp/root"
pc=$(find "$tmp/root" -name vmmkit.pc | head -n 1)
[ -n "$pc" ] || { echo "no vmmkit.pc installed"; exit 1; }
# The .pc names the final prefix: point a copy of it at the destdir (what
# installing with --prefix would have written).
mkdir "$tmp/pc"
sed "s|^prefix=|prefix=$tmp/root|" "$pc" > "$tmp/pc/vmmkit.pc"
export PKG_CONFIG_PATH="$tmp/pc"
flags=$(pkg-config --cflags --libs vmmkit)
case "$flags" in *"$tmp/root"*) ;; *) echo "pkg-config flags miss the install: $flags"; exit 1;; esac
libdir=$(pkg-config --variable=libdir vmmkit)
failed=0
for f in "$@"; do
  exe="$tmp/$(basename "$f" .c)"
  # shellcheck disable=SC2086 # CC and the flags are words
  if ${CC:-cc} -Wall -Wextra -Werror "$src/$f" $flags -o "$exe"; then
    echo "built $f against the installed library"
  else
    echo "FAILED to build $f against the installed library"; failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
# It runs with the installed library, not the build tree's.
LD_LIBRARY_PATH="$libdir" "$tmp/glib-loop"
ldd_out=$(LD_LIBRARY_PATH="$libdir" ldd "$tmp/glib-loop" | grep libvmmkit)
case "$ldd_out" in *"$tmp/root"*) echo "ran with $ldd_out" ;; *) echo "wrong library: $ldd_out"; exit 1;; esac
