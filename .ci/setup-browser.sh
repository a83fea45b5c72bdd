#!/usr/bin/env bash
# Install what the browser tests (tests/browser, pytest marker `browser`) need on a fresh
# Debian machine that has Python, pip and apt: Debian's Chromium, and Playwright (which
# drives that Chromium; no browser download), JupyterLab 4 and Notebook 7 in the active
# Python environment. Idempotent: safe to run again.
set -euo pipefail

PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null 2>&1; then
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

"$PYTHON" -m pip install --quiet "playwright>=1.49" "jupyterlab>=4,<5" "notebook>=7,<8"

chromium --version 2>/dev/null  # (the Debian wrapper script prints noise on stderr)
"$PYTHON" - <<'PY'
from importlib.metadata import version

for name in ("playwright", "jupyterlab", "notebook"):
    print(name, version(name))
PY
