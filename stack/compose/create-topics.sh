#!/bin/sh
# docker-compose `topic-init` job: creates every topic of stack/topics.conf (mounted at $TOPICS_CONF) with
# kafka-topics.sh. Same file, same format and same default partition count as the native stack's
# stack/tools/kafka_tools.py ensure-topics. POSIX sh: the apache/kafka image has no bash.
set -eu
: "${KAFKA_BOOTSTRAP:?}" "${TOPICS_CONF:?}"
default="${LS_PARTITIONS:-4}"
kt=/opt/kafka/bin/kafka-topics.sh
n=0
while IFS= read -r line || [ -n "$line" ]; do
    line="${line%%#*}"
    # shellcheck disable=SC2086
    set -- $line
    [ $# -eq 0 ] && continue
    [ $# -le 2 ] || { echo "bad line in $TOPICS_CONF: $line" >&2; exit 1; }
    "$kt" --bootstrap-server "$KAFKA_BOOTSTRAP" --create --if-not-exists \
        --topic "$1" --partitions "${2:-$default}" --replication-factor 1
    n=$((n + 1))
done <"$TOPICS_CONF"
[ "$n" -gt 0 ] || { echo "no topics in $TOPICS_CONF" >&2; exit 1; }
"$kt" --bootstrap-server "$KAFKA_BOOTSTRAP" --list
