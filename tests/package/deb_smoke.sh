#!/usr/bin/env bash
# The Debian packages (README, "Install and link"), installed on this
# machine and used: built with cpack from BUILD_DIR, a tree configured
# with -DCMAKE_INSTALL_PREFIX=/usr and built; they must hold everything
# the tree installs, once. Installed with apt-get, the system's libhmaf is
# found by pkg-config and find_package(hmaf) with no paths given, the
# small program of tests/package/consumer built both ways runs a host and
# a session against it, and the packaged tools answer. Then the packages
# are purged, with whatever apt-get installed for them, and nothing of
# hmaf may be left in /usr; the purge runs on every exit.
# It installs into /usr: root only, and not a ctest (docs/testing.md);
# .ci/run runs it. It refuses to start where hmaf is installed already.
# Usage: deb_smoke.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)

if ((EUID != 0)); then
    echo "SKIP: installs packages, needs root"; exit 77
fi
for tool in apt-get dpkg dpkg-shlibdeps file cpack cmake cc pkg-config; do
    command -v $tool >/dev/null || { echo "SKIP: no $tool"; exit 77; }
done
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
if [ "$prefix" != /usr ]; then
    echo "$build is configured for $prefix: packages are built from a tree"
    echo "configured with -DCMAKE_INSTALL_PREFIX=/usr"; exit 1
fi
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

work=$(mktemp -d)
packages=""
# The packages, and what apt-get set up for them (not what others on this
# machine install meanwhile).
purge() {
    [ -f "$work/apt.log" ] || return 0
    local names
    names=$( (printf '%s\n' $packages
              sed -n 's/^Setting up \([^: ]*\).*/\1/p' "$work/apt.log") |
            sort -u)
    rm -f "$work/apt.log"
    echo "== purge:" $names
    # shellcheck disable=SC2086
    dpkg --force-unsafe-io --purge $names >"$work/purge.log" 2>&1 ||
        { cat "$work/purge.log"; return 1; }
}
on_exit() {
    local status=$?
    purge || status=1
    rm -rf "$work"
    exit $status
}
trap on_exit EXIT
trap 'exit 1' INT TERM HUP

echo "== cpack -G DEB"
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/debs" \
      >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; exit 1; }
debs=("$work"/debs/*.deb)
for deb in "${debs[@]}"; do
    name=$(dpkg-deb -f "$deb" Package)
    packages+=" $name"
    echo "$(basename "$deb"): $(dpkg-deb -c "$deb" | grep -vc '/$') files;" \
         "Depends: $(dpkg-deb -f "$deb" Depends)"
    dpkg-deb -c "$deb" |
        awk '$6 ~ /^\.\/usr\/./ { sub(/^\.\/usr\//, "", $6); print $6 }' \
        >>"$work/paths"
done
grep -v '/$' "$work/paths" | sort >"$work/packaged"

# What of hmaf is in /usr: any path of the packages (not /usr/local: the
# packages never go there), any other package's file named so.
hmaf_in_usr() {
    local path
    grep hmaf "$work/paths" | sort -u | while read -r path; do
        if [ -e "/usr/$path" ] || [ -L "/usr/$path" ]; then
            echo "/usr/$path"
        fi
    done
    dpkg -S hmaf 2>/dev/null || true
}
if [ -n "$(hmaf_in_usr)" ]; then
    echo "hmaf is in /usr already; this test would remove it:"
    hmaf_in_usr; exit 1
fi

# The runtime package is named after the soname (libhmaf.so.0.1:
# libhmaf0.1); -dev and the tools ask for this very build of it.
soname=$(objdump -p "$build"/libhmaf.so | awk '$1 == "SONAME" { print $2 }')
runtime=libhmaf${soname#libhmaf.so.}
expect=$(printf '%s\n' "$runtime" libhmaf-dev hmaf-tools | sort)
if [ "$(printf '%s\n' $packages | sort)" != "$expect" ]; then
    echo "packages:$packages; expected: $(echo "$expect" | tr '\n' ' ')"; exit 1
fi
for deb in "$work"/debs/libhmaf-dev_*.deb "$work"/debs/hmaf-tools_*.deb; do
    case "$(dpkg-deb -f "$deb" Depends)" in
        *"$runtime (= $version-"*) ;;
        *) echo "$deb does not depend on $runtime of its own version"; exit 1 ;;
    esac
done

# Everything the tree installs is in one package, and only once.
cmake --install "$build" --prefix "$work/all" >/dev/null
(cd "$work/all" && find . ! -type d | sed 's|^\./||') | sort >"$work/tree"
if ! diff "$work/tree" "$work/packaged"; then
    echo "the packages' files differ from the tree's install (<: tree only,"
    echo ">: packages only or twice; an install rule without a component?)"
    exit 1
fi

echo "== apt-get install"
export DEBIAN_FRONTEND=noninteractive
: >"$work/apt.log"
# unsafe-io: no fsync per file; a crash here is a lost test run anyway.
apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-unsafe-io "${debs[@]}" \
        >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; exit 1; }
dpkg -L "$runtime" | grep -x "/usr/lib/$multiarch/$soname" >/dev/null ||
    { echo "$runtime has no /usr/lib/$multiarch/$soname"; exit 1; }
ldconfig -p | grep -E "$soname .*=> (/usr)?/lib/$multiarch/$soname" >/dev/null ||
    { echo "ld.so.cache has no $soname"; exit 1; }

echo "== pkg-config"
unset PKG_CONFIG_PATH LD_LIBRARY_PATH CMAKE_PREFIX_PATH
got=$(pkg-config --modversion hmaf)
[ "$got" = "$version" ] || { echo "pkg-config: hmaf $got"; exit 1; }
echo "hmaf.pc: $(pkg-config --cflags --libs hmaf)"
case "$(pkg-config --cflags --libs hmaf)" in
    */pkgconfig/..*) echo "hmaf.pc: not /usr's own paths"; exit 1 ;;
esac
cc -o "$work/consumer_pc" "$here/consumer/consumer.c" \
   $(pkg-config --cflags --libs hmaf)
ldd "$work/consumer_pc" | grep -E "$soname => (/usr)?/lib/$multiarch/$soname" >/dev/null ||
    { ldd "$work/consumer_pc"; echo "not the system's libhmaf"; exit 1; }
"$work/consumer_pc" "$version"

echo "== find_package(hmaf)"
cmake -S "$here/consumer" -B "$work/cmake" >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/consumer" "$version"
"$work/cmake/consumer_static" "$version"

echo "== two processes: serve_buffer and read_remote, built with pkg-config"
# The README's smallest pair, compiled against the packages: a host of its
# own for a program of one's own (read_remote_pair.sh runs them).
examples="$here/../../examples"
for prog in serve_buffer read_remote; do
    cc -I"$examples" -o "$work/$prog" "$examples/$prog.c" \
       $(pkg-config --cflags --libs hmaf)
done
bash "$here/../integration/read_remote_pair.sh" \
     "$work/serve_buffer" "$work/read_remote"

echo "== man pages"
# Packaged when the tree was configured with HMAF_BUILD_DOCS (CI's is).
if dpkg -L libhmaf-dev | grep -E '/man3/' >/dev/null; then
    for page in hmaf_session_read hmaf_agent_create HMAF_ETIMEDOUT; do
        dpkg -L libhmaf-dev | grep -E "/man3/$page\.3(\.gz)?$" >/dev/null ||
            { echo "libhmaf-dev: no man page $page"; exit 1; }
    done
    if command -v man >/dev/null; then
        man -w hmaf_session_read >/dev/null ||
            { echo "man: no page for hmaf_session_read"; exit 1; }
    fi
    echo "man pages: $(dpkg -L libhmaf-dev | grep -c '/man3/.')"
elif [ "${HMAF_TEST_NEED_MAN:-0}" = 1 ]; then
    echo "libhmaf-dev has no man pages (configure with -DHMAF_BUILD_DOCS=ON)"
    exit 1
fi

echo "== tools"
tools=$(dpkg -L hmaf-tools | grep '^/usr/bin/' | sort)
bash "$here/help.sh" "$version" $tools
if printf '%s\n' $tools | grep -x /usr/bin/hmaf-info >/dev/null; then
    /usr/bin/hmaf-info
fi

purge
if [ -n "$(hmaf_in_usr)" ]; then
    echo "left in /usr after the purge:"; hmaf_in_usr; exit 1
fi
if ldconfig -p | grep libhmaf >/dev/null; then
    echo "ld.so.cache still has libhmaf"; exit 1
fi
echo "deb_smoke: ok"
