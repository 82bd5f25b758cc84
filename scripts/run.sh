#!/usr/bin/env bash
# Install (if needed) and launch the dashboard on the bundled default (digits + model zoo). Extra args go to streamlit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# loopback only unless told otherwise. To serve a lab: GBS_ADDRESS=0.0.0.0 GBS_DATA_ROOT=/srv/data make run
# (paths outside GBS_DATA_ROOT are refused; remote users bring their own files as uploads).
addr="${GBS_ADDRESS:-127.0.0.1}"
case "$addr" in
  127.*|localhost|::1) ;;
  *) if [ -z "${GBS_DATA_ROOT:-}" ]; then
       echo "refusing to serve on $addr without GBS_DATA_ROOT: any visitor could read this machine's files by path." >&2
       echo "Set GBS_DATA_ROOT to the folder of data to offer, e.g. GBS_ADDRESS=$addr GBS_DATA_ROOT=/srv/data make run" >&2
       exit 2
     fi ;;
esac
exec .venv/bin/streamlit run app.py --browser.gatherUsageStats false --server.address "$addr" "$@"
