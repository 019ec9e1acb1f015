#!/usr/bin/env bash
# Train then test one forecasting dataset at lookback 96 (or SEQ_LEN) and each horizon:
#   bash scripts/long_term_forecast/forecast.sh <DATA> [extra run.py flags]
#
# Per-dataset defaults (file, batch size, epochs) come from the table in
# data_provider/specs.py; flags given here win. Environment overrides:
#   ROOT=<folder>          data folder (default ./dataset/<folder of DATA>, e.g. ./dataset/ETT-small)
#   MODEL=<name>           model (default CrossAlign; RepeatLast is the naive baseline)
#   EPOCHS=<n>             training epochs per horizon (default: the dataset table)
#   HORIZONS="<list>"      horizons (default "96 192 336 720", the paper's table)
#   SEQ_LEN=<n>            lookback (default 96; label_len is half of it)
#   EXTRA="<flags>"        more run.py flags, e.g. EXTRA="--llm_init random --llm_layers 1 --max_train_steps 20"
set -euo pipefail
cd "$(dirname "$0")/../.."
# run.py's error messages name these variables beside the flags they set
export CROSSALIGN_SCRIPT=${CROSSALIGN_SCRIPT:-scripts/long_term_forecast/forecast.sh}
export CROSSALIGN_SCRIPT_VARS="task_name=- is_training=- data=- features=- label_len=- model_id=- root_path=ROOT model=MODEL train_epochs=EPOCHS pred_len=HORIZONS seq_len=SEQ_LEN"
DATA=${1:?usage: scripts/long_term_forecast/forecast.sh <DATA> [flags]}
shift
args=(--task_name long_term_forecast --is_training 1 --model "${MODEL:-CrossAlign}" --data "$DATA"
      --features M --seq_len "${SEQ_LEN:-96}" --label_len "$(( ${SEQ_LEN:-96} / 2 ))")
if [ -n "${ROOT:-}" ]; then args+=(--root_path "$ROOT"); fi
if [ -n "${EPOCHS:-}" ]; then args+=(--train_epochs "$EPOCHS"); fi
# shellcheck disable=SC2206
extra=(${EXTRA:-})
for pred_len in ${HORIZONS:-96 192 336 720}; do
  python -u run.py "${args[@]}" --pred_len "$pred_len" --model_id "${DATA}_${SEQ_LEN:-96}_${pred_len}" "${extra[@]}" "$@"
done
