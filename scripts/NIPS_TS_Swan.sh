#!/usr/bin/env bash
# Old path of scripts/anomaly_detection/NIPS_TS_Swan.sh, kept for one release.
exec bash "$(dirname "$0")/anomaly_detection/NIPS_TS_Swan.sh" "$@"
