"""CrossAlign throughput on one device: `python -m scripts.bench gpu [--device cuda]` (scripts/gpu_check.sh runs it).

For each batch size (`--batches`, default 32 and 128) and precision (fp32; bf16 autocast, the CUDA
default of run.py): the training step of `exp/` (`training_step` on `anomaly_loss`, Adam over the
trainable weights) and an inference pass, as windows per second (median of `--steps` after
`--warmup`, the device synchronised around each), and the peak device memory of that configuration
(`torch.cuda.max_memory_allocated`, reset before it). The model is built as run.py builds it, with a
random-init backbone (`--llm gpt2 --llm_init random --llm_layers 6`: GPT-2 small's architecture,
nothing downloaded) on windows `[B, 100, 38]` of random data. On CUDA the TF32/cuDNN settings of
`exp/` apply. The Mamba backend that ran is printed (mamba_ssm's kernels or our scan).
"""
from __future__ import annotations

import argparse
from contextlib import nullcontext

import torch

from layers.mamba import Mamba
from scripts.bench.scan import median_ms


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", default="32,128")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--seq_len", type=int, default=100)
    p.add_argument("--channels", type=int, default=38)
    p.add_argument("--llm", default="gpt2")
    p.add_argument("--llm_layers", type=int, default=6)
    p.add_argument("--model_flags", default="", help="extra run.py flags for CrossAlign")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)


def build_model(args: argparse.Namespace, device: torch.device):
    import run
    from models.CrossAlign import Model
    flags = ["--llm", args.llm, "--llm_init", "random", "--llm_layers", str(args.llm_layers), *args.model_flags.split()]
    margs = run.build_parser().parse_args(flags)
    margs.enc_in = margs.c_out = args.channels
    margs.seq_len = args.seq_len
    torch.manual_seed(0)
    return Model(margs).to(device)


def measure(args: argparse.Namespace) -> list[dict]:
    from exp.exp_anomaly_detection import anomaly_loss
    from exp.exp_basic import make_optimizer, training_step

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    rows = []
    for precision in args.precisions.split(","):
        if precision not in ("fp32", "bf16"):
            raise SystemExit(f"--precisions: unknown {precision!r}; use fp32 and/or bf16")
        for batch in (int(b) for b in args.batches.split(",")):
            model = build_model(args, device)
            opt = make_optimizer([p for p in model.parameters() if p.requires_grad], 1e-4)  # the training loop's
            x = torch.randn(batch, args.seq_len, args.channels, device=device)

            def autocast():
                return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

            def train() -> None:
                model.train()
                training_step(lambda: anomaly_loss(model, x, autocast()), opt, check_finite=False)

            @torch.no_grad()
            def infer() -> None:
                model.eval()
                with autocast():
                    model(x)

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t_train = median_ms(train, device, args.warmup, args.steps) / 1e3
            t_infer = median_ms(infer, device, args.warmup, args.steps) / 1e3
            peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
            # the Mamba blocks' scan only (dropout, GELU and LoRA modules report their own backends too)
            used = sorted({m.backend_used for m in model.modules() if isinstance(m, Mamba) and m.backend_used})
            rows.append({"precision": precision, "batch": batch, "train_ms": 1e3 * t_train,
                         "train_windows_s": batch / t_train, "infer_ms": 1e3 * t_infer,
                         "infer_windows_s": batch / t_infer, "peak_gib": peak, "mamba": ",".join(used)})
            del model, opt, x
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def table(rows: list[dict]) -> str:
    head = (f"| precision | batch | train step ms | train windows/s | inference ms | inference windows/s "
            f"| peak GPU memory GiB | Mamba scan |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['batch']} | {r['train_ms']:.1f} | {r['train_windows_s']:.0f} | "
                     f"{r['infer_ms']:.1f} | {r['infer_windows_s']:.0f} | {r['peak_gib']:.2f} | {r['mamba']} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False (a CPU build of torch, or no GPU visible)")
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"CrossAlign --llm {args.llm} --llm_init random --llm_layers {args.llm_layers} on {name}, windows "
          f"[B, {args.seq_len}, {args.channels}], median of {args.steps} steps after {args.warmup}")
    print(table(measure(args)))
    return 0
