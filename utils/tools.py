"""Training utilities: seeding, learning-rate schedules, early stopping."""
from __future__ import annotations

import math
import random

import numpy as np
import torch


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
