#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for the tests.
#
#   tests/lib/pg.sh start [DIR]   initdb into DIR (a fresh `mktemp -d` when omitted) unless it already
#                                 holds a cluster, start it, print `export PG...=...` lines to eval.
#                                 Starting a stopped cluster again reuses its data and its port.
#   tests/lib/pg.sh stop DIR [MODE]   pg_ctl stop -m MODE (default fast); keeps the data.
#   tests/lib/pg.sh destroy DIR   stop (immediate) and remove DIR.
#   tests/lib/pg.sh status DIR    exit 0 when running.
#
# The cluster listens on a unix socket in DIR and on 127.0.0.1:PORT (a free port), with
# fsync=on and synchronous_commit=on, trust authentication, superuser `postgres`.
# As root, initdb/pg_ctl run as the `postgres` OS user and DIR is chowned to it.
# Sourcing the file defines jd_pg_start / jd_pg_stop / jd_pg_destroy / jd_pg_status instead.
#
# Printed variables: PGURL (postgresql://postgres@127.0.0.1:PORT/postgres), PGHOST (the socket dir),
# PGPORT, PGUSER, PGDATABASE, JD_PG_DIR.

JD_PG_BIN="${JD_PG_BIN:-/usr/lib/postgresql/15/bin}"

_jd_pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Prints a TCP port on 127.0.0.1 that nothing listens on right now.
_jd_pg_free_port() {
    local port i
    for i in $(seq 1 200); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            if ! ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
                echo "$port"
                return 0
            fi
        fi
    done
    echo "pg.sh: no free port found" >&2
    return 1
}

_jd_pg_write_conf() {
    local dir="$1" port="$2"
    # postgresql.auto.conf is read last, so these win over postgresql.conf.
    cat >"$dir/data/postgresql.auto.conf" <<EOF
# written by tests/lib/pg.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
shared_buffers = '64MB'
logging_collector = off
log_min_messages = warning
log_statement = 'none'
EOF
    chmod 0600 "$dir/data/postgresql.auto.conf"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/data/postgresql.auto.conf"
    echo "$port" >"$dir/port"
}

jd_pg_start() {
    local dir="${1:-}"
    if [ -z "$dir" ]; then
        dir="$(mktemp -d "${TMPDIR:-/tmp}/jdpg.XXXXXX")" || return 1
    fi
    mkdir -p "$dir" || return 1
    dir="$(cd "$dir" && pwd)"
    if [ ! -x "$JD_PG_BIN/initdb" ]; then
        echo "pg.sh: $JD_PG_BIN/initdb not found (install postgresql-15)" >&2
        return 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir" || return 1
        chmod 0700 "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        _jd_pg_as_owner "$JD_PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 --no-instructions >"$dir/initdb.log" 2>&1 || {
            echo "pg.sh: initdb failed:" >&2
            cat "$dir/initdb.log" >&2
            return 1
        }
    fi
    local port attempt
    if _jd_pg_as_owner "$JD_PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        port="$(cat "$dir/port")"
    else
        for attempt in 1 2 3 4 5; do
            if [ -f "$dir/port" ] && [ "$attempt" -eq 1 ]; then
                port="$(cat "$dir/port")" # restart on the same port so clients can reconnect
            else
                port="$(_jd_pg_free_port)" || return 1
            fi
            _jd_pg_write_conf "$dir" "$port"
            if _jd_pg_as_owner "$JD_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
                start >"$dir/pg_ctl.log" 2>&1; then
                break
            fi
            if [ "$attempt" -eq 5 ]; then
                echo "pg.sh: pg_ctl start failed:" >&2
                tail -n 30 "$dir/pg_ctl.log" "$dir/server.log" >&2 2>/dev/null
                return 1
            fi
        done
    fi
    # pg_ctl -w returns once the server accepts connections; double check over TCP.
    local i
    for i in $(seq 1 100); do
        "$JD_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres && break
        sleep 0.1
    done
    echo "export JD_PG_DIR='$dir'"
    echo "export PGHOST='$dir'"
    echo "export PGPORT='$port'"
    echo "export PGUSER='postgres'"
    echo "export PGDATABASE='postgres'"
    echo "export PGURL='postgresql://postgres@127.0.0.1:$port/postgres'"
}

jd_pg_stop() {
    local dir="${1:?usage: pg.sh stop DIR [MODE]}" mode="${2:-fast}"
    [ -f "$dir/data/PG_VERSION" ] || return 0
    if _jd_pg_as_owner "$JD_PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        _jd_pg_as_owner "$JD_PG_BIN/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
    fi
}

jd_pg_status() {
    local dir="${1:?usage: pg.sh status DIR}"
    [ -f "$dir/data/PG_VERSION" ] && _jd_pg_as_owner "$JD_PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

jd_pg_destroy() {
    local dir="${1:?usage: pg.sh destroy DIR}"
    [ -d "$dir" ] || return 0
    jd_pg_stop "$dir" immediate || true
    rm -rf -- "$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    cmd="${1:-}"
    shift || true
    case "$cmd" in
    start) jd_pg_start "$@" ;;
    stop) jd_pg_stop "$@" ;;
    status) jd_pg_status "$@" ;;
    destroy) jd_pg_destroy "$@" ;;
    *)
        echo "usage: $0 start [DIR] | stop DIR [MODE] | status DIR | destroy DIR" >&2
        exit 2
        ;;
    esac
fi
