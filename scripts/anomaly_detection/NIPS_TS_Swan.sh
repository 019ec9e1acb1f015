#!/usr/bin/env bash
# CrossAlign on NIPS_TS_Swan: ROOT=./dataset/NIPS_TS_Swan bash scripts/anomaly_detection/NIPS_TS_Swan.sh [run.py flags]  (see scripts/anomaly_detection/anomaly.sh)
CROSSALIGN_SCRIPT=scripts/anomaly_detection/NIPS_TS_Swan.sh exec bash "$(dirname "$0")/anomaly.sh" NIPS_TS_Swan "$@"
