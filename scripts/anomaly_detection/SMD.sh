#!/usr/bin/env bash
# CrossAlign on SMD: ROOT=./dataset/SMD bash scripts/anomaly_detection/SMD.sh [run.py flags]  (see scripts/anomaly_detection/anomaly.sh)
CROSSALIGN_SCRIPT=scripts/anomaly_detection/SMD.sh exec bash "$(dirname "$0")/anomaly.sh" SMD "$@"
