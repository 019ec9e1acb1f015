#!/usr/bin/env bash
# CrossAlign on Exchange, horizons 96/192/336/720: ROOT=./dataset/exchange_rate bash scripts/long_term_forecast/Exchange.sh [run.py flags]
# (see scripts/long_term_forecast/forecast.sh for EPOCHS, HORIZONS, MODEL, EXTRA)
CROSSALIGN_SCRIPT=scripts/long_term_forecast/Exchange.sh exec bash "$(dirname "$0")/forecast.sh" Exchange "$@"
