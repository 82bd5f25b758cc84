#!/usr/bin/env bash
# Install (if needed) everything the tests need, lint, and run the whole test suite (browser tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
echo "==> ruff"
.venv/bin/ruff check .
echo "==> pytest"
exec .venv/bin/python -m pytest -q "$@"
