#!/usr/bin/env bash
# CrossAlign on PSM: ROOT=./dataset/PSM bash scripts/PSM.sh [run.py flags]  (see scripts/anomaly.sh)
exec bash "$(dirname "$0")/anomaly.sh" PSM "$@"
