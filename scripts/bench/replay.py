"""How much of a step is its matrix products: every matmul of a step replayed alone, at its own shapes.

The roofline's GEMM floor prices every matmul FLOP at one rate, that of the backbone block's big weight
GEMMs (``scripts.bench.model.gemm_rate``). A step's real matmuls have other shapes: MiniLM's 384 x 384
projections, LoRA's rank-8 products, attention's batched ones with an inner dimension of 32-64, the
transposed operands of the backward. Narrower ones run slower, and no change to the code around them
makes them faster. This module records every call a step makes to an op the FLOP counter counts
(``mm``, ``addmm``, ``bmm``, ``baddbmm``, CPU fused attention forward and backward, our attention kernel's
``crossalign::attention`` and its backward, convolutions), with
each operand's shape, strides and dtype, and times each distinct call alone on random operands of that
layout. The sum is the step's time if only its matmuls ran, each at the speed it has here:

- ``replayed matmul ms / step ms`` is the share of the step spent in matrix products; the rest
  (elementwise passes, norms, softmax, dropout, the selective scan, Adam, Python) is what fusing or
  removing work could still win;
- ``GEMM floor ms / replayed matmul ms`` is how fast the step's own shapes run against the block GEMM:
  below 100 % is the cost of the method's shapes (head width, LoRA rank, model width), which only a
  faster GEMM library or different dimensions change.

Their product is the roofline's floor/step.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["record_matmuls", "Replay"]


@dataclass(frozen=True)
class _Operand:
    """A floating-point tensor argument, described by its layout: replayed on pool values."""
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: object

    def span(self) -> int:
        """Elements the layout spans (an expanded, stride-0 dimension spans one)."""
        return 0 if 0 in self.shape else 1 + sum((n - 1) * st for n, st in zip(self.shape, self.stride))

    def build(self, pool):
        """A tensor of this layout (any strides, overlapping ones too: a bias broadcast with stride 0), a strided
        view of its own copy of ``pool``'s head (a flat random float32 tensor at least ``span()`` long)."""
        import torch
        return torch.as_strided(pool[:self.span()].to(self.dtype, copy=True), self.shape, self.stride)


@dataclass(frozen=True)
class _Values:
    """A tensor argument of another dtype (a seed, an offset, a mask): replayed as recorded, keyed by its values."""
    key: tuple
    tensor: object = field(compare=False)


def _describe(value):
    """One argument leaf as recorded: a floating-point tensor by its layout, another tensor by its values,
    anything else as it is."""
    import torch
    if not torch.is_tensor(value):
        return value
    if value.is_floating_point():
        return _Operand(tuple(value.shape), tuple(value.stride()), value.dtype)
    t = value.detach().clone()
    return _Values((tuple(t.shape), t.dtype, tuple(t.flatten().tolist())), t)


def _counted_ops() -> set:
    """The overload packets the roofline counts FLOPs for: FlopCounterMode's registry plus our formulas."""
    from torch.utils.flop_counter import flop_registry

    from scripts.bench.model import _flop_formulas
    return set(flop_registry) | set(_flop_formulas())


def record_matmuls(fn: Callable[[], object]) -> list[dict]:
    """Run ``fn()`` once and return its distinct counted calls: ``{"op", "func", "args", "kwargs", "count"}``
    (tensor arguments described by ``_describe``), in order of first appearance. Two calls are the same call
    when their op, argument layouts (shapes, strides, dtypes) and other arguments are equal."""
    from torch.utils._pytree import tree_flatten, tree_map
    from torch.utils._python_dispatch import TorchDispatchMode

    counted = _counted_ops()
    calls: dict = {}
    counts: Counter = Counter()

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func._overloadpacket in counted:
                described = tree_map(_describe, (list(args), kwargs))
                leaves, spec = tree_flatten(described)
                key = (func, tuple(leaves), spec)
                calls.setdefault(key, {"op": str(func._overloadpacket).removeprefix("aten."), "func": func,
                                       "args": described[0], "kwargs": described[1]})
                counts[key] += 1
            return func(*args, **kwargs)

    with Recorder():
        fn()
    return [{**call, "count": counts[key]} for key, call in calls.items()]


class Replay:
    """The distinct calls of ``record_matmuls``, each run alone on operands laid out as recorded (same shapes,
    strides and dtypes: a transposed operand is replayed transposed, since BLAS speed depends on it; values
    from one standard normal pool).

    ``time_pass()`` runs each distinct call once and records its seconds; ``rows()`` gives, per call,
    ``{"op", "shapes", "count", "ms", "flops"}``: ``ms`` the median over the passes (times ``count`` for the
    step's total), ``flops`` one call's matmul FLOPs (``scripts.bench.model.count_flops``, counted once at
    construction). Passes are meant to be interleaved with the timed steps, so that the host's drift hits
    both alike; each call's operands are built before it is timed and freed after, so that a pass holds one
    call's operands at a time and leaves the heap as the steps use it.
    """

    def __init__(self, calls: list[dict]) -> None:
        import torch
        from torch.utils._pytree import tree_leaves

        from scripts.bench.model import count_flops
        self.calls, self.seconds = calls, []
        largest = max((leaf.span() for c in calls for leaf in tree_leaves((c["args"], c["kwargs"]))
                       if isinstance(leaf, _Operand)), default=0)
        self.pool = torch.randn(largest, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            self.flops = [sum(count_flops(self._runner(call)).values()) for call in calls]

    def _runner(self, call: dict) -> Callable[[], object]:
        from torch.utils._pytree import tree_map
        args, kwargs = tree_map(self._build, (call["args"], call["kwargs"]))
        return lambda: call["func"](*args, **kwargs)

    def _build(self, leaf):
        if isinstance(leaf, _Operand):
            return leaf.build(self.pool)
        if isinstance(leaf, _Values):
            return leaf.tensor
        return leaf

    def time_pass(self) -> float:
        """One pass over the distinct calls; returns this pass's matmul seconds for the step (each call's time
        times its count)."""
        import torch
        times = []
        with torch.no_grad():
            for call in self.calls:
                run = self._runner(call)
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
                del run
        self.seconds.append(times)
        return sum(t * call["count"] for t, call in zip(times, self.calls))

    def rows(self) -> list[dict]:
        out = []
        for i, call in enumerate(self.calls):
            shapes = [list(a.shape) for a in call["args"] if isinstance(a, _Operand)]
            out.append({"op": call["op"], "shapes": shapes, "count": call["count"], "flops": self.flops[i],
                        "ms": 1e3 * statistics.median(p[i] for p in self.seconds) if self.seconds else None})
        return out
