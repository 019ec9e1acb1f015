#!/usr/bin/env bash
# Old path of scripts/anomaly_detection/UCR.sh, kept for one release.
exec bash "$(dirname "$0")/anomaly_detection/UCR.sh" "$@"
