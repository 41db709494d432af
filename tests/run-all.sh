#!/usr/bin/env bash
# THE test command: bash tests/run-all.sh   (.ci/run calls exactly this)
#
# Works on a fresh Debian 12 machine as root: installs the dependencies, builds the widget, builds
# journeyd twice (build/ RelWithDebInfo, build-asan/ with ASan+UBSan), runs the unit tests (ctest)
# of both builds, the pgTAP schema tests, the integration tests against both binaries, and the
# browser tests. Every stage runs even when an earlier one failed (unless it depends on a failed
# build); the exit code is non-zero when anything failed, and the last line is
#   N passed, N failed
# counting the tests of every stage (a stage that is not a test runner, such as a build, counts as
# one failed test when it fails).
#
# Environment: JD_SKIP_DEPS=1 skips deploy/install-deps.sh and npm ci (for quick local reruns);
# JD_STAGES="unit pgtap integration integration-asan browser" runs only the listed test stages;
# JD_TEST_TIMEOUT_MIN (default 25) bounds each test stage; JD_BUILD_DIR / JD_ASAN_BUILD_DIR
# (default build / build-asan) move the two build trees.
# The whole script is one function, parsed before anything runs, so editing this file while it
# runs cannot change what the running copy does.
main() {
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
export LC_ALL=C.UTF-8
JOBS="$(nproc 2>/dev/null || echo 2)"
STAGE_TIMEOUT="$(( ${JD_TEST_TIMEOUT_MIN:-25} * 60 ))"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/jd-run-all.XXXXXX")"
export JD_TEST_STATE_DIR="$LOGDIR/state"
mkdir -p "$JD_TEST_STATE_DIR"

total_pass=0
total_fail=0
summary=()
t_start=$(date +%s)

# Last-resort cleanup of what the tests may have left behind when a runner was killed: journeyd
# processes and PostgreSQL clusters the harness recorded in JD_TEST_STATE_DIR (by pid / directory).
cleanup() {
    local f pid dir
    for f in "$JD_TEST_STATE_DIR"/daemon.*; do
        [ -e "$f" ] || continue
        pid="$(cat "$f")"
        if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q journeyd; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    for f in "$JD_TEST_STATE_DIR"/pg.*; do
        [ -e "$f" ] || continue
        dir="$(cat "$f")"
        [ -d "$dir" ] && bash "$ROOT/tests/lib/pg.sh" destroy "$dir" >/dev/null 2>&1 || true
    done
    rm -rf "$JD_TEST_STATE_DIR"
}
trap cleanup EXIT

banner() { printf '\n==== %s ====\n' "$*"; }

record() { # name pass fail seconds
    total_pass=$((total_pass + $2))
    total_fail=$((total_fail + $3))
    summary+=("$(printf '%-22s %5s passed %5s failed %6ss' "$1" "$2" "$3" "$4")")
}

# A step that is not a test runner: 0 passed / 0 failed on success, 1 failed on failure.
step() { # name cmd...
    local name="$1" t0 rc
    shift
    banner "$name"
    t0=$(date +%s)
    "$@"
    rc=$?
    if [ $rc -eq 0 ]; then
        record "$name" 0 0 $(($(date +%s) - t0))
    else
        echo "!! $name failed (exit $rc)"
        record "$name" 0 1 $(($(date +%s) - t0))
    fi
    return $rc
}

want() { # stage name: is it selected by JD_STAGES?
    [ -z "${JD_STAGES:-}" ] && return 0
    [[ " $JD_STAGES " == *" $1 "* ]]
}

# Runs a test command with its output teed to a log and parses the runner's counts.
# kind: ctest | prove | node
run_tests() { # name kind cmd...
    local name="$1" kind="$2" log="$LOGDIR/$1.log" t0 rc pass=0 fail=0
    shift 2
    banner "$name: $*"
    t0=$(date +%s)
    timeout --kill-after=30 "$STAGE_TIMEOUT" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    case "$kind" in
    ctest)
        local line
        line="$(grep -E '[0-9]+ tests failed out of [0-9]+' "$log" | tail -1)"
        if [[ "$line" =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]]; then
            fail=${BASH_REMATCH[1]}
            pass=$((BASH_REMATCH[2] - fail))
        fi
        ;;
    prove)
        local tests failed
        tests="$(grep -oE 'Tests=[0-9]+' "$log" | tail -1 | cut -d= -f2)"
        failed="$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' "$log" | awk '{split($2, a, "/"); s += a[1]} END {print s + 0}')"
        fail=${failed:-0}
        pass=$(( ${tests:-0} - fail ))
        ;;
    node)
        pass="$(grep -E '^# pass [0-9]+' "$log" | tail -1 | awk '{print $3}')"
        fail="$(grep -E '^# fail [0-9]+' "$log" | tail -1 | awk '{print $3}')"
        local cancelled
        cancelled="$(grep -E '^# cancelled [0-9]+' "$log" | tail -1 | awk '{print $3}')"
        pass=${pass:-0}
        fail=$(( ${fail:-0} + ${cancelled:-0} ))
        ;;
    esac
    if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
        echo "!! $name exited $rc without a counted failure (crash, timeout or no tests)"
        fail=1
    fi
    if [ "$rc" -eq 0 ] && [ "$pass" -eq 0 ] && [ "$fail" -eq 0 ]; then
        echo "!! $name ran no test"
        fail=1
    fi
    record "$name" "$pass" "$fail" $(($(date +%s) - t0))
}

# ---- dependencies -------------------------------------------------------------------------------
if [ -z "${JD_SKIP_DEPS:-}" ]; then
    step deps bash deploy/install-deps.sh --test
    npm_ci() {
        # npm ci wipes node_modules; skip it when npm last installed after the lockfile changed.
        if [ node_modules/.package-lock.json -nt package-lock.json ] && [ node_modules/.package-lock.json -nt package.json ]; then
            echo "node_modules is newer than package-lock.json: skipping npm ci"
        else
            npm ci --no-audit --no-fund
        fi
    }
    step npm-ci npm_ci
fi

# ---- builds ---------------------------------------------------------------------------------------
widget_ok=1
if [ -f web-widget/build.mjs ]; then
    step widget node web-widget/build.mjs || widget_ok=0
fi

build_ok=0
asan_ok=0
build() { # dir extra-cmake-args...
    local dir="$1"
    shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" && cmake --build "$dir" -j"$JOBS"
}
B="${JD_BUILD_DIR:-build}"
BA="${JD_ASAN_BUILD_DIR:-build-asan}"
step build build "$B" && build_ok=1
step build-asan build "$BA" -DJD_SANITIZE=ON && asan_ok=1

# ---- tests ----------------------------------------------------------------------------------------
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

if want unit; then
    if [ $build_ok = 1 ]; then
        run_tests unit ctest ctest --test-dir "$B" --output-on-failure
    else
        record unit 0 1 0
    fi
    if [ $asan_ok = 1 ]; then
        run_tests unit-asan ctest ctest --test-dir "$BA" --output-on-failure
    else
        record unit-asan 0 1 0
    fi
fi

if want pgtap; then
    run_tests pgtap prove bash tests/sql/run.sh
fi

NODE_TEST=(node --test --test-reporter=tap --test-timeout=600000 --test-force-exit)
if want integration; then
    if [ $build_ok = 1 ]; then
        JOURNEYD_BIN="$B/journeyd" run_tests integration node "${NODE_TEST[@]}" tests/integration/
    else
        record integration 0 1 0
    fi
fi
if want integration-asan; then
    if [ $asan_ok = 1 ]; then
        JOURNEYD_BIN="$BA/journeyd" run_tests integration-asan node "${NODE_TEST[@]}" tests/integration/
    else
        record integration-asan 0 1 0
    fi
fi

if want browser && compgen -G "tests/browser/*.test.mjs" >/dev/null; then
    if [ $build_ok = 1 ] && [ $widget_ok = 1 ]; then
        JOURNEYD_BIN="$B/journeyd" run_tests browser node "${NODE_TEST[@]}" tests/browser/
    else
        record browser 0 1 0
    fi
fi

# ---- summary --------------------------------------------------------------------------------------
banner "summary ($(($(date +%s) - t_start)) s, logs in $LOGDIR)"
for line in "${summary[@]}"; do echo "$line"; done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
}
main "$@"
