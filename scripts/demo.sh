#!/usr/bin/env bash
# The main job, on a fresh machine or a warm one:
#   1. installs/caches what it needs (stack/bootstrap.sh) and builds ledgerstream (release);
#   2. brings up the native local stack: PostgreSQL 15, tansu (Kafka protocol), Kafka Connect + Debezium;
#   3. starts `ledgerstream run` and the load generator (fraud patterns, bad rows, a live ADD COLUMN);
#   4. shows Debezium events per topic, then stops the generator, lets the pipeline drain and
#   5. queries the Iceberg tables with DuckDB and with `ledgerstream query`, and compares with PostgreSQL.
# Tunables: DEMO_DURATION (default 60s), DEMO_RATE (default 100/s), LS_* (see stack/stack.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export LEDGERSTREAM_CACHE="${LEDGERSTREAM_CACHE:-$HOME/.cache/ledgerstream}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$LEDGERSTREAM_CACHE/target}"
export PATH="$LEDGERSTREAM_CACHE/tools/bin:$PATH"
DURATION="${DEMO_DURATION:-60s}"
RATE="${DEMO_RATE:-100/s}"
PY="$LEDGERSTREAM_CACHE/venv/bin/python"

step() { printf '\n==> %s (%s)\n' "$*" "$(date +%T)"; }

step "bootstrap (first run: several minutes)"
bash stack/bootstrap.sh
step "build ledgerstream"
# The demo's load is light, so it shares the test suite's (debug) build; `ledgerstream bench` uses --release.
# Default features include `query` (`ledgerstream query`, DataFusion), shown at the end.
cargo build --bin ledgerstream
BIN="$CARGO_TARGET_DIR/debug/ledgerstream"

step "local stack up (fresh: the demo starts from empty tables, topics and state every time)"
# The broker keeps topics in memory, so a stack restarted since the last demo has lost them while PostgreSQL and the
# demo's checkpoints still remember them; starting clean keeps the demo's numbers about this run only.
bash stack/stack.sh down --wipe
bash stack/stack.sh up
PG_URL="postgres://ledgerstream:ledgerstream@127.0.0.1:${LS_PG_PORT:-55432}/fintech"
BROKERS="127.0.0.1:${LS_KAFKA_PORT:-19092}"

DATA="$ROOT/.data/demo"
rm -rf "$DATA"
mkdir -p "$DATA"
export LEDGERSTREAM__KAFKA__BROKERS="$BROKERS"
export LEDGERSTREAM__PIPELINE__DATA_DIR="$DATA"

step "ledgerstream run (logs: $DATA/run.log)"
"$BIN" run --config deploy/ledgerstream.local.toml >"$DATA/run.log" 2>&1 &
RUN_PID=$!
cleanup() { kill -TERM "$RUN_PID" 2>/dev/null || true; }
trap cleanup EXIT

step "generate load for $DURATION at $RATE"
"$BIN" generate --pg-url "$PG_URL" --rate "$RATE" --duration "$DURATION" \
  --fraud-rate 0.02 --bad-row-rate 0.01 --evolve-after 2000 --truth-out "$DATA/fraud-truth.jsonl"

step "Debezium events per topic"
"$PY" stack/tools/kafka_tools.py counts "$BROKERS" fintech

step "drain: SIGTERM → final checkpoint"
sleep 8
kill -TERM "$RUN_PID"
wait "$RUN_PID" || { echo "ledgerstream exited with an error; see $DATA/run.log"; tail -20 "$DATA/run.log"; exit 1; }
trap - EXIT

step "checkpoints (local and durable copy)"
"$BIN" checkpoints --config deploy/ledgerstream.local.toml list | { head -1; tail -3; }

step "query the lakehouse (DuckDB over Iceberg)"
"$PY" scripts/lakehouse.py --catalog "$DATA/catalog.db" summary
echo
echo "PostgreSQL ground truth (row changes are in the changelog; current rows here):"
psql -X -q -d "$PG_URL" -c "SELECT 'users' AS t, count(*) FROM users UNION ALL SELECT 'wallets', count(*) FROM wallets UNION ALL SELECT 'transactions', count(*) FROM transactions"

step "ledgerstream tables / ledgerstream query (DataFusion over the same tables)"
CONFIG=deploy/ledgerstream.local.toml
"$BIN" tables --config "$CONFIG"
echo
echo "Balances now, from the wallets changelog (sql/current_state/wallets_current.sql):"
"$BIN" query --config "$CONFIG" \
  "SELECT currency, count(*) AS wallets, sum(balance) AS total_balance FROM wallets_current GROUP BY currency ORDER BY currency"
echo "The same from PostgreSQL's wallets table:"
psql -X -q -d "$PG_URL" -c "SELECT currency, count(*) AS wallets, sum(balance) AS total_balance FROM wallets GROUP BY currency ORDER BY currency"
cat <<MSG

Try your own queries (more in docs/queries.md):
  LEDGERSTREAM__PIPELINE__DATA_DIR=$DATA $BIN query --config $CONFIG "SELECT * FROM users_current LIMIT 5"
  $PY scripts/lakehouse.py --catalog $DATA/catalog.db sql "SELECT * FROM transactions_changes LIMIT 5"
The stack keeps running; stop it with: bash stack/stack.sh down
MSG
