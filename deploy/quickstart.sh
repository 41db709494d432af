#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running journeyd with the demo shop:
# installs what is missing, builds the widget and the daemon, runs the embedded private
# PostgreSQL under ./var, applies the migrations, seeds the demo site and serves it.
# Ctrl-C (SIGINT) drains and stops journeyd and its private PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
LISTEN="${JOURNEYD_LISTEN:-127.0.0.1:8080}"
DATA_DIR="${JOURNEYD_DATA_DIR:-$PWD/var}"
PORT="${LISTEN##*:}"

bash deploy/install-deps.sh
npm ci --no-audit --no-fund --loglevel=error
node web-widget/build.mjs
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

mkdir -p "$DATA_DIR"
./build/journeyd migrate --data-dir "$DATA_DIR"
./build/journeyd --data-dir "$DATA_DIR" --listen "$LISTEN" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"' INT TERM
for _ in $(seq 1 100); do
  curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "journeyd failed to start" >&2; exit 1; }
  sleep 0.2
done
psql "host=$DATA_DIR user=postgres dbname=journeyd" -q -v ON_ERROR_STOP=1 \
  -v origins="{http://127.0.0.1:$PORT,http://localhost:$PORT}" -f sql/demo/seed.sql >/dev/null
kill -HUP "$pid" # load the demo site into the catalog now
cat <<MSG

  journeyd is running.
    Demo shop:   http://$LISTEN/demo/index.html
    Agent chat:  http://$LISTEN/agent   (agent@demo.example / journeyd-demo-agent)
    Health:      http://$LISTEN/healthz     Metrics: http://$LISTEN/metrics
    Answers:     psql "host=$DATA_DIR user=postgres dbname=journeyd" -c 'TABLE answers'
  Ctrl-C stops it.

MSG
wait "$pid"
