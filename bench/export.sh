#!/usr/bin/env bash
# Map export benchmark (issue 5): one command, a throwaway PostgreSQL 15, torn down at exit.
#
#   bash bench/export.sh [--answers N] [--runs R] [--keep]
#
# Builds render_cli (Release, in build-bench-export/), starts a throwaway cluster, applies every
# migration and the demo seed (3 personas x 5 stages x 11 touchpoints), then generates with
# set-based INSERT ... SELECT generate_series:
#   N answers (default 1,000,000) over N/10 respondents and N/7 sessions: 75% with an emotion,
#   15% with obstacles, 10% with a thought, 5% with an action, goal answers at purchase; and
#   N/2 touch events. Then VACUUM ANALYZE, and R runs (default 5) of each, reporting min/median:
#   1. bare:   the SQL aggregate the export is built on (GROUPING SETS count/avg/stddev over answers);
#   2. export: SELECT jd_map_export(map, '{}') (cells, obstacles, actions, quotes, stage metrics,
#              touches before purchase), text fetched by psql;
#   3. render: render_cli for json, csv, csv-grid, mermaid, drawio and html on that document;
#   4. total:  export + html render, the path of GET /maps/{id}/export?format=html.
# Target (issue 5): total < 3 s on the 2-core machine. Prints a table; --keep leaves the cluster.
set -euo pipefail
{
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CMDLINE="bash bench/export.sh $*"
N=1000000 RUNS=5 KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --answers) N="${2:?}"; shift ;;
    --runs) RUNS="${2:?}"; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

BUILD="$ROOT/build-bench-export"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target render_cli >/dev/null
RENDER="$BUILD/tests/export/render_cli"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/jd-bench-export.XXXXXX")"
chmod 0755 "$WORK" # the cluster directory inside belongs to the postgres user
cleanup() {
    if [ "$KEEP" = 1 ]; then
        echo "kept cluster in $WORK/pg (bash tests/lib/pg.sh destroy $WORK/pg)"
    else
        bash "$ROOT/tests/lib/pg.sh" destroy "$WORK/pg" >/dev/null 2>&1 || true
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
PGENV="$(bash "$ROOT/tests/lib/pg.sh" start "$WORK/pg")"
eval "$PGENV"
DB="postgresql://postgres@127.0.0.1:$PGPORT/bench"
psql -X -q -v ON_ERROR_STOP=1 -d "$PGURL" -c "CREATE DATABASE bench"
for f in "$ROOT"/sql/[0-9][0-9][0-9]_*.sql; do
    psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$f" >/dev/null
done
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -v origins='{https://shop.example}' -f sql/demo/seed.sql >/dev/null
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
MAP="$(q -c "SELECT id FROM maps WHERE slug = 'online-purchase'")"

echo "generating $N answers ..."
t0=$(date +%s.%N)
q -v map="$MAP" -v n="$N" <<'SQL'
\set ON_ERROR_STOP 1
SET synchronous_commit = off;
CREATE TEMP TABLE ids AS SELECT
    (SELECT site_id FROM maps WHERE id = :map) AS site,
    (SELECT array_agg(id ORDER BY position) FROM personas WHERE map_id = :map) AS p,
    (SELECT array_agg(id ORDER BY position) FROM stages WHERE map_id = :map) AS s,
    (SELECT array_agg(id ORDER BY position) FROM touchpoints WHERE map_id = :map) AS t,
    (SELECT array_agg(id ORDER BY id) FROM obstacles WHERE map_id = :map) AS o,
    (SELECT id FROM stages WHERE map_id = :map AND slug = 'purchase') AS purchase;
-- respondent i: uuid from i; persona i % 3; 1% erased
INSERT INTO respondents (site_id, id, erased_at)
SELECT ids.site, md5('r' || i)::uuid, CASE WHEN i % 100 = 0 THEN now() END
FROM ids, generate_series(1, :n / 10) i;
-- session j belongs to respondent j % (n/10) + 1; 1 in 20 without consent
INSERT INTO sessions (id, site_id, respondent_id, consent_mode, consent, persona_id, started_at)
SELECT md5('s' || j)::uuid, ids.site, md5('r' || (j % (:n / 10) + 1))::uuid, 'none-required', j % 20 <> 0,
       ids.p[(j % (:n / 10) + 1) % 3 + 1], timestamptz '2026-01-01' + make_interval(secs => j * 10)
FROM ids, generate_series(1, :n / 7) j;
-- answers: session k % sessions, stage/touchpoint spread, emotion skewed by stage
INSERT INTO answers (site_id, map_id, client_id, source, session_id, respondent_id, persona_id, stage_id,
                     touchpoint_id, emotion, goal_reached, obstacle_ids, thought, action, created_at)
SELECT ids.site, :map, md5('a' || k)::uuid,
       CASE WHEN k % 50 = 0 THEN 'interview' ELSE 'survey' END,
       md5('s' || sj)::uuid, md5('r' || (sj % (:n / 10) + 1))::uuid,
       ids.p[(sj % (:n / 10) + 1) % 3 + 1], ids.s[st], ids.t[(k * 7 + st) % 11 + 1],
       CASE WHEN k % 4 <> 0 THEN least(5, greatest(1, 1 + (k * 2654435761) % 5 + CASE WHEN st = 4 THEN -1 ELSE 0 END)) END,
       CASE WHEN st = 4 AND k % 9 = 0 THEN k % 3 <> 0 END,
       CASE WHEN k % 7 = 0 THEN ARRAY[ids.o[k % 4 + 1]] WHEN k % 41 = 0 THEN ARRAY[ids.o[1], ids.o[4]] ELSE '{}' END,
       CASE WHEN k % 10 = 0 THEN 'Thought number ' || k || ': the page was ' || (ARRAY['slow', 'clear', 'confusing', 'fine'])[k % 4 + 1] END,
       CASE WHEN k % 20 = 0 THEN (ARRAY['compared prices', 'read reviews', 'asked support', 'added to basket'])[k % 4 + 1] END,
       timestamptz '2026-01-01' + make_interval(secs => sj * 10 + k % 600)
FROM ids, generate_series(1, :n) k,
     LATERAL (SELECT k % (:n / 7) + 1 AS sj, (k / 3) % 5 + 1 AS st) x;
INSERT INTO touch_events (site_id, client_id, session_id, respondent_id, kind, stage_id, created_at)
SELECT ids.site, md5('te' || k)::uuid, md5('s' || sj)::uuid, md5('r' || (sj % (:n / 10) + 1))::uuid,
       'pageview', ids.s[k % 5 + 1], timestamptz '2026-01-01' + make_interval(secs => sj * 10 - 300 + k % 600)
FROM ids, generate_series(1, :n / 2) k, LATERAL (SELECT k % (:n / 7) + 1 AS sj) x;
SQL
q -c "VACUUM ANALYZE" >/dev/null
t1=$(date +%s.%N)
printf 'generated in %.1f s: %s\n' "$(echo "$t1 - $t0" | bc)" \
    "$(q -c "SELECT format('%s answers, %s respondents, %s sessions, %s touch events', (SELECT count(*) FROM answers), (SELECT count(*) FROM respondents), (SELECT count(*) FROM sessions), (SELECT count(*) FROM touch_events))")"

BARE="SELECT persona_id, stage_id, touchpoint_id, count(*), count(emotion), avg(emotion), stddev_samp(emotion),
             count(*) FILTER (WHERE goal_reached)
        FROM answers WHERE map_id = $MAP AND stage_id IS NOT NULL
       GROUP BY GROUPING SETS ((persona_id, stage_id, touchpoint_id), (persona_id, stage_id),
                               (stage_id, touchpoint_id), (stage_id))"

# Seconds (wall clock) of one command, to 3 decimals.
secs() {
    local a b
    a=$(date +%s%N)
    "$@" >/dev/null
    b=$(date +%s%N)
    echo "scale=3; ($b - $a) / 1000000000" | bc
}
stats() { # prints "min median" of the numbers on stdin
    sort -n | awk '{v[NR] = $1} END {printf "%.3f %.3f\n", v[1], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'
}
run_export() { q -c "SELECT jd_map_export($MAP, '{}')" >"$WORK/doc.json"; }
run_bare() { q -c "$BARE"; }

declare -A R
for i in $(seq 1 "$RUNS"); do
    R[bare]+="$(secs run_bare) "
    R[export]+="$(secs run_export) "
    for f in json csv csv-grid mermaid drawio html; do
        R[$f]+="$(secs "$RENDER" "$f" <"$WORK/doc.json") "
    done
done
doc_kb=$(($(wc -c <"$WORK/doc.json") / 1024))
cells=$(q -c "SELECT jsonb_array_length(jd_map_export($MAP, '{}') -> 'cells')")

echo
echo "command: $CMDLINE"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(psql -X -At -d "$DB" -c 'SHOW server_version')"
echo "document: $doc_kb KiB, $cells cells; $RUNS runs each, seconds (min / median)"
printf '%-34s %8s %8s\n' "step" "min" "median"
row() { read -r mn md < <(echo "${R[$1]}" | tr ' ' '\n' | grep . | stats); printf '%-34s %8s %8s\n' "$2" "$mn" "$md"; }
row bare "bare SQL aggregate (GROUPING SETS)"
row export "jd_map_export (SQL, whole document)"
for f in json csv csv-grid mermaid drawio html; do row "$f" "render $f (C)"; done
tot=$(paste -d+ <(echo "${R[export]}" | tr ' ' '\n' | grep .) <(echo "${R[html]}" | tr ' ' '\n' | grep .) | bc | stats)
printf '%-34s %8s %8s\n' "total: export + html" $tot
}
