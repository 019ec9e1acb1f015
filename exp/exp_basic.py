"""The training loop shared by every task: build, fit with early stopping, checkpoint, write results.

A task subclass provides four things: `_load_data()` (sets the loaders and
`args.enc_in`), `_loss(batch)` (total loss for the optimiser and the task
loss used for validation), `test(setting)`, and `_setting_data_part()` for the
run's name. The loop never names a model: a model contributes through the
optional hooks documented in `models/__init__.py` (`setting_tags`, `loss`,
`score`, `fit`, `needs_training`). One optimisation step is `training_step`,
which the model benchmark (`scripts/bench/model.py`) calls too.
"""
from __future__ import annotations

import os
import re
import time
from argparse import Namespace
from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from models import get_model_class
from utils.checkpoint import CheckpointError, load_into, save_checkpoint
from utils.io import append_summary, save_json
from utils.provenance import provenance
from utils.tools import EarlyStopping, learning_rate, set_seed


def model_output(model: nn.Module, x: torch.Tensor, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """`model(x)` under `autocast` as (float32 output, float32 auxiliary loss, 0 when the model returns none)."""
    with autocast:
        out = model(x)
    out, aux = out if isinstance(out, tuple) else (out, None)
    aux = torch.zeros((), device=x.device) if aux is None else aux.float()
    return out.float(), aux


def training_step(compute_loss: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                  optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """One optimisation step: zero the gradients, `compute_loss() -> (total, task)`, check the total is
    finite (before any weight changes), back-propagate, step. Returns the detached total loss."""
    optimizer.zero_grad(set_to_none=True)
    loss, _ = compute_loss()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()}")
    loss.backward()
    optimizer.step()
    return loss.detach()


class ExpBasic:
    task_name = ""

    def __init__(self, args: Namespace):
        self.args = args
        if args.threads:
            torch.set_num_threads(args.threads)
        set_seed(args.seed)
        self.device = self._device()
        self.train_loader: DataLoader | None = None
        self.val_loader: DataLoader | None = None
        self._load_data()
        set_seed(args.seed)  # model init independent of how much randomness data loading used
        self.model: nn.Module = get_model_class(args.model)(args).to(self.device)
        self.train_record: dict = {}
        self._fitted = False  # the model's `fit` hook has run (see ensure_fitted)
        n_total = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.model_info = {"name": args.model, "trainable_params": n_train, "total_params": n_total}
        if hasattr(self.model, "describe"):
            self.model_info.update(self.model.describe())
        print(f"model {args.model}: {n_train:,} trainable / {n_total:,} total parameters on {self.device}")

    # ---- to be provided by a task -------------------------------------------------
    def _load_data(self) -> None:
        raise NotImplementedError

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Return `(total loss to minimise, task loss used for validation)`."""
        raise NotImplementedError

    def _setting_data_part(self) -> str:
        """Task-specific part of the setting name (window, horizon, ...)."""
        raise NotImplementedError

    def test(self, setting: str) -> dict:
        raise NotImplementedError

    def ensure_fitted(self) -> float:
        """Call the model's `fit` hook once (seconds taken; 0 when already fitted or there is none).

        A model fitted without gradients is refitted when a run only tests (`--is_training 0`): its
        fitted state is not in the checkpoint, which loads with `weights_only=True` (no pickled
        objects), and the seeded fit gives the same model again.
        """
        if not hasattr(self.model, "fit") or self._fitted:
            return 0.0
        t0 = time.time()
        set_seed(self.args.seed)
        self.model.fit(self.fit_data())
        self._fitted = True
        return time.time() - t0

    def fit_data(self):
        """What a model's `fit` hook receives (the standardised training split); tasks with such models override it."""
        raise NotImplementedError(f"--task_name {self.task_name} has no fit data for {self.args.model}")

    # ---- shared machinery ---------------------------------------------------------
    def setting(self, i: int) -> str:
        """Run name in Time-Series-Library style: task, ids, data, main hyperparameters, model options."""
        a = self.args
        parts = [a.task_name, a.model_id, a.model, a.data] + ([a.entity] if a.entity else [])
        parts += [self._setting_data_part(), f"bs{a.batch_size}", f"lr{a.learning_rate:g}", f"ep{a.train_epochs}"]
        tags = getattr(get_model_class(a.model), "setting_tags", None)
        parts += list(tags(a)) if tags else []
        parts += [f"sd{a.seed}", a.des, str(i)]
        return re.sub(r"[^A-Za-z0-9_.+-]", "-", "_".join(str(p) for p in parts))

    def _device(self) -> torch.device:
        if self.args.use_gpu and torch.cuda.is_available():
            return torch.device(f"cuda:{self.args.gpu}")
        return torch.device("cpu")

    def _autocast(self):
        if not self.args.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model output (float32) and auxiliary loss (0 when the model returns none)."""
        return model_output(self.model, x, self._autocast())

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.args.seed)
        return DataLoader(dataset, batch_size=self.args.batch_size, shuffle=shuffle, generator=generator,
                          num_workers=self.args.num_workers, drop_last=False)

    def checkpoint_path(self, setting: str) -> str:
        return os.path.join(self.args.checkpoints, setting, "checkpoint.pt")

    def _progress(self, iterable, desc: str, total: int | None = None):
        return tqdm(iterable, desc=desc, total=total, leave=False, disable=self.args.no_progress, dynamic_ncols=True)

    @torch.no_grad()
    def validation_loss(self, loader: DataLoader) -> float:
        self.model.eval()
        total, count = 0.0, 0
        for batch in loader:
            _, task_loss = self._loss(batch)
            n = len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)
            total += task_loss.item() * n
            count += n
        return total / max(count, 1)

    def train(self, setting: str) -> dict:
        """Fit with Adam, the `--lradj` schedule and early stopping on the validation task loss.

        The best checkpoint (and `args.json`) is written atomically after each
        improving epoch and reloaded at the end. The test split is never touched.
        """
        args = self.args
        ckpt = self.checkpoint_path(setting)
        params = [p for p in self.model.parameters() if p.requires_grad]
        record = {"epochs": [], "stopped_early": False}
        start = time.time()
        if hasattr(self.model, "fit"):
            record["fit_seconds"] = self.ensure_fitted()
        if not getattr(self.model, "needs_training", True) or not params:
            print(f"{args.model} has no gradient training; saving it as is")
            self._save_checkpoint(ckpt, epoch=0, val_loss=float("nan"))
            self.train_record = {**record, "train_seconds": time.time() - start}
            return self.train_record
        optimizer = torch.optim.Adam(params, lr=args.learning_rate)
        stopper = EarlyStopping(args.patience)
        steps_per_epoch = len(self.train_loader)
        if args.max_train_steps:
            steps_per_epoch = min(steps_per_epoch, args.max_train_steps)
        for epoch in range(args.train_epochs):
            lr = learning_rate(args.learning_rate, args.lradj, epoch, args.train_epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            self.model.train()
            t0, losses = time.time(), []
            bar = self._progress(self.train_loader, f"epoch {epoch + 1}/{args.train_epochs}", steps_per_epoch)
            for step, batch in enumerate(bar):
                if step >= steps_per_epoch:
                    break
                try:
                    loss = training_step(lambda: self._loss(batch), optimizer)
                except FloatingPointError as err:
                    raise FloatingPointError(f"{err} at epoch {epoch + 1} step {step}; lower --learning_rate or "
                                             f"check the data for extreme values") from None
                losses.append(loss.item())
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{loss.item():.4f}")
            train_seconds = time.time() - t0
            val_loss = self.validation_loss(self.val_loader)
            improved = stopper.step(val_loss)
            if improved:
                self._save_checkpoint(ckpt, epoch=epoch + 1, val_loss=val_loss)
            record["epochs"].append({"epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)),
                                     "val_loss": val_loss, "seconds": train_seconds, "steps": len(losses)})
            print(f"epoch {epoch + 1}: train {np.mean(losses):.5f}  val {val_loss:.5f}  lr {lr:.2e}  "
                  f"{train_seconds:.1f}s ({len(losses)} steps){'  *saved' if improved else ''}")
            if stopper.should_stop:
                print(f"early stopping: no validation improvement for {args.patience} epoch(s)")
                record["stopped_early"] = True
                break
        self.load_checkpoint(setting)
        record.update(best_val_loss=stopper.best, train_seconds=time.time() - start)
        self.train_record = record
        return record

    def _backbone_identity(self) -> dict:
        """What the frozen weights are (from the model's `describe`), stored beside their digest."""
        keys = ("name", "backbone", "family", "pretrained", "weights_source", "llm_layers")
        return {k: self.model_info[k] for k in keys if k in self.model_info}

    def _save_checkpoint(self, path: str, epoch: int, val_loss: float) -> None:
        """The small checkpoint (trainable tensors and buffers; frozen weights by digest, utils/checkpoint.py)."""
        save_checkpoint(path, self.model, self._backbone_identity(), epoch=epoch, val_loss=val_loss,
                        args=vars(self.args))
        try:
            save_json(os.path.join(os.path.dirname(path), "args.json"), vars(self.args))
        except OSError as err:
            raise CheckpointError(f"cannot write {os.path.dirname(path)}/args.json: {err.strerror or err}; "
                                  f"free space or choose another --checkpoints folder") from err

    def load_checkpoint(self, setting: str) -> None:
        """Load this setting's checkpoint (either format); a CheckpointError names the file and the fix."""
        path = self.checkpoint_path(setting)
        self.checkpoint_info = load_into(self.model, path, vars(self.args), self._backbone_identity(), self.device)

    def write_results(self, setting: str, metrics: dict, summary: dict, started: float) -> str:
        """Write `results/<setting>/metrics.json` and append the summary row; return the folder."""
        folder = os.path.join(self.args.results, setting)
        prov = provenance()
        payload = {"setting": setting, "task_name": self.task_name, "metrics": metrics, "model": self.model_info,
                   "training": self.train_record, "checkpoint": getattr(self, "checkpoint_info", None),
                   "test_seconds": time.time() - started, "args": vars(self.args), "provenance": prov}
        save_json(os.path.join(folder, "metrics.json"), payload)
        row = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "setting": setting, "task_name": self.task_name,
               "model": self.args.model, "model_id": self.args.model_id, "data": self.args.data,
               "entity": self.args.entity or "", "seed": self.args.seed, "git_commit": prov["commit"], **summary}
        append_summary(os.path.join(self.args.results, "summary.csv"), row)
        return folder

