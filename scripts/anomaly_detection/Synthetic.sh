#!/usr/bin/env bash
# The built-in default: CrossAlign on the seeded synthetic benchmark (no files needed).
# bash scripts/anomaly_detection/Synthetic.sh [run.py flags]   (see scripts/anomaly_detection/anomaly.sh for environment overrides)
CROSSALIGN_SCRIPT=scripts/anomaly_detection/Synthetic.sh exec bash "$(dirname "$0")/anomaly.sh" Synthetic "$@"
