#!/usr/bin/env bash
# Old path of scripts/anomaly_detection/SMD.sh, kept for one release.
exec bash "$(dirname "$0")/anomaly_detection/SMD.sh" "$@"
