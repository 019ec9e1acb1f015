#!/usr/bin/env bash
# CrossAlign on SMAP: ROOT=./dataset/SMAP bash scripts/SMAP.sh [run.py flags]  (see scripts/anomaly.sh)
exec bash "$(dirname "$0")/anomaly.sh" SMAP "$@"
