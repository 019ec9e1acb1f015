#!/usr/bin/env bash
# CrossAlign on MSL: ROOT=./dataset/MSL bash scripts/MSL.sh [run.py flags]  (see scripts/anomaly.sh)
exec bash "$(dirname "$0")/anomaly.sh" MSL "$@"
