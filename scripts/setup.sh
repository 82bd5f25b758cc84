#!/usr/bin/env bash
# Create .venv and install the project (idempotent: reinstalls only when the requirement files change).
# Usage: scripts/setup.sh [dev]   -- "dev" adds the test tools (pytest, ruff, playwright) and Debian's Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $PY"
  "$PY" -m venv .venv
fi
req=requirements.txt
[ "${1:-}" = dev ] && req=requirements-dev.txt
stamp=.venv/.installed-$(cat requirements.txt requirements-dev.txt "$req" pyproject.toml | sha256sum | cut -c1-16)-$(basename "$req")
if [ ! -f "$stamp" ]; then
  echo "==> installing $req into .venv (about a minute on a fresh machine)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  touch "$stamp"
fi
# `import torchvision` (and timm) work in any script run with .venv/bin/python: see scripts/site/gbs_torchvision_hook.py
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp scripts/site/gbs_torchvision_hook.py scripts/site/gbs-torchvision-hook.pth "$site/"
if [ "${1:-}" = dev ] && [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Debian's Chromium for the browser tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
