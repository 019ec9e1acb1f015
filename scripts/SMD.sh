#!/usr/bin/env bash
# CrossAlign on SMD: ROOT=./dataset/SMD bash scripts/SMD.sh [run.py flags]  (see scripts/anomaly.sh)
exec bash "$(dirname "$0")/anomaly.sh" SMD "$@"
