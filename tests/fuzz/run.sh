#!/bin/sh
# The libFuzzer harnesses under ctest (tests/fuzz/CMakeLists.txt).
#
#   run.sh build SOURCE_DIR BUILD_DIR
#       Configure a clang tree in BUILD_DIR and build the harnesses there
#       (target "fuzzers"). Exits 77, and leaves the reason in
#       BUILD_DIR/tests/fuzz/SKIP, when no clang with libFuzzer is found.
#       The compiler: $HMAF_FUZZ_CC, else clang, else clang-NN on PATH.
#   run.sh run BINARY CORPUS_DIR SECONDS [libFuzzer flags...]
#       Fuzz for SECONDS ($HMAF_FUZZ_SECONDS instead, when set), starting
#       from a scratch copy of CORPUS_DIR (the committed seeds are never
#       written to). Crashes land in $HMAF_FUZZ_ARTIFACTS (default:
#       BINARY's directory/artifacts/).
#
# libFuzzer's own failure exit code is 77, which ctest takes for "skipped":
# every failure is reported as 1 here.
set -u

skip() {
    mkdir -p "$2/tests/fuzz"
    echo "$1" >"$2/tests/fuzz/SKIP"
    echo "SKIP: $1"
    exit 77
}

find_clang() {
    for cc in ${HMAF_FUZZ_CC:-} clang clang-19 clang-18 clang-17 clang-16 \
        clang-15 clang-14; do
        if command -v "$cc" >/dev/null 2>&1; then
            echo "$cc"
            return 0
        fi
    done
    return 1
}

build() {
    src=$1
    dir=$2
    cc=$(find_clang) || skip "no clang on PATH (set HMAF_FUZZ_CC)" "$dir"
    probe=$(mktemp -d) || exit 1
    cat >"$probe/probe.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    return (int)(d == NULL && n > 0);
}
EOF
    if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/probe.c" \
        -o "$probe/probe" >/dev/null 2>&1; then
        rm -rf "$probe"
        skip "$cc: clang's libFuzzer runtime not found (compiler-rt)" "$dir"
    fi
    rm -rf "$probe" "$dir/tests/fuzz/SKIP"
    mkdir -p "$dir" || exit 1
    cmake -S "$src" -B "$dir" -DCMAKE_C_COMPILER="$cc" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHMAF_BUILD_TESTS=OFF \
        -DHMAF_FUZZ=ON -DHMAF_SANITIZE=OFF >"$dir/configure.log" 2>&1 || {
        cat "$dir/configure.log"
        exit 1
    }
    cmake --build "$dir" --target fuzzers -j"$(nproc)"
}

run() {
    bin=$1
    corpus=$2
    seconds=${HMAF_FUZZ_SECONDS:-$3}
    shift 3
    name=$(basename "$bin")
    if [ -f "$(dirname "$bin")/SKIP" ]; then
        echo "SKIP: $(cat "$(dirname "$bin")/SKIP")"
        exit 77
    fi
    if [ ! -x "$bin" ]; then
        echo "$bin: not built (fuzz.build failed?)"
        exit 1
    fi
    artifacts=${HMAF_FUZZ_ARTIFACTS:-$(dirname "$bin")/artifacts}
    mkdir -p "$artifacts" || exit 1
    work=$(mktemp -d) || exit 1
    mkdir "$work/corpus"
    cp "$corpus"/* "$work/corpus/"
    echo "$name: ${seconds}s from $(ls "$work/corpus" | wc -l) seeds;" \
        "crashes go to $artifacts/"
    "$bin" -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=20 \
        -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$name-" "$@" "$work/corpus" \
        >"$work/log" 2>&1
    rc=$?
    # The whole log on failure; the summary otherwise.
    if [ $rc -ne 0 ]; then
        cat "$work/log"
        ls -l "$artifacts"
    else
        grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done|stat::)' "$work/log"
    fi
    rm -rf "$work"
    [ $rc -eq 0 ] || exit 1
}

case ${1:-} in
build)
    [ $# -eq 3 ] || exit 2
    build "$2" "$3"
    ;;
run)
    [ $# -ge 4 ] || exit 2
    shift
    run "$@"
    ;;
*)
    sed -n '2,17p' "$0"
    exit 2
    ;;
esac
