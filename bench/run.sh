#!/usr/bin/env bash
# journeyd benchmark: one command, everything on loopback, everything torn down at exit.
#
#   bash bench/run.sh [--quick] [--profile] [--skip-all-sending] [--journeyd PATH]
#                     [--daemon-arg ARG]...
#
# Builds journeyd (Release, in build-bench/) and the tools in bench/, starts a throwaway
# PostgreSQL 15 (fsync on, synchronous_commit on), migrates and seeds two databases, then runs:
#   1. yardsticks in database `baseline`: raw COPY into answers (all indexes and foreign keys),
#      COPY into a copy of answers without foreign keys (informative), and one INSERT per answer
#      in autocommit from 8 and from 64 client connections;
#   2. journeyd on database `journeyd`, driven by bench/loadgen over WebSocket:
#      throughput at 100 connections, ack latency at 10,000 answers/s offered, throughput with
#      10,000 idle connections open (+ memory per idle connection), and 10,000 connections all
#      sending;
#   3. after every journeyd phase: rows in answers == acked ids (no loss, no duplicates).
# Each journeyd phase (and each yardstick) starts from an empty answers table after a CHECKPOINT.
# Prints one table; writes bench/results/latest.json and bench/results/latest.md.
# --quick shortens every phase (a smoke run, ~1 minute); --profile also records the daemon with
# perf during the throughput phase (bench/results/perf-daemon.txt). To compare a change:
# --journeyd PATH benchmarks another journeyd binary (e.g. an experimental build) and
# --daemon-arg ARG (repeatable) passes extra flags, e.g. --daemon-arg --pipeline-depth=4.
set -euo pipefail
# The whole script is one compound command, so bash reads all of it before running any: editing
# (or pulling) this file during a run cannot derail the run.
{

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CMDLINE="bash bench/run.sh $*"

QUICK=0 PROFILE=0 ALL_SENDING=1 JOURNEYD="" EXTRA_DAEMON_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --profile) PROFILE=1 ;;
    --skip-all-sending) ALL_SENDING=0 ;;
    --journeyd) JOURNEYD="$(realpath "${2:?--journeyd needs a path}")"; shift ;;
    --daemon-arg) EXTRA_DAEMON_ARGS+=("${2:?--daemon-arg needs a value}"); shift ;;
    -h | --help)
        sed -n '2,24p' "$0"
        exit 0
        ;;
    *)
        echo "run.sh: unknown option $1" >&2
        exit 2
        ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    COPY_ROWS=100000 NAIVE_S=4 PHASE_S=5 WARM_S=2 IDLE_N=2000 ALL_N=2000
else
    COPY_ROWS=400000 NAIVE_S=10 PHASE_S=30 WARM_S=3 IDLE_N=10000 ALL_N=10000
fi
ACTIVE_N=100 WINDOW=64 LAT_RATE=10000

BUILD="$ROOT/build-bench"
TOOLS="$BUILD/bench"
RESULTS="$ROOT/bench/results"
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- build ---------------------------------------------------------------------------------------
log "building journeyd (Release) in build-bench/ and the bench tools"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DJD_WERROR=OFF \
        -DCMAKE_C_FLAGS="-g -fno-omit-frame-pointer" >"$BUILD.cmake.log" 2>&1 ||
        { cat "$BUILD.cmake.log" >&2; exit 1; }
fi
cmake --build "$BUILD" -j"$(nproc)" --target journeyd >"$BUILD/build.log" 2>&1 ||
    { tail -40 "$BUILD/build.log" >&2; exit 1; }
make -s -C "$ROOT/bench" OUT="$TOOLS" >&2
if [ -z "$JOURNEYD" ]; then JOURNEYD="$BUILD/journeyd"; fi
LOADGEN="$TOOLS/loadgen"
BASELINE="$TOOLS/copy_baseline"

# --- processes and cleanup ------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/jdbench.XXXXXX")"
DAEMON_PID="" CHILD_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CHILD_PID" ] && kill -0 "$CHILD_PID" 2>/dev/null; then
        kill "$CHILD_PID" 2>/dev/null || true
    fi
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    bash "$ROOT/tests/lib/pg.sh" destroy "$WORK/pg" >/dev/null 2>&1 || true
    rm -rf -- "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command in the background so the trap can stop it, waits, and keeps its exit status.
run_child() {
    "$@" &
    CHILD_PID=$!
    local rc=0
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}

# Every connection is a descriptor in both the daemon and the load generator (separate processes).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
need=$((IDLE_N + ACTIVE_N + 200))
[ "$ALL_N" -gt "$IDLE_N" ] && need=$((ALL_N + 200))
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt "$need" ]; then
    log "ulimit -n is $NOFILE; the 10,000-connection phases need $need: raise the hard limit"
    exit 1
fi

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 0.7) }'; then
    log "warning: load average is $LOAD_START before the run; other work on this machine will lower the figures"
fi

# --- PostgreSQL ------------------------------------------------------------------------------------
log "starting a throwaway PostgreSQL in $WORK/pg"
chmod 0755 "$WORK" # the postgres user must reach $WORK/pg
PG_ENV="$(bash "$ROOT/tests/lib/pg.sh" start "$WORK/pg")" || { log "PostgreSQL did not start"; exit 1; }
eval "$PG_ENV"
PG_BIN="${JD_PG_BIN:-/usr/lib/postgresql/15/bin}"
# Benchmark sizing on top of the test cluster's settings (durability stays: fsync and
# synchronous_commit on, full_page_writes on). Applied with ALTER SYSTEM and a restart.
psql -X -q -v ON_ERROR_STOP=1 -d postgres \
    -c "ALTER SYSTEM SET shared_buffers = '512MB'" \
    -c "ALTER SYSTEM SET max_wal_size = '4GB'" \
    -c "ALTER SYSTEM SET checkpoint_timeout = '15min'"
if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -w -t 60 -m fast restart >/dev/null
else
    "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -w -t 60 -m fast restart >/dev/null
fi
for _ in $(seq 1 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break; sleep 0.1; done
PG_SETTINGS="$(psql -X -At -d postgres -c "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','shared_buffers','max_wal_size','wal_level')")"
log "postgres: $PG_SETTINGS"

URL_BASE="postgresql://postgres@127.0.0.1:$PGPORT"
for db in journeyd baseline; do
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $db"
    "$JOURNEYD" migrate --database-url "$URL_BASE/$db" --sql-dir "$ROOT/sql" >/dev/null 2>"$WORK/migrate.log" ||
        { cat "$WORK/migrate.log" >&2; exit 1; }
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" -v origins='{}' -f "$ROOT/sql/demo/seed.sql" >/dev/null
done
sql() { psql -X -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
# What the yardsticks and journeyd write into, as migrated now (the schema changes over time).
ANSWERS_SHAPE="$(sql baseline "SELECT (SELECT count(*) FROM pg_index WHERE indrelid = 'answers'::regclass) || ' indexes, ' || (SELECT count(*) FROM pg_constraint WHERE conrelid = 'answers'::regclass AND contype = 'f') || ' foreign keys, ' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'answers'::regclass AND NOT tgisinternal) || ' triggers'")"
MIGRATIONS="$(cd "$ROOT/sql" && ls [0-9]*.sql | tr '\n' ' ')"
log "answers: $ANSWERS_SHAPE; migrations: $MIGRATIONS"

# --- 1. yardsticks ---------------------------------------------------------------------------------
sql baseline "CHECKPOINT" >/dev/null
log "COPY $COPY_ROWS rows into answers ($ANSWERS_SHAPE)"
run_child "$BASELINE" copy --url "$URL_BASE/baseline" --rows "$COPY_ROWS" --chunk 100000 >"$WORK/copy.json"
cat "$WORK/copy.json" >&2
[ "$(sql baseline 'SELECT count(*) FROM answers')" = "$COPY_ROWS" ] || { log "COPY row count mismatch"; exit 1; }

log "COPY $COPY_ROWS rows into a copy of answers without foreign keys (informative)"
sql baseline "CREATE TABLE answers_nofk (LIKE answers INCLUDING ALL); CHECKPOINT" >/dev/null
run_child "$BASELINE" copy --url "$URL_BASE/baseline" --table answers_nofk --rows "$COPY_ROWS" --chunk 100000 >"$WORK/copy_nofk.json"
cat "$WORK/copy_nofk.json" >&2
sql baseline "DROP TABLE answers_nofk; TRUNCATE answers; CHECKPOINT" >/dev/null

for k in 8 64; do
    log "naive: one INSERT per answer, autocommit, $k clients, ${NAIVE_S}s"
    run_child "$BASELINE" naive --url "$URL_BASE/baseline" --clients "$k" --duration "$NAIVE_S" >"$WORK/naive$k.json"
    cat "$WORK/naive$k.json" >&2
    sql baseline "TRUNCATE answers; CHECKPOINT" >/dev/null
done

# --- 2. journeyd -----------------------------------------------------------------------------------
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# High rate limits and per-IP cap so the benchmark measures ingest, not the abuse limits.
DAEMON_ARGS=(--listen "127.0.0.1:$PORT" --database-url "$URL_BASE/journeyd" --sql-dir "$ROOT/sql"
    --rate-per-sec 100000 --rate-burst 1000000 --max-conns 20000 --max-conns-per-ip 1000000
    --log-level warn "${EXTRA_DAEMON_ARGS[@]}")
log "starting journeyd on 127.0.0.1:$PORT: ${DAEMON_ARGS[*]}"
"$JOURNEYD" "${DAEMON_ARGS[@]}" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for i in $(seq 1 300); do
    if curl -fs "http://127.0.0.1:$PORT/healthz" 2>/dev/null | grep -q '"catalog":true'; then break; fi
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/daemon.log" >&2; log "journeyd exited"; exit 1; }
    [ "$i" = 300 ] && { cat "$WORK/daemon.log" >&2; log "journeyd not healthy after 30s"; exit 1; }
    sleep 0.1
done
cpu_ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$DAEMON_PID/stat"; }
# CPU ticks of our PostgreSQL's server processes (children of its postmaster).
pg_ticks() {
    local pm
    pm="$(head -1 "$WORK/pg/data/postmaster.pid")"
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$pm" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); if (f[2] == pm) t += f[12] + f[13] } END { print t + 0 }'
}
# Busy and total ticks of the whole machine (all cores).
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
CPU_START="$(cpu_ticks)"
T_DAEMON_START="$(date +%s.%N)"

QUESTIONS=()
while read -r q; do QUESTIONS+=(--question "$q"); done < <(sql journeyd "
    SELECT q.survey_id || ':' || q.id FROM questions q JOIN surveys s ON s.id = q.survey_id
    JOIN maps m ON m.id = s.map_id JOIN sites si ON si.id = m.site_id
    WHERE si.key = 'demo-site-key-0001' AND q.kind = 'emotion' AND s.status = 'live'
      AND q.retired_at IS NULL ORDER BY q.id")
[ "${#QUESTIONS[@]}" -gt 0 ] || { log "no live emotion question in the demo seed"; exit 1; }

EXPECTED=0 VERIFY_OK=1
# Runs one loadgen phase, then checks rows in answers against the ids it acked.
phase() {
    local name="$1"
    shift
    log "phase $name: loadgen $*"
    # Every phase starts from the same state: an empty answers table and a fresh checkpoint, so
    # a later phase is not slower merely because the table and its indexes grew.
    sql journeyd "TRUNCATE answers" >/dev/null
    sql journeyd "CHECKPOINT" >/dev/null
    EXPECTED=0
    local t0 t1 p0 p1 m0 m1 w0 w1 load0
    load0="$(cut -d' ' -f1 /proc/loadavg)"
    t0="$(cpu_ticks)" p0="$(pg_ticks)" m0="$(machine_ticks)" w0="$(date +%s.%N)"
    run_child "$LOADGEN" --port "$PORT" --pid "$DAEMON_PID" "${QUESTIONS[@]}" "$@" >"$WORK/$name.json" 2>"$WORK/$name.err" ||
        { cat "$WORK/$name.err" >&2; log "loadgen failed in phase $name"; exit 1; }
    t1="$(cpu_ticks)" p1="$(pg_ticks)" m1="$(machine_ticks)" w1="$(date +%s.%N)"
    cat "$WORK/$name.err" >&2
    kill -0 "$DAEMON_PID" 2>/dev/null || { tail -50 "$WORK/daemon.log" >&2; log "journeyd died during $name"; exit 1; }
    local acked unacked unknown rows ok=true
    acked="$(jq .acked "$WORK/$name.json")"
    unacked="$(jq .unacked_at_end "$WORK/$name.json")"
    unknown="$(jq .unknown_acks "$WORK/$name.json")"
    EXPECTED=$((EXPECTED + acked))
    rows="$(sql journeyd 'SELECT count(*) FROM answers')"
    if [ "$rows" != "$EXPECTED" ] || [ "$unknown" != 0 ] || [ "$unacked" != 0 ]; then
        ok=false
        VERIFY_OK=0
        log "VERIFY FAILED after $name: rows=$rows acked(total)=$EXPECTED unacked_at_end=$unacked unknown_acks=$unknown"
        # Unacked answers may or may not have committed: continue from what the table holds.
        EXPECTED="$rows"
    else
        log "verified after $name: $rows rows = $EXPECTED acked ids"
    fi
    # Who used the CPU during the whole phase (connect, warm-up, run, drain), in % of one core.
    # "others" is everything on the machine that is not this benchmark: other people's builds
    # and tests make every figure worse, so the report shows it.
    local hz
    hz="$(getconf CLK_TCK)"
    jq --argjson rows "$rows" --argjson ok "$ok" --argjson hz "$hz" \
        --argjson wall "$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.3f", b - a }')" \
        --argjson d "$((t1 - t0))" --argjson p "$((p1 - p0))" \
        --argjson mb "$(( ${m1% *} - ${m0% *} ))" --argjson mt "$(( ${m1#* } - ${m0#* } ))" \
        --argjson load0 "$load0" \
        '. + {verify: {rows_in_answers: $rows, ok: $ok},
              cpu_phase: {wall_s: $wall, loadavg_before: $load0,
                          machine_busy_pct_of_all_cores: (100 * $mb / $mt),
                          daemon_pct: (100 * $d / $hz / $wall), postgres_pct: (100 * $p / $hz / $wall),
                          loadgen_pct: (100 * .loadgen_cpu_s_total / $wall),
                          others_pct: ((100 * ($mb - $d - $p) / $hz / $wall) - (100 * .loadgen_cpu_s_total / $wall))}}' \
        "$WORK/$name.json" >"$WORK/$name.v.json"
    jq -r '"  cpu during \(.cpu_phase.wall_s)s (% of one core): journeyd \(.cpu_phase.daemon_pct|floor), postgres \(.cpu_phase.postgres_pct|floor), loadgen \(.cpu_phase.loadgen_pct|floor), others \(.cpu_phase.others_pct|floor); load average before \(.cpu_phase.loadavg_before)"' "$WORK/$name.v.json" >&2
}

PERF_PID=""
if [ "$PROFILE" = 1 ] && perf record -q -o /dev/null -- true 2>/dev/null; then
    mkdir -p "$RESULTS"
    perf record -F 499 -g -p "$DAEMON_PID" -o "$WORK/perf.data" -- sleep $((WARM_S + PHASE_S)) >/dev/null 2>&1 &
    PERF_PID=$!
fi
phase throughput --conns "$ACTIVE_N" --window "$WINDOW" --duration "$PHASE_S" --warmup "$WARM_S"
if [ -n "$PERF_PID" ]; then
    wait "$PERF_PID" || true
    {
        echo "# perf record -F 499 -g -p JOURNEYD_PID during the throughput phase ($ACTIVE_N connections)"
        echo "# by shared object (self time):"
        perf report -i "$WORK/perf.data" --stdio --no-children -g none --sort dso 2>/dev/null | grep -E '^ +[0-9]'
        echo "# by symbol (self time; hex addresses are static functions of stripped libraries):"
        perf report -i "$WORK/perf.data" --stdio --no-children -g none --sort dso,symbol 2>/dev/null |
            grep -E '^ +[0-9]' | head -50
    } >"$RESULTS/perf-daemon.txt" || true
    log "perf profile written to bench/results/perf-daemon.txt"
fi
phase latency --conns "$ACTIVE_N" --window 1024 --rate "$LAT_RATE" --duration "$PHASE_S" --warmup "$WARM_S"
phase idle --idle "$IDLE_N" --conns "$ACTIVE_N" --window "$WINDOW" --duration "$PHASE_S" --warmup "$WARM_S" --connect-timeout 120
if [ "$ALL_SENDING" = 1 ]; then
    phase all_sending --conns "$ALL_N" --window 4 --duration "$PHASE_S" --warmup "$WARM_S" --connect-timeout 120
fi

CPU_END="$(cpu_ticks)"
T_DAEMON_END="$(date +%s.%N)"
HWM_KB="$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status")"
log "stopping journeyd (SIGTERM drains)"
kill -TERM "$DAEMON_PID"
for _ in $(seq 1 300); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
DAEMON_RC=0
wait "$DAEMON_PID" || DAEMON_RC=$?
DAEMON_PID=""
FINAL_ROWS="$(sql journeyd 'SELECT count(*) FROM answers')"
DUPES="$(sql journeyd 'SELECT count(*) - count(DISTINCT (site_id, client_id)) FROM answers')"
if [ "$FINAL_ROWS" != "$EXPECTED" ] || [ "$DUPES" != 0 ]; then
    VERIFY_OK=0
    log "VERIFY FAILED after shutdown: rows=$FINAL_ROWS expected=$EXPECTED duplicates=$DUPES"
fi
WARNINGS="$(grep -c -E ' (WARN|ERROR) ' "$WORK/daemon.log" || true)"

# --- 3. report --------------------------------------------------------------------------------------
mkdir -p "$RESULTS"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY="$(git -C "$ROOT" status --porcelain -- daemon sql bench ':!bench/results' 2>/dev/null | grep -q . && echo true || echo false)"
jq -n \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --arg commit "$COMMIT" --argjson dirty "$DIRTY" \
    --arg command "$CMDLINE" \
    --argjson cores "$(nproc)" \
    --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    --argjson mem_kb "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)" \
    --arg kernel "$(uname -r)" --arg load_start "$LOAD_START" \
    --arg os "$(. /etc/os-release && echo "$PRETTY_NAME")" \
    --arg pg "$(psql -X -At -d postgres -c 'SHOW server_version')" \
    --arg pg_settings "$PG_SETTINGS" --arg answers_shape "$ANSWERS_SHAPE" --arg migrations "$MIGRATIONS" \
    --arg daemon_args "${DAEMON_ARGS[*]}" --arg journeyd "$JOURNEYD" \
    --argjson quick "$QUICK" \
    --slurpfile copy "$WORK/copy.json" \
    --slurpfile copy_nofk "$WORK/copy_nofk.json" \
    --slurpfile naive8 "$WORK/naive8.json" \
    --slurpfile naive64 "$WORK/naive64.json" \
    --slurpfile throughput "$WORK/throughput.v.json" \
    --slurpfile latency "$WORK/latency.v.json" \
    --slurpfile idle "$WORK/idle.v.json" \
    --slurpfile all_sending "$( [ -f "$WORK/all_sending.v.json" ] && echo "$WORK/all_sending.v.json" || echo /dev/null)" \
    --argjson cpu_s "$(awk -v a="$CPU_START" -v b="$CPU_END" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')" \
    --argjson wall_s "$(awk -v a="$T_DAEMON_START" -v b="$T_DAEMON_END" 'BEGIN { printf "%.2f", b - a }')" \
    --argjson hwm_kb "$HWM_KB" \
    --argjson final_rows "$FINAL_ROWS" --argjson dupes "$DUPES" \
    --argjson verify_ok "$VERIFY_OK" --argjson daemon_rc "$DAEMON_RC" --argjson warnings "$WARNINGS" \
    '{date: $date, commit: $commit, tree_dirty: $dirty, command: $command, quick: ($quick == 1),
      machine: {cores: $cores, cpu: $cpu, mem_kb: $mem_kb, kernel: $kernel, os: $os,
                load_average_at_start: $load_start},
      postgres: {version: $pg, settings: $pg_settings, answers: $answers_shape, migrations: $migrations}, journeyd: $journeyd, daemon_args: $daemon_args,
      copy: $copy[0], copy_nofk: $copy_nofk[0], naive8: $naive8[0], naive64: $naive64[0],
      throughput: $throughput[0], latency: $latency[0], idle: $idle[0],
      all_sending: ($all_sending[0] // null),
      daemon: {cpu_s: $cpu_s, wall_s: $wall_s, cpu_pct: (100 * $cpu_s / $wall_s), hwm_kb: $hwm_kb,
               exit_code: $daemon_rc, warn_or_error_log_lines: $warnings},
      verify: {ok: ($verify_ok == 1), final_rows: $final_rows, duplicates: $dupes}}' \
    >"$RESULTS/latest.json"
python3 "$ROOT/bench/report.py" "$RESULTS/latest.json" "$RESULTS/latest.md"
cat "$RESULTS/latest.md"
log "wrote bench/results/latest.json and bench/results/latest.md"
[ "$VERIFY_OK" = 1 ] || { log "correctness check FAILED (see above)"; exit 1; }
exit 0
}
