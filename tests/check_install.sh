#!/bin/sh
# What a user of an installed cio sees, checked: `make install` into a
# staging DESTDIR, then an outside program (examples/cake.c, compiled as a
# user would, -std=c11) built three ways - pkg-config shared, pkg-config
# static, CMake find_package - and run; the soname; the exported symbols
# against the header's CIO_API declarations; every example compiled
# standalone; `make uninstall` leaving nothing behind.
# Usage: check_install.sh MAKE CC
set -u
make=${1:-make}
cc=${2:-cc}
top=$(pwd)
stage=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$stage" "$work"' EXIT
prefix=/opt/cio
fails=0
passes=0
ok() { echo "ok   install: $1"; passes=$((passes + 1)); }
bad() { echo "FAIL install: $1"; fails=$((fails + 1)); }

$make --no-print-directory -s install DESTDIR="$stage" PREFIX=$prefix \
    >"$work/install.log" 2>&1 || { cat "$work/install.log"; bad "make install"; }
root=$stage$prefix
lib=$root/lib

# pkg-config reads the staged .pc files and prefixes their paths with the
# staging root, as a packager's build would; the system's own .pc files
# stay in reach for what cio.pc requires (openssl, in a TLS build).
system_pc=$(pkg-config --variable pc_path pkg-config)
pc() {
    PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_LIBDIR=$lib/pkgconfig:$system_pc \
        PKG_CONFIG_SYSROOT_DIR=$stage pkg-config "$@"
}

# Runs the command and matches its output with examples/cake.expected,
# whose lines are glob patterns (as examples/check.sh reads them).
expect_cake() {
    "$@" >"$work/out" 2>&1 && python3 -c '
import fnmatch, sys
exp = open(sys.argv[1]).read().splitlines()
got = open(sys.argv[2]).read().splitlines()
ok = len(exp) == len(got) and all(map(fnmatch.fnmatchcase, got, exp))
sys.exit(0 if ok else 1)' "$top/examples/cake.expected" "$work/out" && return 0
    cat "$work/out"
    return 1
}

[ "$(pc --modversion cio)" = "$(sed -n 's/^#define CIO_VERSION_STRING "\(.*\)"/\1/p' include/cio.h)" ] &&
    ok "cio.pc version" || bad "cio.pc version"

# Shared, through pkg-config; it runs with the staged library only.
if $cc -std=c11 -Wall -Werror examples/cake.c $(pc --cflags --libs cio) \
    -o "$work/cake_shared" 2>"$work/err" &&
    expect_cake env LD_LIBRARY_PATH="$lib" "$work/cake_shared"; then
    ok "pkg-config shared build runs"
else
    cat "$work/err"; bad "pkg-config shared build"
fi
needed=$(readelf -d "$work/cake_shared" 2>/dev/null | sed -n 's/.*NEEDED.*\[\(libcio[^]]*\)\].*/\1/p')
[ "$needed" = "libcio.so.$(sed -n 's/^#define CIO_VERSION_MAJOR \(.*\)/\1/p' include/cio.h)" ] &&
    ok "program needs the soname ($needed)" || bad "program's NEEDED is '$needed'"
soname=$(readelf -d "$lib/libcio.so" | sed -n 's/.*SONAME.*\[\(.*\)\].*/\1/p')
[ "$soname" = "$needed" ] && ok "library soname $soname" || bad "soname '$soname'"

# Static, through cio-static.pc: no libcio in NEEDED at all.
if $cc -std=c11 -Wall -Werror examples/cake.c $(pc --cflags --libs cio-static) \
    -o "$work/cake_static" 2>"$work/err" && expect_cake "$work/cake_static" &&
    ! readelf -d "$work/cake_static" | grep -q 'NEEDED.*libcio'; then
    ok "pkg-config static build runs, needs no libcio.so"
else
    cat "$work/err"; bad "pkg-config static build"
fi

# CMake, with find_package(cio) finding the staged package.
mkdir -p "$work/cm"
cp examples/cake.c "$work/cm/"
cat >"$work/cm/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.13)
project(cake C)
find_package(cio 0.1 REQUIRED)
add_executable(cake cake.c)
set_property(TARGET cake PROPERTY C_STANDARD 11)
target_link_libraries(cake PRIVATE cio::cio)
add_executable(cake_static cake.c)
target_link_libraries(cake_static PRIVATE cio::cio_static)
EOF
if cmake -S "$work/cm" -B "$work/cm/b" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_PREFIX_PATH="$root" >"$work/cmake.log" 2>&1 &&
    cmake --build "$work/cm/b" >>"$work/cmake.log" 2>&1 &&
    expect_cake env LD_LIBRARY_PATH="$lib" "$work/cm/b/cake" &&
    expect_cake "$work/cm/b/cake_static"; then
    ok "CMake find_package(cio) builds (shared and static) run"
else
    cat "$work/cmake.log"; bad "CMake build"
fi

# Exported symbols: exactly the header's CIO_API functions.
nm -D --defined-only "$lib/libcio.so" | awk '$2 == "T" || $2 == "D" || $2 == "B" {print $3}' |
    sort >"$work/exported"
tr '\n' ' ' <include/cio.h | grep -oE 'CIO_API[^;(]*\(' |
    grep -oE 'cio_[a-z0-9_]*[[:space:]]*\($' | tr -d ' (' | sort -u >"$work/declared"
if cmp -s "$work/exported" "$work/declared"; then
    ok "exported symbols = cio.h's CIO_API functions ($(wc -l <"$work/declared"))"
else
    diff "$work/declared" "$work/exported" | sed 's/^/    /'
    bad "exported symbols differ from cio.h (< declared only, > exported only)"
fi

# Every example compiles as a user's program would.
before=$fails
for e in examples/*.c; do
    $cc -std=c11 -Wall -Wextra -Werror -c "$e" $(pc --cflags cio) -o "$work/x.o" 2>"$work/err" ||
        { cat "$work/err"; bad "$e does not build standalone with -std=c11"; }
done
[ "$fails" -eq "$before" ] && ok "examples build standalone (-std=c11 -Wall -Wextra -Werror)"

$make --no-print-directory -s uninstall DESTDIR="$stage" PREFIX=$prefix >/dev/null 2>&1
left=$(find "$stage" -type f -o -type l | wc -l)
[ "$left" -eq 0 ] && ok "uninstall removes every file" ||
    { find "$stage" -type f -o -type l; bad "uninstall left $left files"; }

echo "install: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
