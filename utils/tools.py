"""Training utilities: seeding, the default thread count, learning-rate schedules, early stopping."""
from __future__ import annotations

import math
import os
import random
import time

import numpy as np
import torch


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """(busy, total) jiffies summed over `cpus` from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [float(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(values)
        busy += sum(values) - values[3] - values[4]
    return (busy, total) if total > 0 else None


def busy_cores(cpus: set[int], interval: float = 0.5) -> float | None:
    """How many of `cpus` other work kept busy over the last `interval` seconds (/proc/stat, Linux).

    Sampled now rather than read from the load average, because the 1-minute average still counts a
    run that has just finished (1.5 on an idle 2-core machine a minute after a quick start)."""
    before = _cpu_times(cpus)
    if before is None:
        return None
    time.sleep(interval)
    after = _cpu_times(cpus)
    if after is None or after[1] <= before[1]:
        return None
    return len(cpus) * (after[0] - before[0]) / (after[1] - before[1])


def default_threads(cores: int | None = None, busy: float | None = None) -> tuple[int, str]:
    """Threads for torch when --threads is unset, and a one-line note saying why.

    The cores this process may use minus the ones other work keeps busy: on a busy machine OpenMP
    threads wait on each other at every small operation (5-50x slower, README), on an idle one every
    core helps. `cores` defaults to sched_getaffinity, `busy` to `busy_cores` over those cores (the
    1-minute load average where /proc/stat is missing); at least 1.
    """
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    if cores is None:
        cores = len(cpus)
    how = "busy now"
    if busy is None:
        busy = busy_cores(cpus)
    if busy is None:
        busy, how = (os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0), "load average"
    threads = max(1, cores - round(busy))
    return threads, f"threads: {threads} (of {cores} cores, {busy:.1f} {how}; --threads N overrides)"


def learning_rate(base: float, schedule: str, epoch: int, total_epochs: int) -> float:
    """Learning rate for 0-based `epoch`: type1 halves every epoch (Time-Series-Library),
    cosine decays from `base` towards 0 over `total_epochs`, constant keeps `base`."""
    if schedule == "type1":
        return base * 0.5 ** epoch
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * epoch / max(1, total_epochs)))
    return base


class EarlyStopping:
    """Stop when the validation loss has not improved for `patience` epochs; remembers the best."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, val_loss: float) -> bool:
        """Record an epoch's validation loss; return True if it is the best so far."""
        if val_loss < self.best - self.min_delta:
            self.best = val_loss
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience
