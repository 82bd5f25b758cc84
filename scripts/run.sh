#!/usr/bin/env bash
# Install (if needed) and launch the dashboard on the bundled default (digits + model zoo). Extra args go to streamlit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/streamlit run app.py --browser.gatherUsageStats false "$@"
