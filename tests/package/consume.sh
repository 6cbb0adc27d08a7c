#!/usr/bin/env bash
# An installed libhmaf, consumed as a program of one's own would
# (README, "Install and link"): installed to a fresh prefix, a small
# program built with pkg-config and with CMake's find_package (shared and
# static) runs against it, and so does the installed hmaf-bench; a project
# that builds libhmaf inside its own is configured; then the prefix is
# moved and pkg-config and hmaf-bench still find what they need.
# Usage: consume.sh BUILD_DIR THIS_DIR VERSION
set -euo pipefail
build=$1 here=$2 version=$3
for tool in cc pkg-config cmake; do
    command -v $tool >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
libdir=$(dirname "$(find "$work/prefix" -name hmaf.pc)")/..

echo "== pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -o "$work/consumer_pc" "$here/consumer/consumer.c" \
   $(pkg-config --cflags --libs hmaf) -Wl,-rpath,"$libdir"
"$work/consumer_pc" "$version"

echo "== find_package(hmaf)"
cmake -S "$here/consumer" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/prefix" \
      >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/consumer" "$version"
"$work/cmake/consumer_static" "$version"
if ldd "$work/cmake/consumer_static" | grep -q libhmaf; then
    echo "consumer_static links libhmaf.so"; exit 1
fi

echo "== add_subdirectory (configured: the names resolve, the library alone)"
cmake -S "$here/subproject" -B "$work/sub" -DHMAF_SOURCE="$here/../.." \
      >/dev/null
if [ -e "$work/sub/hmaf/tests" ] || [ -e "$work/sub/hmaf/tools" ] ||
   [ -e "$work/sub/hmaf/examples" ]; then
    echo "the subproject builds hmaf's tests, tools or examples"; exit 1
fi

echo "== moved"
mv "$work/prefix" "$work/elsewhere"
libdir=$(dirname "$(find "$work/elsewhere" -name hmaf.pc)")/..
export PKG_CONFIG_PATH=$libdir/pkgconfig
case "$(pkg-config --cflags hmaf)" in
    *"$work/elsewhere"*) ;;
    *) echo "hmaf.pc does not follow its prefix"; exit 1 ;;
esac
env -u LD_LIBRARY_PATH "$work/elsewhere/bin/hmaf-bench" --help >/dev/null
echo "consume: ok"
