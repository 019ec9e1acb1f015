#!/usr/bin/env bash
# Train then test one anomaly-detection dataset: bash scripts/anomaly_detection/anomaly.sh <DATA> [extra run.py flags]
#
# Per-dataset defaults (window, anomaly ratio, batch size, epochs) come from the
# table in data_provider/specs.py; flags given here win. Environment overrides:
#   ROOT=<folder>     data folder (default ./dataset/<DATA>)
#   MODEL=<name>      model (default CrossAlign)
#   EPOCHS=<n>        training epochs (default: the dataset table)
#   ENTITY=<id>       SMD machine (machine-1-2) or UCR series id
#   EXTRA="<flags>"   more run.py flags, e.g. EXTRA="--llm smollm2 --max_train_steps 100"
set -euo pipefail
cd "$(dirname "$0")/../.."
# run.py's error messages name these variables beside the flags they set
export CROSSALIGN_SCRIPT=${CROSSALIGN_SCRIPT:-scripts/anomaly_detection/anomaly.sh}
export CROSSALIGN_SCRIPT_VARS="task_name=- is_training=- data=- root_path=ROOT model=MODEL train_epochs=EPOCHS entity=ENTITY"
DATA=${1:?usage: scripts/anomaly_detection/anomaly.sh <DATA> [flags]}
shift
args=(--task_name anomaly_detection --is_training 1 --model "${MODEL:-CrossAlign}" --data "$DATA")
if [ "$DATA" != "Synthetic" ]; then args+=(--root_path "${ROOT:-./dataset/$DATA}"); fi
if [ -n "${EPOCHS:-}" ]; then args+=(--train_epochs "$EPOCHS"); fi
if [ -n "${ENTITY:-}" ]; then args+=(--entity "$ENTITY"); fi
# shellcheck disable=SC2206
extra=(${EXTRA:-})
exec python -u run.py "${args[@]}" "${extra[@]}" "$@"
