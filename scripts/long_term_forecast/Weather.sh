#!/usr/bin/env bash
# CrossAlign on Weather, horizons 96/192/336/720: ROOT=./dataset/weather bash scripts/long_term_forecast/Weather.sh [run.py flags]
# (see scripts/long_term_forecast/forecast.sh for EPOCHS, HORIZONS, MODEL, EXTRA)
CROSSALIGN_SCRIPT=scripts/long_term_forecast/Weather.sh exec bash "$(dirname "$0")/forecast.sh" Weather "$@"
