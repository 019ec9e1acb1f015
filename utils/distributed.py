"""Data-parallel runs under torchrun (PyTorch's launcher): one process per device, one model.

`torchrun --nproc_per_node N run.py ...` sets RANK, LOCAL_RANK and WORLD_SIZE for each process;
`init_from_env` joins the process group (NCCL on CUDA, one GPU per LOCAL_RANK; gloo on CPU) and
everything else asks `rank()` / `world_size()`, which are 0 / 1 in a plain `python run.py`.
The rules the training loop follows (README, Multi-GPU and multi-node runs):

- training batches come from `torch.utils.data.DistributedSampler` (its seed + `set_epoch`), the
  gradients are averaged by `DistributedDataParallel`, `--batch_size` is the global batch;
- evaluation splits are cut into contiguous, unpadded shards (`ShardSampler`) and the sums are
  all-reduced (`all_reduce_sum`), so every window counts exactly once;
- only rank 0 writes files.
"""
from __future__ import annotations

import os
import shlex
from datetime import timedelta
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

# a rank that waits longer than this for the others stops with an error instead of hanging forever
TIMEOUT = timedelta(minutes=int(os.environ.get("CROSSALIGN_DIST_TIMEOUT_MIN", "30")))


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(use_cuda: bool) -> torch.device | None:
    """Join the torchrun process group; return this process's device (None when not under torchrun).

    On CUDA each process takes GPU `LOCAL_RANK` of the GPUs it sees (restrict them with
    CUDA_VISIBLE_DEVICES) and the backend is NCCL; on CPU it is gloo.
    """
    if not launched_by_torchrun() or is_initialized():
        return None
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"torchrun LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) are "
                             f"visible; lower --nproc_per_node or set CUDA_VISIBLE_DEVICES")
        device = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=TIMEOUT)
    return device


def shutdown() -> None:
    """Leave the process group together: a rank that tore its gloo connections down while another still
    wrote its results was seen to abort ("terminate called without an active exception", SIGABRT), and
    torchrun then killed the writer."""
    if is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def torchrun_command(argv: Sequence[str], devices: str) -> str:
    """The command that runs `run.py argv` on the GPUs `devices` ("0,1"), one process each."""
    ids = [d.strip() for d in devices.split(",") if d.strip()]
    drop = {"--use_multi_gpu"}
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in drop:
            continue
        if a == "--devices":
            skip = True
            continue
        if a.startswith("--devices="):
            continue
        rest.append(a)
    return (f"CUDA_VISIBLE_DEVICES={','.join(ids)} torchrun --standalone --nproc_per_node {len(ids)} run.py "
            + " ".join(shlex.quote(a) for a in rest)).rstrip()


class ShardSampler(Sampler[int]):
    """This rank's contiguous share of `range(n)` in order, with no padding (shards differ by at most one)."""

    def __init__(self, n: int, num_replicas: int | None = None, rank_: int | None = None):
        self.num_replicas = world_size() if num_replicas is None else num_replicas
        r = rank() if rank_ is None else rank_
        self.start, self.stop = shard_bounds(n, self.num_replicas, r)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def shard_bounds(n: int, num_replicas: int, rank_: int) -> tuple[int, int]:
    """`[start, stop)` of shard `rank_` when `n` items are cut into `num_replicas` contiguous shards."""
    base, extra = divmod(n, num_replicas)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (1 if rank_ < extra else 0)


def all_reduce_sum(values: np.ndarray | torch.Tensor, device: torch.device | None = None):
    """Element-wise sum over the ranks (a copy; the input itself when there is one process).

    NCCL reduces CUDA tensors only, so the sum is done on `device` and copied back."""
    if world_size() == 1:
        return values
    as_numpy = isinstance(values, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(values)) if as_numpy else values
    target = device if device is not None and dist.get_backend() == "nccl" else torch.device("cpu")
    buf = t.to(target).clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    out = buf.cpu()
    return out.numpy() if as_numpy else out.to(t.device)


def all_gather_objects(obj) -> list:
    """Every rank's `obj` (picklable), in rank order."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_initialized():
        dist.barrier()
