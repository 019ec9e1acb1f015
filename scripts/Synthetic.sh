#!/usr/bin/env bash
# The built-in default: CrossAlign on the seeded synthetic benchmark (no files needed).
# bash scripts/Synthetic.sh [run.py flags]   (see scripts/anomaly.sh for environment overrides)
exec bash "$(dirname "$0")/anomaly.sh" Synthetic "$@"
