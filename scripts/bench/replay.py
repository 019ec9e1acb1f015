"""How much of a step is its matrix products: every matmul of a step replayed alone, at its own shapes.

The roofline's GEMM floor prices every matmul FLOP at one rate, that of the backbone block's big weight
GEMMs (``scripts.bench.model.gemm_rate``). A step's real matmuls have other shapes: MiniLM's 384 x 384
projections, LoRA's rank-8 products, attention's batched ones with an inner dimension of 32-64, the
transposed operands of the backward. Narrower ones run slower, and no change to the code around them
makes them faster. This module records every call a step makes to an op the FLOP counter counts
(``mm``, ``addmm``, ``bmm``, ``baddbmm``, CPU fused attention forward and backward, convolutions), with
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
from typing import Callable

__all__ = ["record_matmuls", "Replay"]


def _counted_ops() -> set:
    """The overload packets the roofline counts FLOPs for: FlopCounterMode's registry plus our formulas."""
    from torch.utils.flop_counter import flop_registry

    from scripts.bench.model import _flop_formulas
    return set(flop_registry) | set(_flop_formulas())


def _describe(value):
    """A hashable description of one argument: a tensor by its layout (floating point) or its values (other
    dtypes: seeds, offsets, masks, small), a list element-wise, anything else as it is."""
    import torch
    if torch.is_tensor(value):
        if value.is_floating_point():
            return ("tensor", tuple(value.shape), tuple(value.stride()), value.dtype)
        return ("values", value.detach().clone())
    if isinstance(value, (list, tuple)):
        return type(value)(_describe(v) for v in value)
    return value


def _key(value):
    """``_describe``'s output made hashable (a non-floating tensor by its shape, dtype and values)."""
    if isinstance(value, tuple) and value and value[0] == "values":
        t = value[1]
        return ("values", tuple(t.shape), t.dtype, tuple(t.flatten().tolist()))
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    return value


def _storage(shape, stride) -> int:
    """Elements a tensor of this layout spans (expanded, stride-0 dimensions span one)."""
    return 0 if 0 in shape else 1 + sum((n - 1) * st for n, st in zip(shape, stride))


def _materialise(value, pool):
    """Operands with ``_describe``'s layout, values from ``pool`` (a flat random float32 tensor at least as long
    as the largest operand's storage); other arguments as recorded. Any strides, overlapping ones too (a
    bias broadcast with stride 0): the operand is a strided view of its own copy of the pool's head."""
    import torch
    if isinstance(value, tuple) and value and value[0] == "tensor":
        _, shape, stride, dtype = value
        return torch.as_strided(pool[:_storage(shape, stride)].to(dtype, copy=True), shape, stride)
    if isinstance(value, tuple) and value and value[0] == "values":
        return value[1]
    if isinstance(value, (list, tuple)):
        return type(value)(_materialise(v, pool) for v in value)
    return value


def _largest(value) -> int:
    """The largest storage among ``_describe``'d operands."""
    if isinstance(value, tuple) and value and value[0] == "tensor":
        return _storage(value[1], value[2])
    if isinstance(value, (list, tuple, dict)):
        return max((_largest(v) for v in (value.values() if isinstance(value, dict) else value)), default=0)
    return 0


def record_matmuls(fn: Callable[[], object]) -> list[dict]:
    """Run ``fn()`` once and return its distinct counted calls: ``{"op", "func", "args", "kwargs", "count"}``
    (``args``/``kwargs`` described by layout, see ``_describe``), in order of first appearance."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counted = _counted_ops()
    calls: dict = {}
    counts: Counter = Counter()

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func._overloadpacket in counted:
                args_d, kwargs_d = _describe(list(args)), {k: _describe(v) for k, v in kwargs.items()}
                key = (func, _key(args_d), _key(sorted(kwargs_d.items())))
                calls.setdefault(key, {"op": str(func._overloadpacket).removeprefix("aten."), "func": func,
                                       "args": args_d, "kwargs": kwargs_d})
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

        from scripts.bench.model import count_flops
        self.calls, self.seconds = calls, []
        largest = max((max(_largest(c["args"]), _largest(c["kwargs"])) for c in calls), default=0)
        self.pool = torch.randn(largest, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            self.flops = [sum(count_flops(self._runner(call)).values()) for call in calls]

    def _runner(self, call: dict) -> Callable[[], object]:
        args = _materialise(call["args"], self.pool)
        kwargs = {k: _materialise(v, self.pool) for k, v in call["kwargs"].items()}
        return lambda: call["func"](*args, **kwargs)

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
            shapes = [list(a[1]) for a in call["args"] if isinstance(a, tuple) and a and a[0] == "tensor"]
            out.append({"op": call["op"], "shapes": shapes, "count": call["count"], "flops": self.flops[i],
                        "ms": 1e3 * statistics.median(p[i] for p in self.seconds) if self.seconds else None})
        return out
