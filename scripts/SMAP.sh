#!/usr/bin/env bash
# Old path of scripts/anomaly_detection/SMAP.sh, kept for one release.
exec bash "$(dirname "$0")/anomaly_detection/SMAP.sh" "$@"
