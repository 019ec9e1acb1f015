#!/usr/bin/env bash
# First check of the CUDA path on a GPU machine (< 10 minutes on one GPU; nothing is downloaded:
# random-init GPT-2 architecture, synthetic data). Prints, as Markdown tables:
#   1. the environment (torch, CUDA, GPU, transformers, peft, mamba_ssm);
#   2. CrossAlign (--llm_layers 6) training step and inference throughput at batch 32 and 128, fp32 and bf16,
#      with peak GPU memory (python -m scripts.bench gpu);
#   3. our selective scan against mamba_ssm's CUDA kernel, agreement and speed, when mamba_ssm imports
#      (python -m scripts.bench scan --device cuda);
#   4. when two GPUs are visible, a short run.py training epoch on 1 GPU and under torchrun on 2 (DDP, NCCL).
# Usage: bash scripts/gpu_check.sh            (from anywhere; it runs in the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
export CROSSALIGN_DIST_TIMEOUT_MIN="${CROSSALIGN_DIST_TIMEOUT_MIN:-5}"

python - <<'PY'
import importlib, sys
import torch
if not torch.cuda.is_available():
    print(f"error: no CUDA device visible to torch {torch.__version__} (CUDA build: {torch.version.cuda}); "
          "install the CUDA build of torch (README, CUDA machines)", file=sys.stderr)
    sys.exit(2)
def version(name):
    try:
        return importlib.import_module(name).__version__
    except Exception as err:  # noqa: BLE001
        return f"not usable ({type(err).__name__})"
print("| item | value |\n|---|---|")
print(f"| torch | {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}) |")
print(f"| GPUs | {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)} |")
print(f"| bf16 supported | {torch.cuda.is_bf16_supported()} |")
for name in ("transformers", "peft", "mamba_ssm", "causal_conv1d"):
    print(f"| {name} | {version(name)} |")
from layers.mamba import probe_cuda_ops
why = probe_cuda_ops(torch.device("cuda:0"))
print(f"| mamba_ssm first-call check | {'passed' if why is None else why} |")
PY

echo
echo "## CrossAlign throughput (random-init GPT-2, 6 blocks; windows [B, 100, 38])"
timeout 420 python -m scripts.bench gpu --device cuda --batches 32,128 --precisions fp32,bf16

echo
echo "## selective scan: ours vs mamba_ssm (B=32, L=100, d_inner=256, d_state=16)"
timeout 120 python -m scripts.bench scan --device cuda --dtypes fp32,bf16 --warmup 3 --repeats 10

NGPU=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
  echo
  echo "## one training epoch of 30 steps (global batch 64): 1 GPU vs torchrun on 2 GPUs"
  FLAGS=(--model CrossAlign --llm gpt2 --llm_init random --llm_layers 6 --data Synthetic --synthetic_length 12000
         --synthetic_channels 38 --seq_len 100 --step 10 --batch_size 64 --train_epochs 1 --max_train_steps 30
         --no_progress --no_plot --checkpoints /tmp/gpu_check/ckpt --results /tmp/gpu_check/results)
  rm -rf /tmp/gpu_check
  echo "1 GPU:  $(timeout 240 python run.py "${FLAGS[@]}" --des gpu1 | grep '^epoch 1')"
  echo "2 GPUs: $(CUDA_VISIBLE_DEVICES=0,1 timeout 240 torchrun --standalone --nproc_per_node 2 run.py "${FLAGS[@]}" \
                 --des gpu2 | grep '^epoch 1')"
else
  echo
  echo "(one GPU visible: no 2-GPU torchrun row)"
fi
