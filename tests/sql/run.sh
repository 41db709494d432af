#!/usr/bin/env bash
# Runs the pgTAP schema tests (tests/sql/[0-9]*.sql) with pg_prove against a throwaway PostgreSQL 15
# cluster: a fresh database with the pgtap extension and every sql/NNN_*.sql applied with psql.
# Usage: bash tests/sql/run.sh     (needs postgresql-15-pgtap and pg_prove)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
pgdir="$(mktemp -d "${TMPDIR:-/tmp}/jdpg.XXXXXX")"
cleanup() { bash "$root/tests/lib/pg.sh" destroy "$pgdir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
eval "$(bash "$root/tests/lib/pg.sh" start "$pgdir")"
db=jd_pgtap
psql -X -q -v ON_ERROR_STOP=1 -d "$PGURL" -c "CREATE DATABASE $db"
url="postgresql://postgres@127.0.0.1:$PGPORT/$db"
psql -X -q -v ON_ERROR_STOP=1 -d "$url" -c "CREATE EXTENSION pgtap"
for f in "$root"/sql/[0-9][0-9][0-9]_*.sql; do
    psql -X -q -v ON_ERROR_STOP=1 -d "$url" -f "$f" >/dev/null
done
cd "$root"
PGHOST=127.0.0.1 PGDATABASE=$db pg_prove ${PG_PROVE_FLAGS:-} --ext .sql -d "$db" -h 127.0.0.1 -p "$PGPORT" -U postgres tests/sql/
