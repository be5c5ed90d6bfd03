#!/usr/bin/env bash
# Native local stack, no Docker: PostgreSQL 15 (logical WAL) -> Debezium on Kafka Connect -> tansu (Kafka protocol).
#
#   stack.sh up                 bootstrap if needed, start whatever is not running, wait until CDC flows
#   stack.sh down [--wipe]      stop exactly the processes this stack started; --wipe also deletes LS_STACK_DIR
#   stack.sh status             one line per component: state, PID, port
#   stack.sh logs [COMPONENT] [--no-follow]   tail postgres|tansu|connect logs (all by default)
#   stack.sh restart COMPONENT  stop one component (postgres|tansu|connect) and bring the stack back up
#
# Contract of `up`: when it returns 0, the replication slot is active and a heartbeat newer than the start of `up`
# has been read from the broker, so every row committed afterwards is captured. It is idempotent: a component
# whose PID file names a live process is left alone. tansu runs the memory engine, so a restarted broker comes back
# empty: topics are (re-)created on every `up`, and Connect resumes from its offsets file without re-snapshotting.
#
# Everything binds 127.0.0.1. Settings (environment, with defaults):
#   LS_STACK_DIR=<repo>/.stack  LS_PG_PORT=55432  LS_KAFKA_PORT=19092  LS_PARTITIONS=4
#   LS_PG_USER=ledgerstream  LS_PG_PASSWORD=ledgerstream  LS_PG_DB=fintech  LS_UP_TIMEOUT=180 (seconds)
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

export LS_STACK_DIR="${LS_STACK_DIR:-$LS_REPO/.stack}"
export LS_PG_HOST=127.0.0.1
export LS_PG_PORT="${LS_PG_PORT:-55432}"
export LS_KAFKA_PORT="${LS_KAFKA_PORT:-19092}"
export LS_PARTITIONS="${LS_PARTITIONS:-4}"
export LS_PG_USER="${LS_PG_USER:-ledgerstream}"
# A local, loopback-only development default; the compose stack takes its credentials from .env instead.
export LS_PG_PASSWORD="${LS_PG_PASSWORD:-ledgerstream}"
export LS_PG_DB="${LS_PG_DB:-fintech}"
export LS_KAFKA_BOOTSTRAP="127.0.0.1:$LS_KAFKA_PORT"
export LS_CONNECT_OFFSETS="$LS_STACK_DIR/connect/offsets.dat"
LS_UP_TIMEOUT="${LS_UP_TIMEOUT:-180}"

PG_DATA="$LS_STACK_DIR/pg/data"
PG_RUN="$LS_STACK_DIR/pg/run"
LOGS="$LS_STACK_DIR/logs"
PIDS="$LS_STACK_DIR/pids"
HEARTBEAT_TOPIC="__debezium-heartbeat.fintech"
SLOT=ledgerstream_slot
COMPONENTS=(postgres tansu connect)

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# initdb and postgres refuse to run as root.
if [ "$(id -u)" -eq 0 ]; then PG_OS_USER=postgres; else PG_OS_USER="$(id -un)"; fi
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# Superuser over the private socket (peer auth); the application role goes over TCP with its password.
psql_admin() { as_pg "$LS_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$LS_PG_PORT" -U "$PG_OS_USER" "$@"; }
psql_app() {
    PGPASSWORD="$LS_PG_PASSWORD" "$LS_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$LS_PG_PORT user=$LS_PG_USER dbname=$LS_PG_DB" "$@"
}

# --- process bookkeeping ------------------------------------------------------------------------------------------
# Each component runs as the leader of its own session (setsid; pg_ctl does it for PostgreSQL), so its PID is also
# its session id: `down` can then find and stop stray processes of exactly this component, nothing else.

marker() {
    case "$1" in
        postgres) echo "$LS_PG_BIN/postgres" ;;
        tansu) echo "$LS_TANSU" ;;
        connect) echo "ledgerstream.connect.Launcher" ;;
    esac
}

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

# True if the PID file names a live process that is really this component (guards against PID reuse).
alive() {
    local pid
    pid="$(pid_of "$1")"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$(marker "$1")"
}

# "pid:starttime" identifies a process across PID reuse; same_process is true while that exact process lives.
stamp() { local st; st="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20)" && echo "$1:$st"; }
same_process() { [ -n "${1#*:}" ] && [ "$(stamp "${1%%:*}")" = "$1" ]; }

# The component's process tree: its session (stray children of a KILLed JVM or broker) plus its descendants
# (PostgreSQL backends call setsid(), so they leave the postmaster's session but stay its children).
component_pids() {
    ps -eo pid=,ppid=,sid= | awk -v root="$1" '
        { pid[NR] = $1; parent[$1] = $2; sid[$1] = $3 }
        END {
            for (i = 1; i <= NR; i++) {
                p = pid[i]; q = p
                while (q != "" && q > 1 && q != root && sid[q] != root) q = parent[q]
                if (q == root || sid[q] == root) print p
            }
        }'
}

port_of() {
    case "$1" in
        postgres) echo "$LS_PG_PORT" ;;
        tansu) echo "$LS_KAFKA_PORT" ;;
        connect) echo "-" ;;
    esac
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_until() {
    local what="$1" timeout="$2" deadline
    shift 2
    deadline=$((SECONDS + timeout))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.3
    done
    log "$what"
}

tail_log() { tail -n 30 "$LOGS/$1.log" >&2 || true; }

# --- postgres -----------------------------------------------------------------------------------------------------

pg_init() {
    [ -f "$PG_DATA/PG_VERSION" ] && return 0
    log "initialising PostgreSQL cluster in $PG_DATA"
    mkdir -p "$PG_DATA" "$PG_RUN"
    chown "$PG_OS_USER" "$LS_STACK_DIR/pg" "$PG_DATA" "$PG_RUN"
    chmod 700 "$PG_DATA"
    as_pg "$LS_PG_BIN/initdb" -D "$PG_DATA" -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >"$LOGS/initdb.log" 2>&1 || {
        tail_log initdb
        die "initdb failed"
    }
    # max_replication_slots/max_wal_senders: one slot for Debezium plus headroom for pg_recvlogical debugging.
    cat >>"$PG_DATA/postgresql.conf" <<EOF

# ledgerstream native stack
listen_addresses = '127.0.0.1'
port = $LS_PG_PORT
unix_socket_directories = '$PG_RUN'
wal_level = logical
max_replication_slots = 8
max_wal_senders = 8
EOF
}

pg_start() {
    if alive postgres; then
        log "postgres already running (pid $(pid_of postgres))"
        return 0
    fi
    pg_init
    touch "$LOGS/postgres.log"
    chown "$PG_OS_USER" "$LOGS/postgres.log"
    # pg_ctl puts the postmaster in a session of its own (pid == sid), which is what `down` relies on. The port is
    # passed on the command line so that LS_PG_PORT may change between runs of the same cluster.
    as_pg "$LS_PG_BIN/pg_ctl" -D "$PG_DATA" -l "$LOGS/postgres.log" -o "-p $LS_PG_PORT" -w -t 60 start \
        >>"$LOGS/pg_ctl.log" 2>&1 || { tail_log postgres; die "postgres did not start"; }
    head -n 1 "$PG_DATA/postmaster.pid" >"$PIDS/postgres.pid"
    wait_until "postgres up on 127.0.0.1:$LS_PG_PORT (pid $(pid_of postgres))" 60 pg_ready ||
        { tail_log postgres; die "postgres did not answer"; }
}

pg_ready() {
    alive postgres || { tail_log postgres; die "postgres exited"; }
    as_pg "$LS_PG_BIN/pg_isready" -q -h "$PG_RUN" -p "$LS_PG_PORT"
}

# Role, database and migrations: all idempotent, run on every `up` so that a new migration or a changed password
# takes effect without a wipe.
pg_provision() {
    psql_admin -d postgres -v role="$LS_PG_USER" -v pw="$LS_PG_PASSWORD" -v db="$LS_PG_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN REPLICATION', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN REPLICATION PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
    local m
    for m in "$LS_REPO"/migrations/*.sql; do
        psql_app -f "$m" >>"$LOGS/migrations.log" 2>&1 || { tail_log migrations; die "migration $m failed"; }
    done
}

# --- tansu --------------------------------------------------------------------------------------------------------

tansu_gone() { ! alive tansu; }

tansu_start() {
    if alive tansu; then
        if port_open "$LS_KAFKA_PORT"; then
            log "tansu already running (pid $(pid_of tansu))"
            return 0
        fi
        # On TERM tansu closes its listener, then waits for its clients (Connect) to go away.
        log "tansu (pid $(pid_of tansu)) is shutting down; waiting for it to exit"
        wait_until "tansu exited" 60 tansu_gone || die "tansu (pid $(pid_of tansu)) neither serves nor exits"
    fi
    # A broker that has just been stopped may still hold the port while its clients disconnect.
    wait_until "port $LS_KAFKA_PORT free" 30 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$LS_KAFKA_PORT) 2>/dev/null" ||
        die "port $LS_KAFKA_PORT is taken by a process this stack did not start"
    local url="tcp://127.0.0.1:$LS_KAFKA_PORT"
    setsid "$LS_TANSU" broker --cluster-id ledgerstream --listener-url "$url" --advertised-listener-url "$url" \
        --storage-engine memory://tansu/ >>"$LOGS/tansu.log" 2>&1 </dev/null &
    echo $! >"$PIDS/tansu.pid"
    wait_until "tansu up on $LS_KAFKA_BOOTSTRAP (pid $(pid_of tansu))" 30 tansu_ready ||
        { tail_log tansu; die "tansu did not start"; }
}

tansu_ready() {
    alive tansu || { tail_log tansu; die "tansu exited"; }
    port_open "$LS_KAFKA_PORT"
}

topics_ensure() {
    "$LS_PY" "$LS_REPO/stack/tools/kafka_tools.py" ensure-topics "$LS_KAFKA_BOOTSTRAP" \
        "$LS_REPO/stack/topics.conf" "$LS_PARTITIONS" >>"$LOGS/topics.log" 2>&1 ||
        { tail_log topics; die "topic creation failed"; }
}

# --- connect ------------------------------------------------------------------------------------------------------

connect_start() {
    if alive connect; then
        log "connect already running (pid $(pid_of connect))"
        return 0
    fi
    mkdir -p "$LS_STACK_DIR/connect"
    local cp
    cp="$LS_LAUNCHER_DIR/classes:$(cat "$LS_LAUNCHER_DIR/classpath")"
    setsid java -Xmx384m -XX:+ExitOnOutOfMemoryError \
        -Dlog4j2.configurationFile="$LS_REPO/stack/connect/log4j2.properties" \
        -cp "$cp" ledgerstream.connect.Launcher \
        "$LS_REPO/stack/debezium/worker.properties" "$LS_REPO/stack/debezium/connector.properties" \
        >>"$LOGS/connect.log" 2>&1 </dev/null &
    echo $! >"$PIDS/connect.pid"
    log "connect starting (pid $(pid_of connect)); streaming starts in about 5 s"
}

slot_active() {
    alive connect || { tail_log connect; die "connect exited"; }
    [ "$(psql_app -tA -c "SELECT active FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null)" = t ]
}

# --- commands -----------------------------------------------------------------------------------------------------

cmd_up() {
    local t0=$SECONDS since_ms
    since_ms="$(date +%s%3N)"
    "$LS_REPO/stack/bootstrap.sh"
    mkdir -p "$LOGS" "$PIDS"
    pg_start
    pg_provision
    tansu_start
    topics_ensure
    connect_start
    wait_until "replication slot $SLOT active" "$LS_UP_TIMEOUT" slot_active ||
        { tail_log connect; die "slot $SLOT not active after ${LS_UP_TIMEOUT}s"; }
    "$LS_PY" "$LS_REPO/stack/tools/kafka_tools.py" wait-heartbeat "$LS_KAFKA_BOOTSTRAP" "$HEARTBEAT_TOPIC" \
        "$since_ms" "$LS_UP_TIMEOUT" || { tail_log connect; die "no heartbeat on $HEARTBEAT_TOPIC"; }
    log "heartbeats flowing on $HEARTBEAT_TOPIC"
    log "up in $((SECONDS - t0)) s: postgres 127.0.0.1:$LS_PG_PORT (db $LS_PG_DB), kafka $LS_KAFKA_BOOTSTRAP"
}

stop_component() {
    local comp="$1" pid sig=TERM tree="" p
    pid="$(pid_of "$comp")"
    [ -n "$pid" ] || return 0
    if alive "$comp"; then
        for p in $(component_pids "$pid"); do tree+=" $(stamp "$p" || true)"; done
        echo "$tree" >>"$LS_STACK_DIR/.stopping"
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for every client session to end.
        [ "$comp" = postgres ] && sig=INT
        log "stopping $comp (pid $pid)"
        kill -"$sig" "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$comp (pid $pid) ignored SIG$sig for 30 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # Anything of this component still alive (a KILLed postmaster leaves its backends behind).
    if [ -n "$tree" ]; then
        local leftovers=""
        for p in $tree; do same_process "$p" && leftovers+=" ${p%%:*}"; done
        if [ -n "$leftovers" ]; then
            log "killing leftovers of $comp:$leftovers"
            # shellcheck disable=SC2086
            kill -KILL $leftovers 2>/dev/null || true
        fi
    fi
    rm -f "$PIDS/$comp.pid"
}

cmd_down() {
    local wipe=0 comp remaining="" p
    [ "${1:-}" = "--wipe" ] && wipe=1
    rm -f "$LS_STACK_DIR/.stopping"
    # Reverse order: Connect first so it flushes offsets while broker and database are still there.
    for comp in connect tansu postgres; do
        stop_component "$comp"
    done
    if [ -f "$LS_STACK_DIR/.stopping" ]; then
        for p in $(cat "$LS_STACK_DIR/.stopping"); do same_process "$p" && remaining+=" ${p%%:*}"; done
        rm -f "$LS_STACK_DIR/.stopping"
    fi
    [ -z "$remaining" ] || die "processes survived: $remaining"
    if [ "$wipe" -eq 1 ]; then
        log "wiping $LS_STACK_DIR"
        rm -rf "$LS_STACK_DIR"
    fi
    log "down"
}

cmd_status() {
    local comp rc=0
    for comp in "${COMPONENTS[@]}"; do
        if alive "$comp"; then
            printf '%-9s running  pid %-8s port %s\n' "$comp" "$(pid_of "$comp")" "$(port_of "$comp")"
        else
            printf '%-9s stopped\n' "$comp"
            rc=3
        fi
    done
    if alive postgres; then
        printf '%-9s %s\n' slot "$(psql_app -tA -c \
            "SELECT CASE WHEN active THEN 'active' ELSE 'inactive' END || ' confirmed_flush_lsn ' || coalesce(confirmed_flush_lsn::text, '-')
               FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null | grep . || echo absent)"
    fi
    return $rc
}

cmd_logs() {
    local comp="" follow=(-F) files=()
    for a in "$@"; do
        case "$a" in
            --no-follow) follow=() ;;
            postgres | tansu | connect) comp="$a" ;;
            *) die "unknown logs argument $a (postgres, tansu, connect, --no-follow)" ;;
        esac
    done
    if [ -n "$comp" ]; then files=("$LOGS/$comp.log"); else for c in "${COMPONENTS[@]}"; do files+=("$LOGS/$c.log"); done; fi
    exec tail -n 50 "${follow[@]}" "${files[@]}"
}

cmd_restart() {
    local comp="${1:-}"
    case "$comp" in
        postgres | tansu | connect) ;;
        *) die "restart takes one of: postgres, tansu, connect" ;;
    esac
    stop_component "$comp"
    cmd_up
}

case "${1:-}" in
    up) cmd_up ;;
    restart) shift; cmd_restart "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) cmd_status ;;
    logs) shift; cmd_logs "$@" ;;
    *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
