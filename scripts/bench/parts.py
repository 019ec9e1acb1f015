"""Where a training step's time goes, part by part: each top-level module of a model, forward + backward
on the inputs and output gradient it had in a real step, timed alone against its own GEMM floor.

``python -m scripts.bench model --parts`` prints this table under the roofline. The operator breakdown
says *which kernels* the time goes to; this says *which part of the method* spends it, and how far that
part is from its matmuls alone: a part at 95 % of its floor has nothing left to gain but faster GEMMs,
one at 15 % is where work remains. Each part is timed apart from the others, so the sum of the parts
differs a little from the step (cache state, and the loss, the optimiser and the glue between parts,
which belong to no part, shown as the remainder).
"""
from __future__ import annotations

import statistics
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Callable

__all__ = ["capture_calls", "part_times"]


def _label(name: str, kwargs: dict) -> str:
    flags = ", ".join(f"{k}={v}" for k, v in kwargs.items() if isinstance(v, (bool, int, float, str)))
    return f"{name} ({flags})" if flags else name


def _fresh_leaves(tree):
    """Tensors of ``tree`` as new leaves over the same storage, each needing a gradient iff its original did."""
    import torch
    from torch.utils._pytree import tree_map
    return tree_map(lambda t: t.detach().requires_grad_(t.requires_grad) if torch.is_tensor(t) else t, tree)


def capture_calls(model, step: Callable[[], object]) -> list[dict]:
    """Run ``step()`` once, recording every call of ``model``'s direct children in order.

    Each record: ``name`` (the child's attribute name, with its scalar keyword flags when it was called
    with some), ``module``, ``args`` and ``kwargs`` (copies of its inputs, cut from the step's graph,
    each tensor needing a gradient iff the one it copies did), and ``grads``: the gradient that reached
    each of its outputs (flattened) in that step's backward, ``None`` for an output that got none.
    """
    import torch
    from torch.utils._pytree import tree_flatten, tree_map

    calls: list[dict] = []
    copy = lambda t: t.detach().clone().requires_grad_(t.requires_grad) if torch.is_tensor(t) else t  # noqa: E731

    def hook(name: str):
        def record(module, args, kwargs, out):
            flat, _ = tree_flatten(out)
            call = {"name": _label(name, kwargs), "module": module, "args": tree_map(copy, args),
                    "kwargs": tree_map(copy, kwargs), "grads": [None] * len(flat)}
            for i, t in enumerate(flat):
                if torch.is_tensor(t) and t.requires_grad:
                    t.register_hook(lambda g, i=i, call=call: call["grads"].__setitem__(i, g.detach().clone()))
            calls.append(call)
        return record

    handles = [child.register_forward_hook(hook(name), with_kwargs=True) for name, child in model.named_children()]
    try:
        step()
    finally:
        for h in handles:
            h.remove()
    return calls


def _forward_backward(call: dict, autocast: Callable[[], AbstractContextManager]) -> None:
    import torch
    from torch.utils._pytree import tree_flatten
    with autocast():
        out = call["module"](*_fresh_leaves(call["args"]), **_fresh_leaves(call["kwargs"]))
    pairs = [(t, g) for t, g in zip(tree_flatten(out)[0], call["grads"]) if g is not None]
    if pairs:
        torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])


def part_times(model, step: Callable[[], object], repeats: int = 3,
               autocast: Callable[[], AbstractContextManager] = nullcontext) -> list[dict]:
    """One row per call of a direct child of ``model`` in ``step()``: ``{"part", "ms", "flops", "page_faults"}``.

    ``ms``: median over ``repeats`` of that call's forward + backward on its recorded inputs and output
    gradients, after one untimed call that counts its matmul FLOPs (``flops``, as
    ``scripts.bench.model.count_flops`` counts a step's); ``page_faults``: the median minor page faults of
    those timed calls (after ``prefault_heap``, 0 or a few). The parameter gradients these calls
    accumulate are dropped at the end.
    """
    from scripts.bench.model import count_flops, minor_faults, prefault_heap
    rows = []
    calls = capture_calls(model, step)
    prefault_heap()  # the captured inputs fill the heap's holes: without room at its top the parts take page faults
    for call in calls:
        run = lambda: _forward_backward(call, autocast)  # noqa: E731
        flops = sum(count_flops(run).values())
        times, faults = [], []
        for _ in range(max(1, repeats)):
            start, t0 = minor_faults(), time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
            faults.append(minor_faults() - start)
        rows.append({"part": call["name"], "ms": 1e3 * statistics.median(times), "flops": flops,
                     "page_faults": statistics.median(faults)})
    for p in model.parameters():
        p.grad = None
    return rows
