#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# check-doca-headers.sh - type-check HMAF's DOCA code against a real DOCA SDK's
# headers, without the SDK's libraries or a BlueField (docs/doca.md,
# "Checking against the real DOCA headers").
#
# Usage: tools/check-doca-headers.sh [DIR]
#
#   DIR (else $DOCA_INCLUDE, else .doca-headers at the top of the tree) is a
#   directory holding the SDK's headers, doca_dma.h, doca_comch.h and the
#   rest, as installed (e.g. /opt/mellanox/doca/include). The headers are
#   NVIDIA's: never add them to the repository; .doca-headers/ is git-ignored.
#   They need nothing else: only libc and the Linux UAPI headers
#   (<linux/types.h>, Debian's linux-libc-dev).
#
# Checks, with each of gcc and clang that is installed ($DOCA_CHECK_CC, a
# space-separated list, overrides the compilers):
#
#   1. Every DOCA source, as CMake lists it: HMAF_DOCA_ENGINE_SOURCES in
#      src/engine/doca/CMakeLists.txt (the engine, memwatch.c) and
#      HMAF_CHANNEL_COMCH_SOURCES in src/channel/CMakeLists.txt (the comch
#      channel), and the bench's raw DOCA contenders
#      (tools/bench/doca_raw.c, HMAF_BENCH_DOCA=1) compile with
#        -fsyntax-only -std=c11 -Wall -Wextra -Werror -Wshadow
#        -Wstrict-prototypes -Wmissing-prototypes -D_GNU_SOURCE
#        -Iinclude -Isrc -I<DIR>
#      and the definitions its part lists (HMAF_DOCA_DEFINITIONS,
#      HMAF_CHANNEL_COMCH_DEFINITIONS) except
#      DOCA_ALLOW_EXPERIMENTAL_API. Without that definition DOCA declares its
#      experimental calls deprecated, so -Werror turns any use of one into an
#      error: the check also proves the code uses DOCA's stable API only.
#   2. A canary: with the same flags, a call to a function declared
#      DOCA_EXPERIMENTAL (the SDK's own marker, from doca_compat.h) must fail
#      to compile. If it does not, the headers or the flags do not mark
#      experimental calls and check 1 proved less than it says.
#   3. (clang only) The emulation agrees with the SDK: every function and
#      typedef tests/doca/include declares has the same type in DIR, the
#      functions of these the SDK declares DOCA_EXPERIMENTAL are the ones
#      the emulation marks deprecated (so code built against it refuses the
#      same calls), and every enumerator and numeric macro it defines has
#      the same value (compiled and run with the first compiler).
#
# Exit status: 0 every check passed; 1 a check failed; 2 bad usage;
# 77 skipped, with the reason on stderr (no header directory, or no compiler).

set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

case "${1:-}" in
-h | --help)
    sed -n '4,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit 0
    ;;
esac
[ $# -le 1 ] || { echo "usage: $0 [DIR]" >&2; exit 2; }

hdr=${1:-${DOCA_INCLUDE:-$top/.doca-headers}}
if [ ! -d "$hdr" ]; then
    echo "check-doca-headers: skipped: no DOCA header directory '$hdr'" \
         "(pass one, or set DOCA_INCLUDE)" >&2
    exit 77
fi
hdr=$(cd "$hdr" && pwd)
if [ -f "$hdr/doca_emu.h" ]; then
    echo "check-doca-headers: $hdr is HMAF's emulation, not the SDK" >&2
    exit 2
fi
for h in doca_compat.h doca_dma.h doca_comch.h doca_mmap.h doca_pe.h; do
    if [ ! -f "$hdr/$h" ]; then
        echo "check-doca-headers: skipped: $hdr has no $h" \
             "(not a DOCA SDK include directory?)" >&2
        exit 77
    fi
done

ccs=()
for cc in ${DOCA_CHECK_CC:-gcc clang}; do
    command -v "$cc" >/dev/null 2>&1 && ccs+=("$cc")
done
if [ ${#ccs[@]} -eq 0 ]; then
    echo "check-doca-headers: skipped: none of '${DOCA_CHECK_CC:-gcc clang}'" \
         "is installed" >&2
    exit 77
fi

cd "$top" || exit 1

# The DOCA parts: each CMakeLists.txt with its sources' and definitions'
# variables.
parts=(
    "src/engine/doca/CMakeLists.txt HMAF_DOCA_ENGINE_SOURCES HMAF_DOCA_DEFINITIONS"
    "src/channel/CMakeLists.txt HMAF_CHANNEL_COMCH_SOURCES HMAF_CHANNEL_COMCH_DEFINITIONS"
)

# A part's sources as CMake lists them, from "set(VAR" to the first ")",
# as paths from the top (the ${...} in single quotes are CMake's).
# shellcheck disable=SC2016
part_sources() {
    awk -v start="set($2" '
        !on && (index($0, start " ") == 1 || $0 == start) { on = 1 }
        on { print }
        on && /\)/ { exit }' "$1" |
        grep -oE '\$\{(CMAKE_CURRENT_SOURCE_DIR|PROJECT_SOURCE_DIR)\}/[^ )]+' |
        sed -e "s|^\${CMAKE_CURRENT_SOURCE_DIR}/|${1%/CMakeLists.txt}/|" \
            -e 's|^${PROJECT_SOURCE_DIR}/||'
}

# Every source, and in source_defs at the same index its part's
# definitions as -D flags.
sources=()
source_defs=()
for part in "${parts[@]}"; do
    read -r cmake_file sources_var defs_var <<<"$part"
    mapfile -t found < <(part_sources "$cmake_file" "$sources_var")
    defs=
    read -ra words < <(sed -n "s/^set($defs_var \(.*\))/\1/p" "$cmake_file")
    for d in "${words[@]}"; do
        [ "$d" = DOCA_ALLOW_EXPERIMENTAL_API ] || defs+=" -D$d"
    done
    if [ ${#found[@]} -eq 0 ] || [ ${#words[@]} -eq 0 ]; then
        echo "check-doca-headers: cannot read $sources_var or $defs_var" \
             "from $cmake_file" >&2
        exit 1
    fi
    for src in "${found[@]}"; do
        sources+=("$src")
        source_defs+=("$defs")
    done
done

# As the top-level CMakeLists.txt compiles everything, minus any definition
# that would let experimental calls through.
flags=(-fsyntax-only -std=c11 -Wall -Wextra -Werror -Wshadow
       -Wstrict-prototypes -Wmissing-prototypes -D_GNU_SOURCE
       -UDOCA_ALLOW_EXPERIMENTAL_API -UDOCA_ALLOW_DEPRECATED_API)

version=$(sed -n 's/^#define DOCA_VERSION_STRING "\(.*\)"/\1/p' \
          "$hdr/doca_version.h" 2>/dev/null)
echo "DOCA headers: $hdr (version ${version:-unknown})"

failed=0
pass() { printf '  ok    %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*"; failed=1; }

work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT

echo "1. DOCA sources, no experimental API"
for cc in "${ccs[@]}"; do
    for i in "${!sources[@]}"; do
        src=${sources[i]}
        # shellcheck disable=SC2086 # source_defs holds words to split
        if "$cc" "${flags[@]}" ${source_defs[i]} -Iinclude -Isrc -I"$hdr" \
               "$src" >"$work/log" 2>&1; then
            pass "$cc $src"
        else
            fail "$cc $src"
            sed 's/^/        /' "$work/log"
        fi
    done
    src=tools/bench/doca_raw.c
    if "$cc" "${flags[@]}" -DHMAF_BENCH_DOCA=1 -Iinclude -Isrc -Itools/bench \
           -I"$hdr" "$src" >"$work/log" 2>&1; then
        pass "$cc $src"
    else
        fail "$cc $src"
        sed 's/^/        /' "$work/log"
    fi
done

echo "2. canary: an experimental call is an error"
cat >"$work/canary.c" <<'EOF'
#include <doca_compat.h>
DOCA_EXPERIMENTAL int hmaf_check_canary(void);
int hmaf_check_canary_call(void);
int hmaf_check_canary_call(void) { return hmaf_check_canary(); }
EOF
for cc in "${ccs[@]}"; do
    if "$cc" "${flags[@]}" -I"$hdr" "$work/canary.c" >"$work/log" 2>&1; then
        fail "$cc accepts a DOCA_EXPERIMENTAL call with these flags"
    elif grep -q 'deprecated' "$work/log"; then
        pass "$cc rejects a DOCA_EXPERIMENTAL call"
    else
        fail "$cc: canary failed for another reason"
        sed 's/^/        /' "$work/log"
    fi
done

echo "3. the emulation (tests/doca/include) agrees with these headers"
emu=tests/doca/include
clang_cc=
for cc in "${ccs[@]}"; do
    case $("$cc" --version 2>/dev/null) in *clang*) clang_cc=$cc; break ;; esac
done
if [ -z "$clang_cc" ]; then
    echo "  skip  (needs clang)"
else
    : >"$work/tu.c"
    for h in "$emu"/doca_*.h; do
        h=${h##*/}
        [ "$h" = doca_emu.h ] && continue
        echo "#include <$h>" >>"$work/tu.c"
    done
    # Top-level functions and typedefs: name and type as clang spells them.
    decls() {
        clang -fsyntax-only -std=c11 -D_GNU_SOURCE -I"$1" -Xclang -ast-dump \
              -fno-color-diagnostics "$work/tu.c" 2>/dev/null |
            grep -E '^[|`]-(FunctionDecl|TypedefDecl) ' |
            grep -oE " doca_[A-Za-z0-9_]+ '[^']*'" | sed 's/^ //' | sort -u
    }
    if ! clang -fsyntax-only -std=c11 -D_GNU_SOURCE -I"$hdr" "$work/tu.c" \
             >"$work/log" 2>&1; then
        fail "the emulation's header names do not all compile with $hdr"
        sed 's/^/        /' "$work/log"
    else
        decls "$emu" >"$work/emu.txt"
        decls "$hdr" >"$work/sdk.txt"
        n=0 bad=0
        while read -r name type; do
            n=$((n + 1))
            sdk=$(grep -E "^$name '" "$work/sdk.txt" | head -n 1)
            if [ -z "$sdk" ]; then
                fail "$name: not declared by the SDK headers"
                bad=1
            elif [ "$sdk" != "$name $type" ]; then
                fail "$name: emulation $type, SDK ${sdk#"$name "}"
                bad=1
            fi
        done <"$work/emu.txt"
        if [ "$n" -eq 0 ]; then
            fail "no declarations read from $emu"
        elif [ $bad = 0 ]; then
            pass "$n functions and typedefs"
        fi

        # Experimental calls: without DOCA_ALLOW_EXPERIMENTAL_API the SDK
        # declares them deprecated; of the emulation's functions, the same
        # ones must be.
        deprecated() {
            clang -fsyntax-only -std=c11 -D_GNU_SOURCE -I"$1" -Xclang \
                  -ast-dump -fno-color-diagnostics "$work/tu.c" 2>/dev/null |
                awk '/^[|`]-/ { name = "" }
                     /^[|`]-FunctionDecl / {
                         if (match($0, / doca_[A-Za-z0-9_]+ \x27/))
                             name = substr($0, RSTART + 1, RLENGTH - 3) }
                     /DeprecatedAttr/ && name != "" { print name }' |
                sort -u
        }
        cut -d' ' -f1 "$work/emu.txt" | sort -u >"$work/emu_names.txt"
        deprecated "$emu" >"$work/emu_exp.txt"
        deprecated "$hdr" | comm -12 - "$work/emu_names.txt" \
            >"$work/sdk_exp.txt"
        if diff "$work/emu_exp.txt" "$work/sdk_exp.txt" >"$work/log"; then
            pass "$(wc -l <"$work/emu_exp.txt") experimental calls marked alike"
        else
            fail "experimental calls differ (< emulation, > SDK)"
            sed 's/^/        /' "$work/log"
        fi

        # Enumerators and numeric macros: print them with each header set.
        {
            echo '#include <stdio.h>'
            cat "$work/tu.c"
            echo 'int main(void) {'
            clang -fsyntax-only -std=c11 -D_GNU_SOURCE -I"$emu" -Xclang \
                  -ast-dump -fno-color-diagnostics "$work/tu.c" 2>/dev/null |
                grep 'EnumConstantDecl' | grep -oE " DOCA_[A-Z0-9_]+ '" |
                tr -d " '" | sort -u
            grep -hoE '^#define DOCA_[A-Z0-9_]+[[:space:]]+[0-9(]' \
                 "$emu"/doca_*.h | awk '{print $2}' | sort -u
        } | awk '/^DOCA_/ { printf "printf(\"%s %%lld\\n\", (long long)(%s));\n", $0, $0; next }
                 { print }' >"$work/values.c"
        cat >>"$work/values.c" <<'EOF'
printf("sizeof(union doca_data) %zu\n", sizeof(union doca_data));
printf("sizeof(doca_notification_handle_t) %zu\n", sizeof(doca_notification_handle_t));
return 0;
}
EOF
        ok=1
        for set in emu sdk; do
            [ $set = emu ] && dir=$emu || dir=$hdr
            if ! "${ccs[0]}" -std=c11 -D_GNU_SOURCE -I"$dir" "$work/values.c" \
                     -o "$work/values_$set" >"$work/log" 2>&1 ||
               ! "$work/values_$set" >"$work/values_$set.txt"; then
                fail "enumerators and macros with the $set headers"
                sed 's/^/        /' "$work/log"
                ok=0
            fi
        done
        if [ $ok = 1 ]; then
            if diff "$work/values_emu.txt" "$work/values_sdk.txt" \
                   >"$work/log"; then
                pass "$(wc -l <"$work/values_emu.txt") enumerators, macros and sizes"
            else
                fail "values differ (< emulation, > SDK)"
                sed 's/^/        /' "$work/log"
            fi
        fi
    fi
fi

if [ $failed -ne 0 ]; then
    echo "check-doca-headers: FAILED"
    exit 1
fi
echo "check-doca-headers: all checks passed"
