#!/usr/bin/env bash
# CrossAlign on Traffic, horizons 96/192/336/720: ROOT=./dataset/traffic bash scripts/long_term_forecast/Traffic.sh [run.py flags]
# (see scripts/long_term_forecast/forecast.sh for EPOCHS, HORIZONS, MODEL, EXTRA)
CROSSALIGN_SCRIPT=scripts/long_term_forecast/Traffic.sh exec bash "$(dirname "$0")/forecast.sh" Traffic "$@"
