#!/usr/bin/env bash
# CrossAlign on SWaT: ROOT=./dataset/SWaT bash scripts/SWAT.sh [run.py flags]  (see scripts/anomaly.sh)
exec bash "$(dirname "$0")/anomaly.sh" SWaT "$@"
