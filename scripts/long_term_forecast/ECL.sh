#!/usr/bin/env bash
# CrossAlign on ECL, horizons 96/192/336/720: ROOT=./dataset/electricity bash scripts/long_term_forecast/ECL.sh [run.py flags]
# (see scripts/long_term_forecast/forecast.sh for EPOCHS, HORIZONS, MODEL, EXTRA)
CROSSALIGN_SCRIPT=scripts/long_term_forecast/ECL.sh exec bash "$(dirname "$0")/forecast.sh" ECL "$@"
