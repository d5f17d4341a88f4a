#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for the test suite (used by .ci/run).
#   scripts/pg-test-cluster.sh start DIR PORT   -> prints the URL of database `rekap_test`
#   scripts/pg-test-cluster.sh stop DIR
# Trust authentication on 127.0.0.1 only; the unix socket lives in DIR. When run as root the
# cluster belongs to the unprivileged user `rekap-pg` (postgres refuses to run as root).
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?data folder}
bin=""
for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ]; then bin="$d"; fi
done
if [ -z "$bin" ]; then
    bin="$(dirname "$(command -v initdb)")"
fi
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        su rekap-pg -s /bin/sh -c "cd / && $*"
    else
        sh -c "$*"
    fi
}
case "$cmd" in
start)
    port=${3:?port}
    if [ "$(id -u)" = 0 ] && ! id rekap-pg >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin rekap-pg
    fi
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown rekap-pg "$dir"; fi
    chmod 700 "$dir"
    as_owner "'$bin/initdb' -D '$dir/data' -U postgres --auth=trust -E UTF8 --no-sync" >"$dir/initdb.log" 2>&1
    # fsync stays on: the crash tests rely on committed work surviving a killed process (not a
    # power cut, so the OS cache would do, but we keep the production setting).
    as_owner "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -o \"-k '$dir' -p $port -c listen_addresses=127.0.0.1 -c max_connections=200\" start" >/dev/null
    as_owner "'$bin/psql' -h 127.0.0.1 -p $port -U postgres -qc 'CREATE DATABASE rekap_test'" >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/rekap_test"
    ;;
stop)
    as_owner "'$bin/pg_ctl' -D '$dir/data' -m fast stop" >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
