#!/bin/sh
# PostgreSQL streaming standby for the disaster-recovery site (docs/operations-guide.md).
#
#   pg-standby.sh create  PRIMARY_HOST PRIMARY_PORT STANDBY_DIR STANDBY_PORT [REPL_USER]
#       copy the primary with pg_basebackup -R (writes standby.signal and primary_conninfo),
#       start the standby on STANDBY_PORT and wait until it streams from the primary
#   pg-standby.sh status  STANDBY_DIR STANDBY_PORT
#       is it in recovery, and the last WAL position received and replayed
#   pg-standby.sh promote STANDBY_DIR
#       make the standby the primary (pg_ctl promote), after the old primary is gone
#   pg-standby.sh stop    STANDBY_DIR
#
# PostgreSQL refuses to run as root: as root every server command runs as the postgres user.
# The primary needs a replication entry in pg_hba.conf for the standby's address and
# max_wal_senders > 0 (the defaults of PostgreSQL 15 for local connections). For zero loss at
# failover set on the primary: synchronous_standby_names = '*' and synchronous_commit = on.
set -eu

PG_BIN=${SSCARD_PG_BIN:-/usr/lib/postgresql/15/bin}
SOCKETS=${PG_STANDBY_SOCKETS:-/tmp}

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

usage() { sed -n '2,16p' "$0" >&2; exit 2; }

cmd=${1:-}
[ -n "$cmd" ] || usage
shift

case "$cmd" in
create)
    [ $# -ge 4 ] || usage
    host=$1 port=$2 dir=$3 sport=$4 user=${5:-postgres}
    if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
        echo "error: $dir is not empty; a standby starts from an empty directory" >&2
        exit 1
    fi
    mkdir -p "$dir"
    chmod 700 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    as_pg "$PG_BIN/pg_basebackup" -h "$host" -p "$port" -U "$user" -D "$dir" \
        -R -X stream --checkpoint=fast --no-password
    as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/standby.log" -w -t 60 \
        -o "-p $sport -c listen_addresses=127.0.0.1 -c unix_socket_directories=$SOCKETS \
-c hot_standby=on ${PG_STANDBY_OPTIONS:-}" start
    echo "standby of $host:$port running from $dir on port $sport"
    ;;
status)
    [ $# -ge 2 ] || usage
    as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$2" -U postgres -d postgres -Atc \
        "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()"
    ;;
promote)
    [ $# -ge 1 ] || usage
    as_pg "$PG_BIN/pg_ctl" -D "$1" -w -t 60 promote
    ;;
stop)
    [ $# -ge 1 ] || usage
    as_pg "$PG_BIN/pg_ctl" -D "$1" -m fast -w stop
    ;;
*)
    usage
    ;;
esac
