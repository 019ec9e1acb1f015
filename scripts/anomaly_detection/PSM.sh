#!/usr/bin/env bash
# CrossAlign on PSM: ROOT=./dataset/PSM bash scripts/anomaly_detection/PSM.sh [run.py flags]  (see scripts/anomaly_detection/anomaly.sh)
CROSSALIGN_SCRIPT=scripts/anomaly_detection/PSM.sh exec bash "$(dirname "$0")/anomaly.sh" PSM "$@"
