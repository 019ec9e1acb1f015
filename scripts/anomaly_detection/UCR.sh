#!/usr/bin/env bash
# CrossAlign on one UCR series: ENTITY=135 ROOT=./dataset/UCR bash scripts/anomaly_detection/UCR.sh [run.py flags]
: "${ENTITY:?set ENTITY to the UCR series id, e.g. ENTITY=135}"
CROSSALIGN_SCRIPT=scripts/anomaly_detection/UCR.sh exec bash "$(dirname "$0")/anomaly.sh" UCR "$@"
