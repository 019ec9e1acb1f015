#!/usr/bin/env bash
# CrossAlign on SWaT: ROOT=./dataset/SWaT bash scripts/anomaly_detection/SWAT.sh [run.py flags]  (see scripts/anomaly_detection/anomaly.sh)
CROSSALIGN_SCRIPT=scripts/anomaly_detection/SWAT.sh exec bash "$(dirname "$0")/anomaly.sh" SWaT "$@"
