#!/usr/bin/env bash
# Installs what the `postgres`, `hub` and fault tests need on a fresh Debian machine:
# PostgreSQL server binaries (the tests run their own throw-away cluster, no system
# service is started), configurable-http-proxy (JupyterHub's proxy), and the Python
# packages jupyterhub and psycopg into the active Python environment.
# Idempotent: every step is skipped when its result is already there.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
PY="${PYTHON:-python}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

have_pg() {
    command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

need_apt=()
have_pg || need_apt+=(postgresql)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ "${#need_apt[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

if ! command -v configurable-http-proxy >/dev/null 2>&1; then
    $SUDO npm install -g --no-audit --no-fund configurable-http-proxy
fi

if ! "$PY" -c "import jupyterhub, psycopg" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "jupyterhub>=5" "psycopg[binary]>=3.1"
fi

echo "setup-services: postgresql $(ls -d /usr/lib/postgresql/*/ 2>/dev/null | xargs -n1 basename | tr '\n' ' ')," \
     "configurable-http-proxy $(configurable-http-proxy --version 2>/dev/null || echo '?')," \
     "jupyterhub $("$PY" -c 'import jupyterhub; print(jupyterhub.__version__)')"
