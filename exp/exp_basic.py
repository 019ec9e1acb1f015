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

import hashlib
import json
import os
import random
import re
import time
from argparse import Namespace
from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from models import get_model_class
from utils import distributed
from utils.checkpoint import CheckpointError, load_into, save_checkpoint
from utils.io import append_summary, save_json, save_text, save_torch
from utils.provenance import provenance, slow_bf16_reason
from utils.tools import EarlyStopping, learning_rate, set_seed


# flags that cannot change the data or the trained model (run control, output places, devices, how the
# scores are evaluated) stay out of the setting, so a test-only run with other values finds the checkpoint;
# every other flag, including any added later, enters the setting's digest
NOT_IN_SETTING = frozenset({
    "is_training", "itr", "checkpoints", "results", "no_progress", "no_plot", "use_gpu", "gpu", "threads",
    "num_workers", "ssm_backend", "test_step", "pot_risk", "pot_level", "vus_window", "threshold_sample", "resume",
    "score_batch_size", "log_every", "use_multi_gpu", "devices",
    "preset",  # it only sets defaults: the values it set are in the digest
    "enc_in", "c_out",  # derived from the data
})
# the run's identity beyond its configuration (a configuration is shared by the seeds of one experiment)
RUN_IDENTITY = ("model_id", "des", "seed")
PATH_FLAGS = ("root_path", "train_file", "test_file", "label_file")  # compared by where they point
INCOMPLETE = "INCOMPLETE"  # marker file of a results folder being written
SETTING_MAX = 200  # characters; a folder name may have at most 255 bytes


def _digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:10]


def setting_values(args: Namespace) -> dict:
    """The flags that define a run's data and model (all but `NOT_IN_SETTING`; unset ones left out, so
    a flag added later with default None changes no existing name); paths by their absolute form."""
    values = {}
    for key, value in sorted(vars(args).items()):
        if key in NOT_IN_SETTING or key.startswith("_") or value is None:
            continue
        if key in PATH_FLAGS:
            value = os.path.realpath(str(value))
        elif key == "data_path" and getattr(args, "root_path", None):
            value = os.path.realpath(os.path.join(args.root_path, str(value)))
        values[key] = value
    return values


def config_digest(args: Namespace) -> str:
    """Digest of the configuration: `setting_values` without the run's name and seed. Runs with equal
    digests differ only in seed or name, so a table may average them."""
    return _digest({k: v for k, v in setting_values(args).items() if k not in RUN_IDENTITY})


def model_output(model: nn.Module, x: torch.Tensor, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """`model(x)` under `autocast` as (float32 output, float32 auxiliary loss, 0 when the model returns none)."""
    with autocast:
        out = model(x)
    out, aux = out if isinstance(out, tuple) else (out, None)
    aux = torch.zeros((), device=x.device) if aux is None else aux.float()
    return out.float(), aux


# flags that may change between a killed run and its --resume (they do not change what is trained)
RESUME_FREE_FLAGS = frozenset({"resume", "is_training", "threads", "no_progress", "no_plot", "num_workers",
                               "checkpoints", "results", "root_path", "data_path", "train_file", "test_file",
                               "label_file", "use_gpu", "gpu", "use_multi_gpu", "devices", "itr"})


_FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_optimizer(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam over ``params``, PyTorch's fused implementation where every parameter allows it (floating point, on
    the CPU or CUDA): one kernel over all tensors, where the default loops over them with about ten operations
    each (the quickstart step's 93 parameter tensors: 11.4 -> 3.9 ms on one CPU core). The same update up to
    float rounding, and the same state dict."""
    fused = all(p.is_floating_point() and p.device.type in _FUSED_ADAM_DEVICES for p in params)
    return torch.optim.Adam(params, lr=lr, fused=True if fused else None)


def training_step(compute_loss: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                  optimizer: torch.optim.Optimizer, check_finite: bool = True) -> torch.Tensor:
    """One optimisation step: zero the gradients, `compute_loss() -> (total, task)`, check the total is
    finite (before any weight changes), back-propagate, step. Returns the detached total loss.

    `check_finite=False` skips the check, which waits for the device (the CUDA loop checks every
    `log_every` steps instead, so the GPU never idles while the host reads one number)."""
    optimizer.zero_grad(set_to_none=True)
    loss, _ = compute_loss()
    if check_finite and not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()}")
    loss.backward()
    optimizer.step()
    return loss.detach()


class _TaskLoss(nn.Module):
    """The task's loss as a module, so that DistributedDataParallel's forward (which arms its gradient
    all-reduce) wraps every path to the loss, a model's own `loss` hook included."""

    def __init__(self, model: nn.Module, loss: Callable):
        super().__init__()
        self.model = model
        self._loss = loss

    def forward(self, batch):
        return self._loss(batch)


def _rng_state() -> dict:
    """Every random generator the loop draws from (python, numpy, torch CPU and CUDA), in checkpointable types."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": [name, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    random.setstate(tuple(s if not isinstance(s, list) else tuple(s) for s in state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class ExpBasic:
    task_name = ""

    def __init__(self, args: Namespace):
        self.args = args
        if args.threads:
            torch.set_num_threads(args.threads)
        set_seed(args.seed)
        self.device = self._device()
        if getattr(args, "bf16", None) is None:  # the default: bf16 autocast on CUDA, fp32 on CPU
            args.bf16 = int(self.device.type == "cuda")
        slow_bf16 = slow_bf16_reason() if args.bf16 and self.device.type == "cpu" else None
        if slow_bf16:
            print(f"warning: --bf16 1 on this CPU: {slow_bf16}; use --bf16 0 (the CPU default)")
        if self.device.type == "cuda":
            # TF32 matmuls/convolutions (10-bit mantissa products, fp32 accumulation) and cuDNN's autotuner
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
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
        if isinstance(getattr(self.model, "d_model", None), int):  # the width it uses, whatever --d_model said
            self.model_info.setdefault("d_model", self.model.d_model)
        print(f"model {args.model}: {n_train:,} trainable / {n_total:,} total parameters on {self.device}"
              + (f" (rank {distributed.rank()} of {distributed.world_size()})" if distributed.world_size() > 1 else ""))

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
        """Run name in Time-Series-Library style: task, ids, data, main hyperparameters, model options,
        then `h<digest>` of every flag that defines the data or the model (`setting_values`), seed,
        `--des` and the iteration. Runs that differ in any such flag (`--synthetic_seed`, a custom data
        file, a model option, `--max_train_steps`, ...) therefore never share a folder. Names longer than
        SETTING_MAX characters are shortened (the digest, which includes the full `--model_id` and
        `--des`, keeps them apart).
        """
        a = self.args
        clean = lambda p: re.sub(r"[^A-Za-z0-9_.+-]", "-", str(p))  # noqa: E731
        tags = getattr(get_model_class(a.model), "setting_tags", None)
        digest = _digest({**setting_values(a), "itr": i})
        model_id, des = clean(a.model_id), clean(a.des)
        head = [a.task_name, model_id, a.model, a.data] + ([a.entity] if a.entity else [])
        head += [self._setting_data_part(), f"bs{a.batch_size}", f"lr{a.learning_rate:g}", f"ep{a.train_epochs}"]
        head += list(tags(a)) if tags else []
        tail = [f"h{digest}", f"sd{a.seed}", des, str(i)]
        name = "_".join(clean(p) for p in head + tail)
        if len(name) > SETTING_MAX:
            short = lambda t: t if len(t) <= 32 else t[:31] + "-"  # noqa: E731
            head[1], tail[2] = short(model_id), short(des)
            tail_text = "_".join(clean(p) for p in tail)
            head_text = "_".join(clean(p) for p in head)
            room = SETTING_MAX - len(tail_text) - 1
            name = (head_text if len(head_text) <= room else head_text[:room - 1] + "-") + "_" + tail_text
        return name

    def _device(self) -> torch.device:
        if self.args.use_gpu and torch.cuda.is_available():
            if distributed.is_initialized():  # torchrun: the GPU init_from_env chose for this LOCAL_RANK
                return torch.device("cuda", torch.cuda.current_device())
            n = torch.cuda.device_count()
            if not 0 <= self.args.gpu < n:
                raise ValueError(f"--gpu {self.args.gpu}: this machine shows {n} GPU(s) (ids 0..{n - 1}); "
                                 f"pick one of them or --use_gpu 0 for the CPU")
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
        """Training (`shuffle`): a `DistributedSampler` reshuffled per epoch from `--seed` (`set_epoch`), each
        of the W processes taking `--batch_size / W` windows a step, so the global batch is `--batch_size`
        whatever W. Evaluation: this process's contiguous shard, in order, unpadded (see utils/distributed.py)."""
        a, world = self.args, distributed.world_size()
        if shuffle:
            if a.batch_size % world:
                raise ValueError(f"--batch_size {a.batch_size} is the global batch and must divide evenly among "
                                 f"the {world} torchrun processes; use a multiple of {world}")
            sampler = DistributedSampler(dataset, num_replicas=world, rank=distributed.rank(), shuffle=True,
                                         seed=a.seed)
            batch = a.batch_size // world
        else:
            sampler, batch = distributed.ShardSampler(len(dataset)), a.batch_size
        workers = a.num_workers or 0
        return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=False,
                          pin_memory=self.device.type == "cuda", persistent_workers=shuffle and workers > 0)

    def smoke_validation(self, n_windows: int) -> np.ndarray | None:
        """Indices of the validation windows kept under `--max_train_steps` (None: keep all).

        A smoke budget bounds validation too (every stride-1 window of SMAP's validation tail is 842
        batches per epoch): as many batches as training steps, windows evenly spread over the split,
        the same ones every epoch so that early stopping compares like with like."""
        a = self.args
        if not a.max_train_steps or n_windows <= a.max_train_steps * a.batch_size:
            return None
        return np.unique(np.linspace(0, n_windows - 1, a.max_train_steps * a.batch_size).round().astype(np.int64))

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        """Host -> device copy; asynchronous from the loader's pinned memory on CUDA."""
        return t.to(self.device, non_blocking=self.device.type == "cuda")

    def checkpoint_path(self, setting: str) -> str:
        return os.path.join(self.args.checkpoints, setting, "checkpoint.pt")

    def resume_path(self, setting: str) -> str:
        """The per-epoch training state that `--resume` continues from, beside the best checkpoint."""
        return os.path.join(self.args.checkpoints, setting, "resume.pt")

    def _progress(self, iterable, desc: str, total: int | None = None):
        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True,
                    disable=self.args.no_progress or not distributed.is_main())

    @torch.no_grad()
    def validation_loss(self, loader: DataLoader) -> float:
        """Mean task loss over every window of the split (each process sums its shard; the sums are all-reduced,
        so every rank gets the same number and takes the same early-stopping decision)."""
        self.model.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)   # [loss * windows, windows]
        for batch in loader:
            _, task_loss = self._loss(batch)
            n = len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)
            sums[0] += task_loss.double() * n
            sums[1] += n
        total, count = distributed.all_reduce_sum(sums, self.device).tolist()
        return total / max(count, 1)

    def train(self, setting: str) -> dict:
        """Fit with Adam, the `--lradj` schedule and early stopping on the validation task loss.

        The best checkpoint (and `args.json`) is written atomically after each improving epoch and
        reloaded at the end; after every epoch the whole training state goes to `resume.pt` beside
        it, which `--resume` continues from. The test split is never touched. Under torchrun the
        model is wrapped in DistributedDataParallel and only rank 0 writes.
        """
        args = self.args
        ckpt, resume_file = self.checkpoint_path(setting), self.resume_path(setting)
        params = [p for p in self.model.parameters() if p.requires_grad]
        record = {"epochs": [], "stopped_early": False}
        start = time.time()
        if hasattr(self.model, "fit"):
            record["fit_seconds"] = self.ensure_fitted()
        if not getattr(self.model, "needs_training", True) or not params:
            print(f"{args.model} has no gradient training; saving it as is")
            if distributed.is_main():
                self._save_checkpoint(ckpt, epoch=0, val_loss=float("nan"))
            distributed.barrier()
            self.train_record = {**record, "train_seconds": time.time() - start}
            return self.train_record
        optimizer = make_optimizer(params, args.learning_rate)
        stopper = EarlyStopping(args.patience)
        first_epoch = 0
        state = self._read_resume_state(resume_file) if getattr(args, "resume", 0) else None
        if state is not None:
            first_epoch, record = self._restore_resume_state(state, optimizer, stopper)
            start -= record.get("train_seconds_before_resume", 0.0)
            if stopper.should_stop:
                first_epoch = args.train_epochs
        cuda = self.device.type == "cuda"
        net = self._task_loss_module()
        log_every = max(1, getattr(args, "log_every", None) or 50)
        steps_per_epoch = len(self.train_loader)
        if args.max_train_steps:
            steps_per_epoch = min(steps_per_epoch, args.max_train_steps)
        for epoch in range(first_epoch, args.train_epochs):
            lr = learning_rate(args.learning_rate, args.lradj, epoch, args.train_epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            self.train_loader.sampler.set_epoch(epoch)
            self.model.train()
            t0 = time.time()
            total = torch.zeros((), dtype=torch.float64, device=self.device)  # summed on the device: no sync
            n_steps, checked = 0, torch.zeros((), dtype=torch.float64, device=self.device)
            checked_steps = 0
            bar = self._progress(self.train_loader, f"epoch {epoch + 1}/{args.train_epochs}", steps_per_epoch)
            for step, batch in enumerate(bar):
                if step >= steps_per_epoch:
                    break
                try:
                    loss = training_step(lambda: net(batch), optimizer, check_finite=not cuda)
                except FloatingPointError as err:
                    raise FloatingPointError(f"{err} at epoch {epoch + 1} step {step}; lower --learning_rate or "
                                             f"check the data for extreme values") from None
                total += loss.double()
                n_steps += 1
                # the host reads the loss only at the first step, every log_every steps and the epoch's last
                if n_steps == 1 or n_steps % log_every == 0 or step == steps_per_epoch - 1:
                    span = n_steps - checked_steps
                    self._check_running_loss(total, checked, epoch, step, span)
                    bar.set_postfix(loss=f"{float(total - checked) / span:.4f}")
                    checked, checked_steps = total.clone(), n_steps
            train_loss = float(total) / max(n_steps, 1)
            if not np.isfinite(train_loss):
                self._check_running_loss(total, checked, epoch, n_steps - 1, n_steps - checked_steps)
            train_seconds = time.time() - t0
            val_loss = self.validation_loss(self.val_loader)
            improved = stopper.step(val_loss)
            if improved and distributed.is_main():
                self._save_checkpoint(ckpt, epoch=epoch + 1, val_loss=val_loss)
            record["epochs"].append({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
                                     "seconds": train_seconds, "steps": n_steps})
            record["stopped_early"] = stopper.should_stop
            record["train_seconds_before_resume"] = time.time() - start
            self._write_resume_state(resume_file, epoch + 1, optimizer, stopper, record)
            print(f"epoch {epoch + 1}: train {train_loss:.5f}  val {val_loss:.5f}  lr {lr:.2e}  "
                  f"{train_seconds:.1f}s ({n_steps} steps){'  *saved' if improved else ''}")
            if stopper.should_stop:
                print(f"early stopping: no validation improvement for {args.patience} epoch(s)")
                break
        distributed.barrier()  # rank 0's best checkpoint is on disk before any rank reloads it
        self.load_checkpoint(setting)
        record.pop("train_seconds_before_resume", None)
        record.update(best_val_loss=stopper.best, train_seconds=time.time() - start)
        self.train_record = record
        return record

    @staticmethod
    def _check_running_loss(total: torch.Tensor, checked: torch.Tensor, epoch: int, step: int, span: int) -> None:
        value = float(total - checked)
        if not np.isfinite(value):
            raise FloatingPointError(f"training loss became {value} within the {span} steps up to epoch {epoch + 1} "
                                     f"step {step}; lower --learning_rate or check the data for extreme values")

    def _task_loss_module(self) -> Callable:
        """What one training step calls on a batch: the task loss, through DistributedDataParallel under torchrun."""
        if distributed.world_size() == 1:
            return self._loss
        ids = [self.device.index] if self.device.type == "cuda" else None
        # find_unused_parameters: a model hook may leave some trainable weights out of a step's graph
        return DistributedDataParallel(_TaskLoss(self.model, self._loss), device_ids=ids,
                                       find_unused_parameters=True)

    # ---- resume ---------------------------------------------------------------------
    def _write_resume_state(self, path: str, epochs_done: int, optimizer: torch.optim.Optimizer,
                            stopper: EarlyStopping, record: dict) -> None:
        """Everything the next epoch depends on, written atomically by rank 0 (each rank's RNG states gathered)."""
        rng = distributed.all_gather_objects(_rng_state())
        if not distributed.is_main():
            return
        state = {"format": 1, "epochs_done": epochs_done, "model": self.model.state_dict(),
                 "optimizer": optimizer.state_dict(), "stopper": {"best": stopper.best, "bad_epochs": stopper.bad_epochs},
                 "record": record, "rng": rng, "world_size": distributed.world_size(), "args": vars(self.args)}
        save_torch(path, state)

    def _read_resume_state(self, path: str) -> dict | None:
        if not os.path.isfile(path):
            print(f"--resume: no resume state at {path}; training from the start")
            return None
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
            raise ValueError(f"--resume: cannot read {path} ({type(err).__name__}: {err}); delete it to train "
                             f"from the start") from None
        saved, now = state.get("args", {}), vars(self.args)
        changed = sorted(k for k in set(saved) | set(now)
                         if k not in RESUME_FREE_FLAGS and saved.get(k) != now.get(k))
        if changed:
            diff = ", ".join(f"--{k} {saved.get(k)!r} (now {now.get(k)!r})" for k in changed[:6])
            raise ValueError(f"--resume: {path} was written with {diff}; rerun with the same flags, or delete "
                             f"the file to train from the start")
        return state

    def _restore_resume_state(self, state: dict, optimizer: torch.optim.Optimizer,
                              stopper: EarlyStopping) -> tuple[int, dict]:
        self.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        stopper.best, stopper.bad_epochs = state["stopper"]["best"], state["stopper"]["bad_epochs"]
        rng = state["rng"]
        if len(rng) != distributed.world_size():
            print(f"--resume: the state was written by {len(rng)} process(es), this run has "
                  f"{distributed.world_size()}; training continues, but not bit for bit as an uninterrupted run")
        _set_rng_state(rng[min(distributed.rank(), len(rng) - 1)])
        done = int(state["epochs_done"])
        print(f"--resume: continuing after epoch {done} (best validation loss {stopper.best:.5f})")
        return done, state["record"]

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

    def results_folder(self, setting: str) -> str:
        """Create `results/<setting>/` marked INCOMPLETE until `write_results` completes it; return it.

        A run killed while writing its results leaves the marker, so a folder is either complete
        (scores, metrics.json, report.md, its summary row) or says it is not."""
        folder = os.path.join(self.args.results, setting)
        if distributed.is_main():  # rank 0 writes
            save_text(os.path.join(folder, INCOMPLETE),
                      f"results of this run are being written (started {time.strftime('%Y-%m-%d %H:%M:%S')}, "
                      f"pid {os.getpid()}); if no run is writing them, it was interrupted: run it again\n")
        return folder

    def summary_hyperparameters(self) -> dict:
        """The hyperparameters that define a run, for its summary row (tables group and filter on them)."""
        a, info, record = self.args, self.model_info, self.train_record
        files = [getattr(a, k, None) for k in ("data_path", "train_file", "test_file", "label_file")]
        epochs = record.get("epochs", [])
        return {"seq_len": a.seq_len, "step": a.step, "batch_size": a.batch_size, "learning_rate": a.learning_rate,
                "train_epochs": a.train_epochs, "max_train_steps": a.max_train_steps,
                "epochs_trained": len(epochs) if record else None,
                "steps_trained": sum(e["steps"] for e in epochs) if record else None,
                "backbone": info.get("backbone"), "llm_layers": info.get("llm_layers"),
                "e_layers": info.get("e_layers", a.e_layers), "d_model": info.get("d_model"),
                "data_file": "|".join(os.path.basename(str(f)) for f in files if f) or None,
                "des": a.des, "is_training": a.is_training, "config": config_digest(a)}

    def write_results(self, setting: str, metrics: dict, summary: dict, started: float, report: str) -> str:
        """Write `results/<setting>/metrics.json` and `report.md`, append the summary row, then clear the
        folder's INCOMPLETE marker (`results_folder`); rank 0 only; return the folder."""
        folder = os.path.join(self.args.results, setting)
        if not distributed.is_main():
            return folder
        prov = provenance()
        # kernels chosen at run time (e.g. a CUDA scan or its PyTorch fallback): what actually ran
        used = sorted({f"{type(m).__name__}: {m.backend_used}" for m in self.model.modules()
                       if getattr(m, "backend_used", None)})
        model_info = {**self.model_info, **({"backends_used": used} if used else {})}
        payload = {"setting": setting, "task_name": self.task_name, "metrics": metrics, "model": model_info,
                   "training": self.train_record, "checkpoint": getattr(self, "checkpoint_info", None),
                   "test_seconds": time.time() - started, "args": vars(self.args), "provenance": prov}
        save_json(os.path.join(folder, "metrics.json"), payload)
        save_text(os.path.join(folder, "report.md"), report)
        row = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "setting": setting, "task_name": self.task_name,
               "model": self.args.model, "model_id": self.args.model_id, "data": self.args.data,
               "entity": self.args.entity or "", "seed": self.args.seed, "git_commit": prov["commit"],
               **self.summary_hyperparameters(), **summary}
        append_summary(os.path.join(self.args.results, "summary.csv"), row)
        marker = os.path.join(folder, INCOMPLETE)
        if os.path.exists(marker):
            os.remove(marker)
        return folder

