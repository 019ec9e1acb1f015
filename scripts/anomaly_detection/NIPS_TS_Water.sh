#!/usr/bin/env bash
# CrossAlign on NIPS_TS_Water: ROOT=./dataset/NIPS_TS_Water bash scripts/anomaly_detection/NIPS_TS_Water.sh [run.py flags]  (see scripts/anomaly_detection/anomaly.sh)
CROSSALIGN_SCRIPT=scripts/anomaly_detection/NIPS_TS_Water.sh exec bash "$(dirname "$0")/anomaly.sh" NIPS_TS_Water "$@"
