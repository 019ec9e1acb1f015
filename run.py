"""CrossAlign entry point: parse flags, validate them, dispatch to an experiment in `exp/`.

Flag names follow the Time-Series-Library where one exists there, so
researchers can reuse their command lines:

    python run.py --task_name anomaly_detection --is_training 1 --model CrossAlign \
        --data SMD --root_path ./dataset/SMD --seq_len 100 --anomaly_ratio 0.3

Per-dataset defaults (window, anomaly ratio, batch size, epochs) come from the
spec table in `data_provider/specs.py`; a flag given on the command line wins.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Sequence

from models import model_defaults
from models.crossalign_config import PRESETS, preset_defaults
from models.crossalign_config import add_flags as add_crossalign_flags

TASKS = ("anomaly_detection", "long_term_forecast")


EXAMPLES = """examples:
  python run.py --model CrossAlign --data Synthetic --llm minilm --max_train_steps 50   # a quick CPU check
  python run.py --data SMD --root_path ./dataset/SMD --entity machine-1-2 --llm minilm
  python run.py --task_name long_term_forecast --data ETTh1 --root_path ./dataset/ETT-small --pred_len 96"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every flag's default, once: appended unless the help text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or not action.option_strings or "default" in text.lower():
            return text
        if isinstance(action, argparse._StoreTrueAction):
            default = "off"
        elif action.default is None:
            default = "unset"
        else:
            default = "%(default)s"
        return f"{text} (default: {default})".lstrip()


class _Parser(argparse.ArgumentParser):
    def format_help(self) -> str:
        # the model and dataset lists import the spec table: only when help is shown
        from data_provider.specs import ANOMALY_SPECS, FORECAST_SPECS
        from models import MODELS
        self.epilog = (f"models: {', '.join(MODELS)}\n"
                       f"anomaly_detection datasets: {', '.join(ANOMALY_SPECS)}\n"
                       f"long_term_forecast datasets: {', '.join(FORECAST_SPECS)}\n\n{EXAMPLES}")
        return super().format_help()

    def error(self, message: str):
        """argparse's own errors (unknown flag, bad choice) also name a script's variables."""
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {_script_hint(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        description="CrossAlign: cross alignment of a state space model and LLMs for time series.",
        formatter_class=_HelpFormatter,
    )
    g = p.add_argument_group("basic")
    g.add_argument("--task_name", default="anomaly_detection", choices=TASKS, help="the task")
    g.add_argument("--is_training", type=int, default=1, choices=(0, 1),
                   help="1: train then test; 0: test the saved checkpoint of this setting")
    g.add_argument("--model_id", default=None, help="free-form run name (default: <data>)")
    g.add_argument("--model", default="CrossAlign", help="registered model name (see models/__init__.py)")
    g.add_argument("--des", default="exp", help="free-form description appended to the setting")
    g.add_argument("--itr", type=int, default=1, help="repeat the experiment this many times (seed + i)")
    g.add_argument("--seed", type=int, default=2024, help="model seed (initialisation, shuffling, dropout)")

    g = p.add_argument_group("data")
    g.add_argument("--data", default="Synthetic", help="dataset name from the spec table, e.g. SMD, MSL, ETTh1, custom")
    g.add_argument("--root_path", default=None, help="dataset folder (default ./dataset/<data>)")
    g.add_argument("--data_path", default=None, help="file name inside root_path (forecasting CSVs)")
    g.add_argument("--entity", default=None, help="sub-series: SMD machine (machine-1-2) or UCR id (135)")
    g.add_argument("--train_file", default=None, help="custom: training CSV/NPY file")
    g.add_argument("--test_file", default=None, help="custom: test CSV/NPY file")
    g.add_argument("--label_column", default=None, help="custom: name of the label column in the test file")
    g.add_argument("--label_file", default=None, help="custom: separate label file (CSV/NPY, one value per row)")
    g.add_argument("--seq_len", "--win_size", dest="seq_len", type=int, default=None,
                   help="window length (anomaly) or lookback (forecast); default from the dataset table")
    g.add_argument("--step", type=int, default=1, help="stride between training windows")
    g.add_argument("--test_step", type=int, default=None,
                   help="stride between test windows (default seq_len: non-overlapping); smaller averages overlaps")
    g.add_argument("--anomaly_ratio", type=float, default=None,
                   help="expected anomaly percentage in (0, 50]; default from the dataset table")
    g.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
    g.add_argument("--synthetic_length", type=int, default=6000, help="Synthetic: points per split")
    g.add_argument("--synthetic_channels", type=int, default=8, help="Synthetic: number of channels")
    g.add_argument("--synthetic_anomaly_rate", type=float, default=0.02,
                   help="Synthetic: fraction of test points inside injected anomalies")
    g.add_argument("--synthetic_seed", type=int, default=0, help="Synthetic: generator seed (data, not model)")

    g = p.add_argument_group("forecasting")
    g.add_argument("--features", default="M", choices=("M", "S", "MS"),
                   help="M: multivariate in and out; S: target only; MS: multivariate in, target out")
    g.add_argument("--target", default="OT", help="target column for S/MS")
    g.add_argument("--freq", default=None,
                   help="sampling frequency (informational; time features unused); default from the dataset table")
    g.add_argument("--label_len", type=int, default=None,
                   help="start-token length kept for TSLib compatibility (default seq_len // 2)")
    g.add_argument("--pred_len", type=int, default=96, help="forecast horizon")

    g = p.add_argument_group("optimisation")
    g.add_argument("--batch_size", type=int, default=None, help="default from the dataset table")
    g.add_argument("--train_epochs", type=int, default=None, help="default from the dataset table")
    g.add_argument("--learning_rate", type=float, default=1e-4, help="Adam learning rate, in (0, 1]")
    g.add_argument("--lradj", default="type1", choices=("type1", "cosine", "constant"),
                   help="type1: halve every epoch (TSLib); cosine: cosine decay over the epochs")
    g.add_argument("--patience", type=int, default=3, help="early-stopping patience on the validation loss")
    g.add_argument("--max_train_steps", type=int, default=None,
                   help="stop each epoch after this many batches (quick runs); anomaly detection also validates "
                        "on at most this many batches of windows, evenly spread over the validation split")
    g.add_argument("--use_gpu", type=int, default=1, choices=(0, 1), help="use CUDA when available")
    g.add_argument("--gpu", type=int, default=0, help="CUDA device index")
    g.add_argument("--bf16", type=int, default=None, choices=(0, 1),
                   help="bf16 autocast for matmuls (default: 1 on CUDA, 0 on CPU)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the cores not busy with other work, from the load average; "
                        "OMP_NUM_THREADS when set)")
    g.add_argument("--checkpoints", default="./checkpoints", help="folder of checkpoints/<setting>/")
    g.add_argument("--results", default="./results", help="folder of results/<setting>/ and summary.csv")
    g.add_argument("--no_progress", action="store_true", help="disable tqdm progress bars")
    g.add_argument("--resume", type=int, default=0, choices=(0, 1),
                   help="1: continue training from the last completed epoch (checkpoints/<setting>/resume.pt)")
    g.add_argument("--log_every", type=int, default=50,
                   help="read the training loss on the host every N steps (no per-step GPU sync)")
    g.add_argument("--use_multi_gpu", action="store_true",
                   help="data-parallel on --devices: run under torchrun (without it, prints the torchrun command)")
    g.add_argument("--devices", default="0,1", help="GPU ids for --use_multi_gpu, comma-separated")

    g = p.add_argument_group("model: common")
    g.add_argument("--d_model", type=int, default=128, help="hidden width of baselines (CrossAlign uses the LLM's)")
    g.add_argument("--n_heads", type=int, default=8, help="attention heads")
    g.add_argument("--dropout", type=float, default=0.1, help="dropout probability, in [0, 1)")

    add_crossalign_flags(p)
    g = p.add_argument_group("model: baselines and rivals (unset: each model's own default, see README)")
    g.add_argument("--detector", default="IForest", help="PyOD: the pyod detector class, e.g. IForest, KNN, LOF, "
                                                         "PCA, ECOD, COPOD, HBOS, OCSVM, AutoEncoder")
    g.add_argument("--pyod_window", type=int, default=None, help="PyOD: features = the last N points, flattened")
    g.add_argument("--pyod_max_train", type=int, default=None,
                   help="PyOD: fit on at most this many training points (seeded subsample)")
    g.add_argument("--e_layers", type=int, default=None, help="encoder layers (AnomalyTransformer, TimesNet, ...)")
    g.add_argument("--d_ff", type=int, default=None, help="feed-forward width (AnomalyTransformer, TimesNet, ...)")
    g.add_argument("--k", type=float, default=None, help="AnomalyTransformer: weight of the association discrepancy")
    g.add_argument("--top_k", type=int, default=None, help="TimesNet: periods kept from the FFT")
    g.add_argument("--num_kernels", type=int, default=None, help="TimesNet: Inception kernels")
    g.add_argument("--patch_size", default=None, help="DCdetector: patch sizes, comma-separated (e.g. 3,5)")
    g.add_argument("--moving_avg", type=int, default=None, help="DLinear: moving-average kernel of the trend")
    g.add_argument("--patch_len", type=int, default=None, help="PatchTST, GPT4TS (forecasting): patch length")
    g.add_argument("--stride", type=int, default=None, help="PatchTST, GPT4TS (forecasting): patch stride")
    g = p.add_argument_group("model: presets")
    g.add_argument("--preset", default=None, choices=tuple(PRESETS),
                   help="published: the paper's published code's settings (12 GPT-2 blocks, 3 memory rounds with a "
                        "fixed query, SMD training stride 100); flags given on the command line still win")

    g = p.add_argument_group("evaluation")
    g.add_argument("--pot_risk", type=float, default=1e-3, help="POT/SPOT risk level q")
    g.add_argument("--pot_level", type=float, default=0.98, help="POT initial quantile for the tail fit")
    g.add_argument("--vus_window", type=int, default=None,
                   help="range-AUC/VUS sliding window (default 100, TSB-AD's default; the same for every method)")
    g.add_argument("--no_plot", action="store_true", help="skip scores.png")
    g.add_argument("--score_batch_size", type=_non_negative_int, default=0,
                   help="windows per scoring batch; 0: automatic (256 on CPU; on CUDA 2048, halved on out-of-memory)")
    g.add_argument("--threshold_sample", type=_non_negative_int, default=0,
                   help="score only about N points (whole windows, seeded by --seed) of the training and the "
                        "validation split for the thresholds; 0: all. The test split is always scored in full")
    return p


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: automatic / all), got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the flags; the model's row of `models.MODEL_DEFAULTS`, then a `--preset`, replace the defaults
    first, so explicit flags win over both."""
    parser = build_parser()
    args = parser.parse_args(argv)
    defaults = {**model_defaults(args.model, args.task_name),
                **(preset_defaults(args.preset, args.data) if args.preset else {})}
    if defaults:
        parser.set_defaults(**defaults)
        args = parser.parse_args(argv)
    return args


def _script_hint(message: str) -> str:
    """Under scripts/*.sh (which export CROSSALIGN_SCRIPT and CROSSALIGN_SCRIPT_VARS="flag=VAR ...", VAR "-"
    for a flag the script sets itself), name the script's variable for each flag the message names;
    other flags go through EXTRA."""
    script = os.environ.get("CROSSALIGN_SCRIPT")
    if not script:
        return message
    variables = dict(pair.split("=", 1) for pair in os.environ.get("CROSSALIGN_SCRIPT_VARS", "").split() if "=" in pair)
    flags = list(dict.fromkeys(re.findall(r"--([a-z_][a-z0-9_]*)", message)))
    named = [f"set --{f} with {variables[f]}=" for f in flags if variables.get(f, "-") != "-"]
    others = [f"--{f}" for f in flags if f not in variables]
    parts = named + ([f"pass {' '.join(others)} in EXTRA='...'"] if others else [])
    return f"{message}\n(running {script}: {'; '.join(parts) or 'pass run.py flags in EXTRA=...'})"


def _error(err: BaseException) -> int:
    print(f"error: {_script_hint(str(err))}", file=sys.stderr)
    return 2


def _choose_threads(args: argparse.Namespace) -> None:
    """--threads unset: the free cores (utils/tools.py), with a note; OMP_NUM_THREADS set: torch's choice."""
    if args.threads is not None or os.environ.get("OMP_NUM_THREADS"):
        return
    from utils.tools import default_threads
    args.threads, note = default_threads()
    print(note)


def _check_outputs(args: argparse.Namespace) -> None:
    """Writable output folders before any data is read or any step is trained."""
    from utils.checkpoint import check_writable
    check_writable(args.results, "--results")
    if args.is_training:
        check_writable(args.checkpoints, "--checkpoints")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from data_provider.defaults import apply_defaults  # heavy imports after --help

    try:
        args = apply_defaults(args)
        _check_outputs(args)
    except ValueError as err:
        return _error(err)
    _choose_threads(args)
    from utils.allocator import keep_large_blocks
    keep_large_blocks()  # large tensors reuse heap memory instead of paying page faults (utils/allocator.py)

    from utils import distributed

    if args.use_multi_gpu and not distributed.launched_by_torchrun():
        # one process per GPU is torchrun's job (PyTorch's launcher, which also restarts and spans nodes)
        command = distributed.torchrun_command(sys.argv[1:] if argv is None else list(argv), args.devices)
        print(f"error: --use_multi_gpu runs one process per GPU under torchrun; run:\n  {command}", file=sys.stderr)
        return 2

    from exp import get_experiment
    from utils.checkpoint import check_free_space, state_bytes

    exp_cls = get_experiment(args.task_name)
    base_seed = args.seed
    try:
        import torch
        distributed.init_from_env(use_cuda=bool(args.use_gpu) and torch.cuda.is_available())
        if not distributed.is_main():
            sys.stdout = open(os.devnull, "w")  # one log per run: rank 0's (errors still reach stderr)
        for i in range(args.itr):
            args.seed = base_seed + i
            exp = exp_cls(args)
            setting = exp.setting(i)
            if args.is_training:
                check_free_space(args.checkpoints, state_bytes(exp.model), "--checkpoints")
                print(f">>> training {setting}")
                exp.train(setting)
            print(f">>> testing {setting}")
            exp.test(setting)
    except (OSError, ValueError, FloatingPointError) as err:
        # bad input (missing files, wrong shapes, offline backbone, damaged checkpoint), a full disk, or a
        # diverged loss: the message says what to do; CROSSALIGN_TRACEBACK=1 shows where it came from
        if os.environ.get("CROSSALIGN_TRACEBACK"):
            raise
        return _error(err)
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
