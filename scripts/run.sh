#!/usr/bin/env bash
# Install (if needed) and launch the dashboard on the bundled default (digits + model zoo). Extra args go to streamlit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# loopback only unless told otherwise (GBS_ADDRESS=0.0.0.0 make run to share on the network)
exec .venv/bin/streamlit run app.py --browser.gatherUsageStats false --server.address "${GBS_ADDRESS:-127.0.0.1}" "$@"
