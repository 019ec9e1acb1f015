#!/usr/bin/env bash
# CrossAlign on ETTh1, horizons 96/192/336/720: ROOT=./dataset/ETT-small bash scripts/long_term_forecast/ETTh1.sh [run.py flags]
# (see scripts/long_term_forecast/forecast.sh for EPOCHS, HORIZONS, MODEL, EXTRA)
CROSSALIGN_SCRIPT=scripts/long_term_forecast/ETTh1.sh exec bash "$(dirname "$0")/forecast.sh" ETTh1 "$@"
