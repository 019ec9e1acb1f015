#!/usr/bin/env bash
# Old path of scripts/anomaly_detection/NIPS_TS_Water.sh, kept for one release.
exec bash "$(dirname "$0")/anomaly_detection/NIPS_TS_Water.sh" "$@"
