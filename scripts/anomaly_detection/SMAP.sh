#!/usr/bin/env bash
# CrossAlign on SMAP: ROOT=./dataset/SMAP bash scripts/anomaly_detection/SMAP.sh [run.py flags]  (see scripts/anomaly_detection/anomaly.sh)
CROSSALIGN_SCRIPT=scripts/anomaly_detection/SMAP.sh exec bash "$(dirname "$0")/anomaly.sh" SMAP "$@"
