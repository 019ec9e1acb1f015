#!/usr/bin/env bash
# CrossAlign on ILI at the Time-Series-Library's ILI setting: lookback 36, horizons 24/36/48/60.
#   ROOT=./dataset/illness bash scripts/long_term_forecast/ILI.sh [run.py flags]
# (see scripts/long_term_forecast/forecast.sh for EPOCHS, HORIZONS, MODEL, EXTRA, SEQ_LEN)
CROSSALIGN_SCRIPT=scripts/long_term_forecast/ILI.sh SEQ_LEN=${SEQ_LEN:-36} HORIZONS=${HORIZONS:-24 36 48 60} exec bash "$(dirname "$0")/forecast.sh" ILI "$@"
