"""Benchmark of a training step: `python -m scripts.bench model [options]`.

Side by side in one run, on the same batch ``x [B, L, C]`` (default B=32,
L=100, C=38, the issue's setting):

- ``CrossAlign fp32`` / ``CrossAlign bf16``: the model as ``run.py`` builds
  it (``--llm gpt2 --llm_init random`` by default: GPT-2 small's architecture,
  no download; ``--llm_layers 6``; every other flag at its run.py default),
  the bf16 row inside ``torch.autocast(bfloat16)`` as ``--bf16 1`` trains;
- ``GPT2Model fp32``: a plain ``transformers.GPT2Model`` with 6 layers (GPT-2
  small's configuration otherwise), every weight trainable, between a
  ``Linear C->768`` and a ``Linear 768->C``, fp32 (the issue's reference);
- ``GPT2Model bf16`` (``--configs`` default includes it): the same under
  autocast, to show how much of any speed-up is bf16 alone.

A training step = zero_grad, forward, MSE reconstruction loss (+ the model's
auxiliary loss), backward, Adam step (``exp.exp_basic.make_optimizer``) over the trainable
parameters: what ``exp/`` does per batch. Inference = forward in eval mode
under ``torch.no_grad()``.

Timing: one process builds both models and runs the configurations
*interleaved* (step 1 of every configuration, then step 2 of every one, ...),
so that load from other users of a shared machine hits all of them alike;
we report medians over ``--steps`` steps after ``--warmup`` steps. Memory:
each configuration then runs a few steps in its own fresh process, so that its
peak resident memory (``ru_maxrss``) is its own; we report the peak and its
growth during training (activations, gradients, optimiser state). Compare the
ratios within one run; absolute numbers move with the machine's load, which
is printed before and after.

Roofline (a second table): each configuration's matmul FLOPs of one step's
forward + backward (``count_flops``: ``FlopCounterMode`` plus our formulas
for CPU's fused attention, which it does not count, and for grouped
convolutions' backward, which it miscounts), counted on an extra, untimed step
after the timed ones; this machine's GEMM rate in fp32 and bf16
(``gemm_rate``: the four weight GEMMs of one of the configuration's own
blocks, ``d x d_ff`` of its backbone (GPT-2: 768 x 3072, MiniLM: 384 x 1536),
at ``M = B*L``, forward, grad-input and grad-weight: narrower GEMMs run
slower, so a wide block's rate would flatter a small backbone's floor), one
pass per precision and block shape after each round of
training steps so that load hits it as it hits them, median; the *GEMM
floor* = FLOPs / rate of the configuration's precision, i.e. its step time if
every matmul ran at that rate and nothing else cost anything; and *floor x* =
the reference's measured train ms / that floor, the best ``train x`` the
configuration can reach on this machine. *quietest* is floor/step again from
the fastest timed step and the highest GEMM pass (``_quietest_ratio``): on a
shared host other guests only ever slow a pass down, so each extreme is its
least disturbed value, and that ratio moves less between runs than the
medians' (three quickstart runs of 2026-12-07: medians 77 / 70 / 80 %,
quietest 78 / 77 / 75 %). CrossAlign runs its LLM blocks twice
(LoRA student and frozen teacher) and backpropagates through both, so it has
more FLOPs per step than the plain GPT2Model: floor x shows how much of that
bf16 GEMMs can buy back.

Matmul replay (``--replay 1``, the default; ``scripts/bench/replay.py``):
every call of a training step and of an inference pass to an op the FLOP
count covers, recorded on the last warm-up step, is replayed alone at its own
shapes, strides and dtype after each timed round. *matmul ms* (median) is the
step's time if only its matmuls ran; *matmul/step* the share of the step in
matrix products (what fusing or removing other work can still win is the
rest); *floor/matmul* how fast the step's own shapes run against the block
GEMM (what only a faster GEMM or other dimensions change). floor/step =
matmul/step x floor/matmul.

Breakdowns, after the timing: the top ``--profile_top`` operators (aten ops and
our C kernels) by self time (``op_breakdown``: each op's median over ``--profile_steps``
separately profiled steps) and, with ``--parts``, each top-level module's
time against its own floor (``scripts/bench/parts.py``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from typing import Callable, Sequence

CONFIGS = {
    "crossalign_fp32": ("CrossAlign", False),
    "crossalign_bf16": ("CrossAlign", True),
    "gpt2_fp32": ("GPT2Model", False),
    "gpt2_bf16": ("GPT2Model", True),
}
_REFERENCE = "gpt2_fp32"
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root


# the two configurations; flags given on the command line win
SETTINGS = {"paper": {"llm": "gpt2", "llm_init": "random", "llm_layers": 6, "channels": 38, "seq_len": 100},
            "quickstart": {"llm": "minilm", "llm_init": "pretrained", "llm_layers": 2, "channels": 8,
                           "seq_len": 100}}


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--setting", default=None, choices=tuple(SETTINGS),
                        help="paper: GPT-2 architecture, 6 blocks, C=38; quickstart: MiniLM, 2 blocks, C=8 "
                             "(explicit flags win)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=100)
    parser.add_argument("--channels", type=int, default=38)
    parser.add_argument("--llm", default="gpt2",
                        help="CrossAlign backbone; a comma list (e.g. minilm,smollm2) times each side by side")
    parser.add_argument("--llm_init", default="random", choices=("pretrained", "random"))
    parser.add_argument("--llm_layers", type=int, default=6, help="CrossAlign's LLM blocks and the plain GPT2Model's")
    parser.add_argument("--model_flags", default="",
                        help="extra run.py flags for CrossAlign, e.g. \"--pmd_rounds 2 --ssm_layers 1\"")
    parser.add_argument("--configs", default=None,
                        help=f"comma list of {', '.join(CONFIGS)} (default: all; the bf16 ones only where "
                             "this CPU has fast bf16 matmuls, see utils.provenance.cpu_bf16_native)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--infer_steps", type=int, default=5, help="timed inference passes")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--profile_top", type=int, default=10,
                        help="per-operator breakdown of more training steps per configuration: the top N "
                             "aten ops by self time (torch.profiler); 0: none")
    parser.add_argument("--parts", action="store_true",
                        help="also time each top-level module of the model (forward + backward on the inputs and "
                             "output gradient it had in a step) against its own GEMM floor (scripts/bench/parts.py)")
    parser.add_argument("--profile_steps", type=int, default=3,
                        help="training steps profiled one at a time for that breakdown; each op's median over them")
    parser.add_argument("--replay", type=int, default=1, choices=(0, 1),
                        help="1: also replay every matmul of a training step and of an inference pass alone, at its "
                             "own shapes and strides, after each timed step (scripts/bench/replay.py): the share of "
                             "the step spent in matrix products and how fast its shapes run; 0: skip")
    parser.add_argument("--score_points", type=int, default=0,
                        help="also time scoring (exp's score_windows, inference mode) of a random [N, C] series "
                             "with windows every seq_len, e.g. 427617 = SMAP's test split; 0: skip")
    parser.add_argument("--score_batch_size", type=int, default=256, help="windows per scoring batch")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --- roofline: the matmul FLOPs a step executes, and the rate this machine runs GEMMs at ---------------------

def sdpa_flops(q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int],
               backward: bool = False) -> int:
    """Matmul FLOPs of an attention core ``softmax(Q K^T) V``, ``q [..., L, E]``, ``k [..., S, E]``, ``v [..., S, Ev]``.

    Dense over all ``L x S`` scores: a causal kernel skips part of them, which
    is not modelled. Forward: ``Q K^T`` and ``P V``. Backward as a flash
    kernel runs it: ``Q K^T`` recomputed (only the logsumexp is saved), then
    ``dV = P^T dO``, ``dP = dO V^T``, ``dQ = dS K``, ``dK = dS^T Q``.
    """
    *batch, length, e = q_shape
    s, ev = k_shape[-2], v_shape[-1]
    scores = 2 * math.prod(batch) * length * s * e
    values = 2 * math.prod(batch) * length * s * ev
    return 3 * scores + 2 * values if backward else scores + values


def conv_flops(x_shape: Sequence[int], w_shape: Sequence[int], out_shape: Sequence[int],
               transposed: bool = False) -> int:
    """Forward FLOPs of a convolution: 2 x every output point x its filter taps x the input channels of its group.

    ``w_shape`` holds the per-group channels (``[C_out, C_in / groups, *k]``),
    so grouped and depthwise convolutions come out right; a transposed
    convolution scatters from every *input* point instead.
    """
    return 2 * x_shape[0] * math.prod((x_shape if transposed else out_shape)[2:]) * math.prod(w_shape)


def _flop_formulas() -> dict:
    """FlopCounterMode formulas for what it misses or miscounts on CPU.

    CPU's fused attention has no formula (only the CUDA kernels do), nor has
    our attention kernel (``crossalign::attention``, ``layers/fast_ops.py``);
    the convolution backward formula ignores ``groups`` (it counts the
    depthwise conv1d of a Mamba block's backward as if dense, ``C`` times too
    much); and the in-place ``addmm_`` has none (the LoRA kernel's layers run
    their base product as one, ``layers/fast_ops.py``'s ``_LoraLinear``).
    """
    import torch

    import layers.fast_ops  # noqa: F401  (registers the crossalign:: operators)
    aten, ours = torch.ops.aten, torch.ops.crossalign

    # FlopCounterMode passes the op's arguments in schema order, tensors replaced by their shapes, plus out_shape
    def attention(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flops(q, k, v)

    def attention_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flops(q, k, v, backward=True)

    def kernel_attention_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
        # the softmax is kept, not recomputed: dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q
        return 2 * sdpa_flops(q, k, v)

    def addmm_inplace(self, mat1, mat2, *args, out_shape=None, **kwargs) -> int:
        return 2 * mat1[0] * mat1[1] * mat2[1]

    def convolution_backward(grad_out, x, w, bias_sizes, stride, padding, dilation, transposed, output_padding,
                             groups, output_mask, out_shape=None, **kwargs) -> int:
        # grad-input and grad-weight each run the forward's multiply-adds once more
        return conv_flops(x, w, grad_out, transposed) * (int(output_mask[0]) + int(output_mask[1]))
    return {aten._scaled_dot_product_flash_attention_for_cpu: attention,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: attention_backward,
            ours.attention: attention, ours.attention_backward: kernel_attention_backward,
            aten.convolution_backward: convolution_backward, aten.addmm_: addmm_inplace}


def count_flops(fn: Callable[[], object]) -> dict[str, int]:
    """Matmul FLOPs executed by ``fn()``, per aten op (``mm``, ``addmm``, ``bmm``, ``convolution``, CPU attention ...).

    ``torch.utils.flop_counter.FlopCounterMode`` counts the matmul-like ops
    (a multiply-add = 2 FLOPs) of whatever runs, forward and backward alike;
    elementwise ops, norms, softmax, FFT, the selective scan's arithmetic etc.
    are not counted. CPU's fused attention core (``sdpa_flops``) and grouped
    convolutions' backward (``conv_flops``) use our formulas (``_flop_formulas``).
    """
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False, custom_mapping=_flop_formulas()) as counter:
        fn()
    counts = counter.get_flop_counts().get("Global", {})  # absent when nothing countable ran
    return {str(op).removeprefix("aten."): int(n) for op, n in counts.items() if n}


def gemm_shapes(m: int, d_model: int = 768, d_ff: int = 3072) -> list[tuple[int, int, int]]:
    """``(M, K, N)`` of a GPT-2 block's four weight GEMMs ``x [M, K] @ W [K, N]``: qkv, attention out, MLP up, down."""
    return [(m, d_model, 3 * d_model), (m, d_model, d_model), (m, d_model, d_ff), (m, d_ff, d_model)]


def gemm_pass_flops(shapes: Sequence[tuple[int, int, int]]) -> int:
    """FLOPs of forward ``x@W``, grad-input ``g@W.T`` and grad-weight ``x.T@g`` of each ``(M, K, N)``: 3 x 2MKN."""
    return sum(3 * 2 * m * k * n for m, k, n in shapes)


def gemm_operands(m: int, d_model: int = 768, d_ff: int = 3072,
                  precisions: Sequence[str] = ("fp32", "bf16")) -> dict:
    """``{"fp32": [(x, W, g), ...], "bf16": [...]}`` for each of ``precisions``: random ``x [M, K]``, ``W [K, N]``,
    ``g [M, N]`` per shape (the same values in each precision)."""
    import torch
    gen = torch.Generator().manual_seed(0)
    fp32 = [tuple(torch.randn(*shape, generator=gen) for shape in ((mm, k), (k, n), (mm, n)))
            for mm, k, n in gemm_shapes(m, d_model, d_ff)]
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    return {prec: [tuple(t.to(dtypes[prec]) for t in xwg) for xwg in fp32] for prec in precisions}


def block_dims(model, default: tuple[int, int] = (768, 3072)) -> tuple[int, int]:
    """``(d_model, d_ff)`` of the transformer blocks in ``model``: its first transformers config's hidden size and
    MLP width (``intermediate_size``, GPT-2's ``n_inner``, else 4 x hidden); ``default`` (GPT-2's block) for a
    model without one (``--llm none``)."""
    for module in model.modules():
        cfg = getattr(module, "config", None)
        d = getattr(cfg, "hidden_size", None)
        if isinstance(d, int):
            d_ff = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * d
            return d, int(d_ff)
    return default


def gemm_rate(operands: list) -> float:
    """GFLOP/s of one training pass over ``operands``: forward ``x@W``, grad-input ``g@W.T``, grad-weight ``x.T@g``.

    What a Linear with a trainable weight and an input that needs its gradient runs, once per shape.
    """
    flops = gemm_pass_flops([(x.shape[0], x.shape[1], w.shape[1]) for x, w, _ in operands])
    t0 = time.perf_counter()
    for x, w, g in operands:
        x @ w
        g @ w.T
        x.T @ g
    return flops / (time.perf_counter() - t0) / 1e9


def gemm_forward_rate(operands: list) -> float:
    """GFLOP/s of the forward GEMMs ``x@W`` alone over ``operands``: what inference runs."""
    flops = sum(2 * x.shape[0] * x.shape[1] * w.shape[1] for x, w, _ in operands)
    t0 = time.perf_counter()
    for x, w, _ in operands:
        x @ w
    return flops / (time.perf_counter() - t0) / 1e9


def gemm_floor(flops: int, gflops_per_s: float, ref_train_ms: float | None = None) -> dict[str, float | None]:
    """``floor_ms``: the step's time if every FLOP ran at the GEMM rate and nothing else cost anything;
    ``floor_x``: the reference's measured train ms over that floor, the best ``train x`` this step can reach."""
    floor_ms = flops / (gflops_per_s * 1e9) * 1e3
    return {"floor_ms": floor_ms, "floor_x": ref_train_ms / floor_ms if ref_train_ms and floor_ms else None}


# autograd Functions that call our C kernels (layers/fast_ops.py, layers/scan_kernel.py): their work is no aten
# op, so the profiler shows it only as the Function's own event, forward and backward (node name + "Backward")
KERNEL_FUNCTIONS = ("_KeepScale", "KernelScanCore", "KernelGate", "KernelSoftplus", "CausalConvSiLU", "_Gelu",
                    "_LoraLinear")


def minor_faults() -> int:
    """This process's minor page faults so far (first touches of fresh pages; ``getrusage``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


PREFAULT_MIB = 1024


def prefault_heap(mib: int = PREFAULT_MIB) -> None:
    """Touch ``mib`` MiB of fresh memory and free it, so that the heap keeps that much mapped room at its top.

    Why: with large blocks kept in the heap (``utils.allocator``, the run's policy) a training step
    reuses its own freed blocks and, once warm, takes no page faults. A profiler (or any other
    bookkeeping between steps) leaves small allocations in those freed blocks; the step's next large
    tensor then no longer fits there and extends the heap onto fresh pages, whose first touch costs
    as much as the op itself: in profiled quickstart steps 72,000 faults (280 MiB) per step put
    softmax's backward on the [8, 3200, 384] retrieval scores at 76-90 ms against 6 ms fault-free.
    Room already touched at the heap's top serves those blocks without faults. Below glibc's trim
    threshold there (2 GiB), the freed room stays mapped; with glibc's default policy it is unmapped
    again and this changes nothing.
    """
    import torch
    torch.ones(mib << 18)  # float32: 4 bytes each; allocated, written, freed


def _profiled_op(key: str) -> str | None:
    """The breakdown's name for a profiler event: aten ops without their prefix, our operators
    (``crossalign::attention`` and its backward) and our kernels' Functions as they are, anything else (wrappers,
    Python frames) None."""
    if key.startswith("aten::"):
        return key.removeprefix("aten::")
    if key.startswith("crossalign::"):
        return key
    return key if key.removesuffix("Backward") in KERNEL_FUNCTIONS else None


def op_breakdown(fn: Callable[[], object], top: int = 10, repeats: int = 3) -> dict:
    """The ``top`` operators of ``fn()`` by self CPU time: ``{"ops": [{"op", "self_ms", "share", "calls"}, ...],
    "page_faults": ...}``.

    Operators: aten ops, our operators (``crossalign::attention``: the attention kernel, forward and backward),
    and the autograd Functions of ``KERNEL_FUNCTIONS`` (our C dropout, scan (with its
    D skip and gate: ``KernelGate``; delta's softplus: ``KernelSoftplus``, whose backward is aten ops),
    causal convolution + SiLU, GELU and LoRA kernels, or their
    numpy/PyTorch fallbacks: ``_KeepScale`` is dropout's forward, ``_KeepScaleBackward`` its
    backward; ``_Gelu`` GELU's forward (both forms), whose backward is an aten ``mul``; ``_LoraLinear`` the LoRA
    adapters' rank-r products and dropout, its base layer's products listed as aten ops), whose self time is
    the work done outside aten.

    ``torch.profiler`` over ``repeats`` calls, one profile each; an op's ``self_ms`` and ``calls`` are
    its medians over them (0 in a call where it did not run), ``share`` its fraction of the sum of all
    ops' medians. Medians, because on a shared host a stall of 100 ms or more (time the hypervisor
    gives another guest) lands on whichever op is running: in single profiled steps of the quickstart
    configuration one op at a time showed 3-30x its usual self time, a different op in each step.
    The profiler's own overhead inflates small ops a little: read shares, not absolute ms.

    Before profiling, ``prefault_heap()``: the profiler's own allocations would otherwise push the
    step's large tensors onto fresh pages, and the page faults would land on whichever ops allocate
    them (see there). ``page_faults``: the median minor page faults per profiled call, to check that
    the breakdown is free of them (0 or a few: the step's own time; thousands: each 4 KiB fault
    costs about a microsecond of the op that takes it).
    """
    from torch.profiler import ProfilerActivity, profile
    prefault_heap()
    runs: list[dict[str, tuple[float, int]]] = []
    faults = []
    for _ in range(max(1, repeats)):
        start = minor_faults()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        faults.append(minor_faults() - start)
        runs.append({name: (e.self_cpu_time_total / 1e3, e.count)
                     for e in prof.key_averages() if (name := _profiled_op(e.key))})
    names = {name for run in runs for name in run}
    ms = {n: statistics.median(run.get(n, (0.0, 0))[0] for run in runs) for n in names}
    calls = {n: round(statistics.median(run.get(n, (0.0, 0))[1] for run in runs)) for n in names}
    total = sum(ms.values()) or 1.0
    ranked = sorted(names, key=lambda n: ms[n], reverse=True)[:top]
    return {"ops": [{"op": n, "self_ms": ms[n], "share": ms[n] / total, "calls": calls[n]} for n in ranked],
            "page_faults": statistics.median(faults)}


def scoring_rate(model, n_points: int, seq_len: int, channels: int, batch_size: int, bf16: bool) -> dict:
    """Points per second of ``exp.exp_anomaly_detection.score_windows`` (the run's scoring loop) over a
    random ``[n_points, channels]`` series, windows every ``seq_len`` points (the default test stride)."""
    import numpy as np
    import torch
    from exp.exp_anomaly_detection import score_windows
    series = np.random.default_rng(0).standard_normal((n_points, channels)).astype(np.float32)
    starts = np.arange(0, n_points - seq_len + 1, seq_len)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    t0, scored = time.perf_counter(), 0
    for _, err in score_windows(model, series, starts, seq_len, batch_size, autocast, torch.device("cpu")):
        scored += err.size
    seconds = time.perf_counter() - t0
    return {"points": scored, "seconds": seconds, "points_s": scored / seconds}


def _build(kind: str, args: argparse.Namespace, llm: str, bf16: bool = False):
    import torch.nn as nn

    if kind == "CrossAlign":
        import run
        from models.CrossAlign import Model
        flags = ["--llm", llm, "--llm_init", args.llm_init, "--llm_layers", str(args.llm_layers),
                 "--bf16", str(int(bf16))]  # as run.py builds it: --bf16 1 keeps frozen projections in bf16
        margs = run.build_parser().parse_args(flags + args.model_flags.split())
        margs.enc_in, margs.seq_len = args.channels, args.seq_len
        return Model(margs)

    from transformers import GPT2Config, GPT2Model

    class PlainGPT2(nn.Module):
        """Linear C->768, GPT2Model (all weights trainable), Linear 768->C."""

        def __init__(self) -> None:
            super().__init__()
            cfg = GPT2Config(n_layer=args.llm_layers)
            self.inp = nn.Linear(args.channels, cfg.n_embd)
            self.gpt2 = GPT2Model(cfg)  # SDPA attention, transformers' default
            self.out = nn.Linear(cfg.n_embd, args.channels)

        def forward(self, x):
            return self.out(self.gpt2(inputs_embeds=self.inp(x)).last_hidden_state)

    return PlainGPT2()


class _Runner:
    """One configuration's model, optimiser and batch; ``train_step()``/``infer()`` return seconds."""

    def __init__(self, name: str, llm: str | None, model, x) -> None:
        import torch
        config = name.split("@")[0]
        self.name, self.llm, (self.kind, self.bf16) = name, llm, CONFIGS[config]
        self.model, self.x = model, x
        self.dims = block_dims(model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        from exp.exp_basic import make_optimizer
        self.opt = make_optimizer(self.params, 1e-4)  # the training loop's

    def _autocast(self):
        import torch
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def step(self) -> None:
        """The training loop's own step (`exp.exp_basic.training_step` on `exp.exp_anomaly_detection.anomaly_loss`):
        zero_grad, forward, loss, backward, Adam step."""
        from exp.exp_anomaly_detection import anomaly_loss
        from exp.exp_basic import training_step
        self.model.train()
        training_step(lambda: anomaly_loss(self.model, self.x, self._autocast()), self.opt)

    def train_step(self) -> float:
        t0 = time.perf_counter()
        self.step()
        return time.perf_counter() - t0

    def infer(self) -> float:
        import torch
        self.model.eval()
        t0 = time.perf_counter()
        with torch.no_grad(), self._autocast():
            self.model(self.x)
        return time.perf_counter() - t0


def _runs(names: list[str], llms: list[str]) -> list[tuple[str, str | None]]:
    """(run name, backbone) pairs: a CrossAlign configuration once per backbone (``config@llm`` if several)."""
    out = []
    for name in names:
        if CONFIGS[name][0] != "CrossAlign":
            out.append((name, None))
        else:
            out += [(name if len(llms) == 1 else f"{name}@{llm}", llm) for llm in llms]
    return out


def _setup(runs: list[tuple[str, str | None]], args: argparse.Namespace) -> list[_Runner]:
    """Runners; the plain GPT2Model's configurations share one instance (precision is a runtime choice there),
    CrossAlign has one per precision (``--bf16 1`` builds it with its frozen projections in bf16)."""
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, args.seq_len, args.channels)
    models: dict[tuple, object] = {}
    runners = []
    for name, llm in runs:
        kind, bf16 = CONFIGS[name.split("@")[0]]
        key = (kind, llm, bf16 and kind == "CrossAlign")  # CrossAlign's bf16 build stores frozen weights in bf16
        if key not in models:
            torch.manual_seed(0)
            models[key] = _build(kind, args, llm, key[2])
        runners.append(_Runner(name, llm, models[key], x))
    return runners


def matmul_ms(rows: list[dict] | None) -> float | None:
    """The replayed matmul time of a step or pass (``scripts.bench.replay``): each call's median ms x its count."""
    return sum(r["ms"] * r["count"] for r in rows) if rows else None


def _timing(runs: list[tuple[str, str | None]], args: argparse.Namespace) -> dict:
    import torch

    from scripts.bench.replay import Replay, record_matmuls
    runners = _setup(runs, args)
    train = {r.name: [] for r in runners}
    infer = {r.name: [] for r in runners}
    train_faults = {r.name: [] for r in runners}  # minor page faults of each timed step: 0 once the heap is warm
    # the GEMM rate is measured between the training steps, so that the machine's load hits it as it hits them
    m = args.batch_size * args.seq_len
    precisions = list(dict.fromkeys("bf16" if r.bf16 else "fp32" for r in runners))  # only those timed
    operands = {dims: gemm_operands(m, *dims, precisions) for dims in dict.fromkeys(r.dims for r in runners)}
    gemm = {(dims, prec): [] for dims, by_prec in operands.items() for prec in by_prec}
    gemm_fwd = {key: [] for key in gemm}
    # each configuration's matmuls: recorded by its last warm-up step, replayed alone after every timed round
    replays: dict[str, Replay] = {}
    for i in range(args.warmup + args.steps):
        for r in runners:
            if args.replay and i == max(0, args.warmup - 1):
                replays[r.name] = Replay(record_matmuls(r.step))  # an extra untimed step without warm-up
                if i < args.warmup:
                    continue
            start = minor_faults()
            dt = r.train_step()
            if i >= args.warmup:
                train[r.name].append(dt)
                train_faults[r.name].append(minor_faults() - start)
        for (dims, prec), rates in gemm.items():
            xwg = operands[dims][prec]
            rate, fwd = gemm_rate(xwg), gemm_forward_rate(xwg)
            if i >= args.warmup:
                rates.append(rate)
                gemm_fwd[dims, prec].append(fwd)
        for replay in replays.values() if i >= args.warmup else ():
            replay.time_pass()
    del operands
    train_matmuls = {name: replay.rows() for name, replay in replays.items()}
    replays = {}
    for i in range(1 + args.infer_steps):
        for r in runners:
            if args.replay and i == 0:  # the warm-up pass records
                replays[r.name] = Replay(record_matmuls(r.infer))
                continue
            dt = r.infer()
            if i >= 1:
                infer[r.name].append(dt)
        for replay in replays.values() if i >= 1 else ():
            replay.time_pass()
    infer_matmuls = {name: replay.rows() for name, replay in replays.items()}
    del replays
    # FLOPs are counted on one more step after every timed one, so that the counter's overhead pollutes no time
    flops = {r.name: count_flops(r.step) for r in runners}  # the Adam step runs no counted (matmul) op
    infer_flops = {r.name: sum(count_flops(r.infer).values()) for r in runners}
    ops = {r.name: op_breakdown(r.step, args.profile_top, args.profile_steps) for r in runners} \
        if args.profile_top else {}
    parts = {}
    if args.parts:
        from scripts.bench.parts import part_times
        parts = {r.name: part_times(r.model, r.step, args.profile_steps, r._autocast) for r in runners}
    scoring = {r.name: scoring_rate(r.model, args.score_points, args.seq_len, args.channels, args.score_batch_size,
                                    r.bf16)
               for r in runners if args.score_points and r.kind == "CrossAlign"}
    out = {}
    for r in runners:
        step, inf = statistics.median(train[r.name]), statistics.median(infer[r.name])
        out[r.name] = {"config": r.name, "model": r.kind, "llm": r.llm, "bf16": r.bf16, "train_ms": 1e3 * step,
                       "train_ms_all": [round(1e3 * t) for t in train[r.name]],
                       "train_page_faults_all": train_faults[r.name],
                       "train_windows_s": args.batch_size / step, "infer_ms": 1e3 * inf,
                       "infer_ms_all": [round(1e3 * t, 1) for t in infer[r.name]],
                       "infer_windows_s": args.batch_size / inf,
                       "trainable_params": sum(p.numel() for p in r.params),
                       "total_params": sum(p.numel() for p in r.model.parameters()),
                       "threads": torch.get_num_threads(), "block": _block_key(r.dims),
                       "train_flops": sum(flops[r.name].values()), "train_flops_by_op": flops[r.name],
                       "infer_flops": infer_flops[r.name], "ops": ops.get(r.name, {}).get("ops", []),
                       "ops_page_faults": ops.get(r.name, {}).get("page_faults"),
                       "profile_steps": args.profile_steps, "profile_top": args.profile_top,
                       "parts": parts.get(r.name, []),
                       "matmuls": train_matmuls.get(r.name), "infer_matmuls": infer_matmuls.get(r.name),
                       "scoring": scoring.get(r.name)}
    blocks: dict[str, dict] = {}
    for (dims, prec), rates in gemm.items():
        entry = blocks.setdefault(_block_key(dims), {"gflops_s": {}, "forward_gflops_s": {}, "gflops_s_all": {},
                                                      "forward_gflops_s_all": {}})
        entry["gflops_s"][prec] = statistics.median(rates)
        entry["forward_gflops_s"][prec] = statistics.median(gemm_fwd[dims, prec])
        entry["gflops_s_all"][prec] = [round(x, 1) for x in rates]
        entry["forward_gflops_s_all"][prec] = [round(x, 1) for x in gemm_fwd[dims, prec]]
    return {"runs": out, "gemm": {"m": m, "repeats": args.steps, "blocks": blocks}}


def _block_key(dims: tuple[int, int]) -> str:
    return f"{dims[0]}x{dims[1]}"


def _memory(run: tuple[str, str | None], args: argparse.Namespace) -> dict:
    (runner,) = _setup([run], args)
    built = _rss_mib()
    for _ in range(2):
        runner.train_step()
    trained = _rss_mib()
    runner.infer()
    return {"rss_built_mib": built, "rss_peak_mib": _rss_mib(), "rss_train_growth_mib": trained - built}


def _run_worker(task: str, argv: list[str]) -> dict:
    cmd = [sys.executable, "-m", "scripts.bench", "model", *argv, "--_worker", task]
    proc = subprocess.run(cmd, cwd=_REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {task} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def _label(r: dict, multi: bool) -> str:
    llm = f"[{r['llm']}]" if multi and r["llm"] else ""
    return f"{r['model']}{llm} {'bf16' if r['bf16'] else 'fp32'}"


def _add_roofline(results: list[dict], gemm: dict) -> None:
    """Each result's GFLOP/step, the GEMM rate of its precision, its GEMM floor and floor x (in place)."""
    ref = next((r for r in results if r["config"] == _REFERENCE), None)
    for r in results:
        prec = "bf16" if r["bf16"] else "fp32"
        block = gemm["blocks"][r["block"]]
        rate, fwd_rate = block["gflops_s"][prec], block["forward_gflops_s"][prec]
        floor = gemm_floor(r["train_flops"], rate, ref["train_ms"] if ref else None)
        r.update({"train_gflop": r["train_flops"] / 1e9, "gemm_gflops_s": rate,
                  "gemm_floor_ms": floor["floor_ms"], "floor_x": floor["floor_x"],
                  "infer_gflop": r.get("infer_flops", 0) / 1e9, "gemm_forward_gflops_s": fwd_rate,
                  "infer_floor_ms": gemm_floor(r.get("infer_flops", 0), fwd_rate)["floor_ms"],
                  "matmul_ms": matmul_ms(r.get("matmuls")), "infer_matmul_ms": matmul_ms(r.get("infer_matmuls"))})
        r["quietest_floor_step"] = _quietest_ratio(r["train_flops"], block.get("gflops_s_all", {}).get(prec),
                                                   r.get("train_ms_all"))
        r["quietest_floor_pass"] = _quietest_ratio(r.get("infer_flops", 0),
                                                   block.get("forward_gflops_s_all", {}).get(prec),
                                                   r.get("infer_ms_all"))
        for part in r.get("parts", []):
            part["floor_ms"] = gemm_floor(part["flops"], rate)["floor_ms"]


def _quietest_ratio(flops: float, rates: Sequence[float] | None, times_ms: Sequence[float] | None) -> float | None:
    """floor/step from the host's quietest moments: the floor at the highest GEMM rate measured over the fastest
    timed step (``None`` without both lists). On a shared host a pass runs slower, never faster, when another
    guest takes the core, so each quantity's extreme is its least disturbed value (``timeit``'s argument for
    the minimum); the two medians are disturbed by different moments and their ratio swings more."""
    if not rates or not times_ms or not flops:
        return None
    return gemm_floor(flops, max(rates))["floor_ms"] / min(times_ms)


def _replay_cells(floor_ms: float, matmuls: float | None, measured_ms: float) -> str:
    if not matmuls:
        return f"{'-':>10}{'-':>12}{'-':>13}"
    return f"{matmuls:>10.0f}{matmuls / measured_ms:>12.0%}{floor_ms / matmuls:>13.0%}"


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _table(results: list[dict], gemm: dict) -> str:
    ref = next((r for r in results if r["config"] == _REFERENCE), None)
    multi = len({r["llm"] for r in results if r["llm"]}) > 1
    w = max(18, max(len(_label(r, multi)) for r in results) + 2)
    head = (f"{'configuration':<{w}}{'train ms/step':>14}{'train win/s':>12}{'infer ms':>10}{'infer win/s':>12}"
            f"{'peak RSS MiB':>13}{'+train MiB':>11}{'trainable':>13}{'total':>13}{'train x':>9}{'infer x':>9}")
    lines = [head, "-" * len(head)]
    for r in results:
        tx = f"{ref['train_ms'] / r['train_ms']:.2f}" if ref else "-"
        ix = f"{ref['infer_ms'] / r['infer_ms']:.2f}" if ref else "-"
        lines.append(f"{_label(r, multi):<{w}}{r['train_ms']:>14.0f}{r['train_windows_s']:>12.1f}"
                     f"{r['infer_ms']:>10.0f}{r['infer_windows_s']:>12.1f}{r['rss_peak_mib']:>13.0f}"
                     f"{r['rss_train_growth_mib']:>11.0f}{r['trainable_params']:>13,}{r['total_params']:>13,}"
                     f"{tx:>9}{ix:>9}")
    if ref:
        lines.append(f"train x / infer x: speed relative to {ref['model']} fp32 (> 1 = faster)")
    faulted = [r for r in results if r.get("train_page_faults_all")]
    if faulted:
        lines.append("page faults per timed step (median, max; 0 once the heap is warm, thousands inflate the "
                     "step): " + "; ".join(f"{_label(r, multi)} {statistics.median(r['train_page_faults_all']):.0f}, "
                                           f"{max(r['train_page_faults_all'])}" for r in faulted))

    rates = "; ".join(f"{key} blocks " + ", ".join(f"{p} {r:.0f}" for p, r in b["gflops_s"].items())
                      for key, b in gemm["blocks"].items())
    lines += ["", f"roofline: GEMM rate measured here (the four weight GEMMs of each configuration's own block, "
                  f"d x d_ff, at M=B*L={gemm['m']}, forward + grad-input + grad-weight; median of {gemm['repeats']} "
                  f"passes, one after each round of timed steps): {rates} GFLOP/s"]
    replayed = any(r.get("matmul_ms") for r in results)
    head = (f"{'configuration':<{w}}{'GFLOP/step':>11}{'GEMM GFLOP/s':>13}{'GEMM floor ms':>14}"
            f"{'train ms/step':>14}{'floor/step':>11}{'quietest':>9}"
            + (f"{'matmul ms':>10}{'matmul/step':>12}{'floor/matmul':>13}" if replayed else "")
            + f"{'floor x':>9}{'train x':>9}")
    lines += [head, "-" * len(head)]
    for r in results:
        fx = f"{r['floor_x']:.2f}" if r["floor_x"] is not None else "-"
        tx = f"{ref['train_ms'] / r['train_ms']:.2f}" if ref else "-"
        lines.append(f"{_label(r, multi):<{w}}{r['train_gflop']:>11.1f}{r['gemm_gflops_s']:>13.0f}"
                     f"{r['gemm_floor_ms']:>14.0f}{r['train_ms']:>14.0f}{r['gemm_floor_ms'] / r['train_ms']:>11.0%}"
                     f"{_percent(r.get('quietest_floor_step')):>9}"
                     + (_replay_cells(r["gemm_floor_ms"], r.get("matmul_ms"), r["train_ms"]) if replayed else "")
                     + f"{fx:>9}{tx:>9}")
    lines += ["GFLOP/step: matmul FLOPs of one train step, forward + backward, as FlopCounterMode counts them (mm,",
              "  addmm, bmm, convolution; CPU fused attention and our attention kernel, which it misses, counted",
              "  by us as dense L x S);",
              "  elementwise ops, norms, softmax, FFT, the scan's arithmetic and Adam are not counted",
              "GEMM floor = GFLOP/step / GEMM rate of its precision: the step's time if every matmul ran at that rate",
              "  and everything else were free; floor/step = floor / measured step (medians)",
              "quietest = the same ratio from the fastest timed step and the highest GEMM pass: each at the host's",
              "  least disturbed moment, steadier between runs on a shared host than the ratio of the two medians"]
    if replayed:
        lines += ["matmul ms = the step's own matmuls replayed alone at their shapes and strides after each timed",
                  "  round (median; scripts/bench/replay.py): matmul/step = the share of the step in matrix products,",
                  "  floor/matmul = how fast the step's shapes run against the block GEMM; their product is floor/step"]
    if ref:
        lines += [f"floor x = {ref['model']} fp32's measured train ms / this floor: the best train x this configuration",
                  "  can reach against that reference on this machine"]

    fwd = "; ".join(f"{key} blocks " + ", ".join(f"{p} {r:.0f}" for p, r in b["forward_gflops_s"].items())
                    for key, b in gemm["blocks"].items())
    lines += ["", f"inference roofline: forward GEMM rate {fwd} GFLOP/s"]
    head = (f"{'configuration':<{w}}{'GFLOP/pass':>11}{'GEMM floor ms':>14}{'infer ms':>10}{'floor/pass':>11}"
            f"{'quietest':>9}"
            + (f"{'matmul ms':>10}{'matmul/pass':>12}{'floor/matmul':>13}" if replayed else ""))
    lines += [head, "-" * len(head)]
    for r in results:
        lines.append(f"{_label(r, multi):<{w}}{r['infer_gflop']:>11.1f}{r['infer_floor_ms']:>14.0f}"
                     f"{r['infer_ms']:>10.0f}{r['infer_floor_ms'] / r['infer_ms']:>11.0%}"
                     f"{_percent(r.get('quietest_floor_pass')):>9}"
                     + (_replay_cells(r["infer_floor_ms"], r.get("infer_matmul_ms"), r["infer_ms"]) if replayed
                        else ""))
    for r in results:
        if r.get("matmuls"):
            top = sorted(r["matmuls"], key=lambda m: m["ms"] * m["count"], reverse=True)[:r.get("profile_top") or 10]
            lines += ["", f"{_label(r, multi)}: the training step's matmuls replayed alone, top {len(top)} by time "
                          f"(of {sum(m['count'] for m in r['matmuls'])} calls, {len(r['matmuls'])} distinct; "
                          "median over the rounds)"]
            lines += [f"  {'op':<24}{'calls':>6}{'ms each':>9}{'ms':>8}{'GFLOP/s':>9}  operand shapes"]
            lines += [f"  {m['op'][:23]:<24}{m['count']:>6}{m['ms']:>9.2f}{m['ms'] * m['count']:>8.0f}"
                      f"{m['flops'] / m['ms'] / 1e6 if m['ms'] else 0:>9.1f}  "
                      + " ".join("x".join(map(str, sh)) for sh in m["shapes"]) for m in top]
    for r in results:
        if r.get("ops"):
            faults = r.get("ops_page_faults")
            lines += ["", f"{_label(r, multi)}: top {len(r['ops'])} ops (aten; our kernels' Functions) of a training step by self time "
                          f"(torch.profiler; each op's median over {r.get('profile_steps', 1)} profiled steps"
                          + (f"; {faults:.0f} page faults per profiled step" if faults is not None else "") + ")"]
            lines += [f"  {o['op']:<36}{o['self_ms']:>10.0f} ms{o['share']:>7.1%}{o['calls']:>7} calls"
                      for o in r["ops"]]
    for r in results:
        if r.get("parts"):
            lines += ["", f"{_label(r, multi)}: the step by part (each top-level module's forward + backward on the "
                          f"inputs and output gradient it had in a step, timed alone, median of "
                          f"{r.get('profile_steps', 1)}; floor at {r['gemm_gflops_s']:.0f} GFLOP/s)"]
            pw = max(len("the step (timed above)"), *(len(p["part"]) for p in r["parts"])) + 2
            lines += [f"  {'part':<{pw}}{'ms':>8}{'GFLOP':>8}{'floor ms':>10}{'floor/time':>12}"]
            lines += [f"  {p['part']:<{pw}}{p['ms']:>8.0f}{p['flops'] / 1e9:>8.1f}{p['floor_ms']:>10.0f}"
                      f"{p['floor_ms'] / p['ms']:>12.0%}" for p in r["parts"]]
            total, flops = sum(p["ms"] for p in r["parts"]), sum(p["flops"] for p in r["parts"])
            faults = [p["page_faults"] for p in r["parts"] if "page_faults" in p]
            if faults:
                lines += [f"  page faults per timed part: at most {max(faults):.0f}"]
            lines += [f"  {'sum of the parts':<{pw}}{total:>8.0f}{flops / 1e9:>8.1f}",
                      f"  {'the step (timed above)':<{pw}}{r['train_ms']:>8.0f}{r['train_flops'] / 1e9:>8.1f}"
                      f"{'':>10}  (loss, Adam and the glue between parts belong to no part)"]
    scored = [r for r in results if r.get("scoring")]
    if scored:
        lines += ["", "scoring (exp's score_windows: inference mode, windows every seq_len):"]
        for r in scored:
            sc = r["scoring"]
            lines.append(f"  {_label(r, multi):<{w}}{sc['points']:>9,} points in {sc['seconds']:7.1f} s = "
                         f"{sc['points_s']:>8,.0f} points/s")
    return "\n".join(lines)


_SETTING_DEFAULTS = {"llm": "gpt2", "llm_init": "random", "llm_layers": 6, "channels": 38, "seq_len": 100}


def apply_setting(args: argparse.Namespace) -> argparse.Namespace:
    """``--setting``'s values for every option still at its default (explicit flags win); in place."""
    for key, value in SETTINGS.get(args.setting or "", {}).items():
        if getattr(args, key) == _SETTING_DEFAULTS[key]:
            setattr(args, key, value)
    return args


def config_names(configs: str | None, default: Sequence[str] = tuple(CONFIGS)) -> tuple[list[str], str | None]:
    """``--configs`` as a list, and a note to print (None: nothing to say).

    Unset, it is ``default`` less the bf16 configurations when PyTorch has no fast bf16 matmul on this
    CPU (``cpu_bf16_native() is False``: bf16 GEMMs there run 7-70x slower than fp32, so a bf16 row
    would take hours and say nothing about the model); named explicitly they run, with the note.
    Raises ValueError naming the unknown ones and the choices.
    """
    from utils.provenance import slow_bf16_reason
    names = [c.strip() for c in configs.split(",") if c.strip()] if configs is not None else list(default)
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown --configs {unknown}; choose from {', '.join(CONFIGS)}")
    bf16 = [c for c in names if CONFIGS[c][1]]
    why = slow_bf16_reason() if bf16 else None
    if why is None:
        return names, None
    if configs is None:
        return ([c for c in names if c not in bf16],
                f"skipped {', '.join(bf16)}: {why}; name them in --configs to time them anyway")
    return names, f"note: {why}; the bf16 rows measure that fallback"


def worker_argv(args: argparse.Namespace, names: list[str], profiling: bool = True) -> list[str]:
    """The options of ``args`` (after ``apply_setting``) as a worker process's command line, configurations ``names``.

    ``profiling=False`` leaves out the breakdown options (``--profile_steps``, ``--parts``, ``--replay``), which older
    checkouts' workers (``scripts.bench ab``'s baseline) do not know and do not use.
    """
    argv = [f"--batch_size={args.batch_size}", f"--seq_len={args.seq_len}", f"--channels={args.channels}",
            f"--llm={args.llm}", f"--llm_init={args.llm_init}", f"--llm_layers={args.llm_layers}",
            f"--model_flags={args.model_flags}", f"--warmup={args.warmup}", f"--steps={args.steps}",
            f"--infer_steps={args.infer_steps}", f"--configs={','.join(names)}",
            f"--profile_top={args.profile_top}", f"--score_points={args.score_points}",
            f"--score_batch_size={args.score_batch_size}"] \
        + ([f"--threads={args.threads}"] if args.threads else [])
    if profiling:
        argv += [f"--profile_steps={args.profile_steps}", f"--replay={args.replay}"] \
            + (["--parts"] if args.parts else [])
    return argv


def main(args: argparse.Namespace) -> int:
    apply_setting(args)
    try:
        names, note = config_names(args.configs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    llms = [m.strip() for m in args.llm.split(",") if m.strip()]
    if args._worker:
        task, _, name = args._worker.partition(":")
        runs = _runs(names, llms)
        result = _timing(runs, args) if task == "timing" else _memory(next(r for r in runs if r[0] == name), args)
        print(json.dumps(result))
        return 0
    argv = worker_argv(args, names)
    print(f"model benchmark: B={args.batch_size} L={args.seq_len} C={args.channels}, {args.llm_layers} LLM layers, "
          f"CrossAlign --llm {args.llm} --llm_init {args.llm_init} {args.model_flags}; threads "
          f"{args.threads or 'torch default'}; {args.warmup} warm-up + {args.steps} timed steps, interleaved")
    from utils.allocator import OPT_OUT, keep_large_blocks
    print(f"  allocator: {'glibc large blocks kept in the heap' if keep_large_blocks() else 'default'} "
          f"(utils/allocator.py; {OPT_OUT}=1 for the default)")
    if note:
        print(f"  {note}")
    print(f"  before: {_load()}", flush=True)
    timing = _run_worker("timing", argv)
    print(f"  timed:  {_load()}", flush=True)
    results = []
    for name, _ in _runs(names, llms):
        results.append({**timing["runs"][name], **_run_worker(f"memory:{name}", argv)})
    print(f"  after memory runs: {_load()}")
    _add_roofline(results, timing["gemm"])
    print(_table(results, timing["gemm"]))
    if args.json:
        from utils.io import save_json
        save_json(args.json, {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                              "gemm": timing["gemm"], "results": results})
    return 0
