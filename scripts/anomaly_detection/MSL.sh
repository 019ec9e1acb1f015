#!/usr/bin/env bash
# CrossAlign on MSL: ROOT=./dataset/MSL bash scripts/anomaly_detection/MSL.sh [run.py flags]  (see scripts/anomaly_detection/anomaly.sh)
CROSSALIGN_SCRIPT=scripts/anomaly_detection/MSL.sh exec bash "$(dirname "$0")/anomaly.sh" MSL "$@"
