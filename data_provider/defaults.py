"""Fill per-dataset defaults into the parsed flags and reject meaningless combinations.

The defaults come from the tables in `data_provider/specs.py` (README,
Anomaly detection > Datasets; Long-term forecasting > Datasets); a flag given
on the command line wins. Every rejection raises ValueError with a message
naming the flag and the fix; run.py prints it and exits with status 2.
`validate_args` holds every check of a single flag's range, run before any
default is derived from it (so an error names the flag the user gave).
"""
from __future__ import annotations

import glob
import math
import os
from argparse import Namespace

from data_provider.readers import read_custom, read_synthetic, read_tsbad, read_ucr
from data_provider.specs import ANOMALY_SPECS, get_anomaly_spec, get_forecast_spec

_ANOMALY_ONLY = ("anomaly_ratio", "test_step", "entity", "train_file", "test_file", "label_column", "label_file")
_CUSTOM_ONLY = ("train_file", "test_file", "label_column", "label_file")
# integer flags and their least meaningful value (None = unset, which each flag documents)
_AT_LEAST = {1: ("batch_size", "train_epochs", "step", "patience", "itr", "threads", "d_model", "n_heads",
                 "e_layers", "d_ff", "top_k", "num_kernels", "pyod_window", "pyod_max_train", "vus_window",
                 "synthetic_length", "synthetic_channels", "pred_len", "moving_avg", "patch_len", "stride",
                 "llm_layers", "lora_r", "lora_alpha", "pmd_size", "pmd_rounds", "d_ssm", "ssm_layers", "d_state",
                 "d_conv", "expand", "log_every"),
             2: ("seq_len",), 0: ("num_workers", "gpu", "label_len", "score_batch_size", "threshold_sample")}
# float flags: (low, high, low inclusive, high inclusive, what the range means)
_RANGES = {"dropout": (0, 1, True, False, "a probability"), "lora_dropout": (0, 1, True, False, "a probability"),
           "learning_rate": (0, 1, False, True, "Adam's step size; typical 1e-4 to 1e-2"),
           "pot_level": (0, 1, False, False, "the quantile of the train scores where the POT tail starts"),
           "synthetic_anomaly_rate": (0, 0.5, False, True, "the fraction of test points inside anomalies"),
           "cons_weight": (0, math.inf, True, False, "a loss weight")}


def apply_defaults(args: Namespace) -> Namespace:
    """Return `args` with the dataset's defaults filled in, after checking the flags make sense together."""
    validate_args(args)
    if args.task_name == "anomaly_detection":
        _apply_anomaly(args)
    else:
        given = [f"--{k}" for k in _ANOMALY_ONLY if getattr(args, k) is not None and k != "entity"]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to --task_name anomaly_detection")
        _apply_forecast(args)
    if args.model_id is None:
        args.model_id = args.data + (f"_{args.entity}" if args.entity else "")
    return args


def _fill(args: Namespace, **defaults) -> None:
    """Set each flag in `defaults` that the user left unset (None); flags given on the command line win."""
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def _apply_anomaly(args: Namespace) -> None:
    spec = get_anomaly_spec(args.data)
    args.data = spec.name
    if spec.entity is None and args.entity is not None:
        takes = ", ".join(s.name for s in ANOMALY_SPECS.values() if s.entity is not None)
        raise ValueError(f"--entity is meaningless for --data {spec.name}; it applies to {takes}")
    if spec.reader in (read_ucr, read_tsbad) and args.entity is None:
        raise ValueError(f"--data {spec.name} needs --entity: {spec.entity}")
    custom_flags = [f"--{k}" for k in _CUSTOM_ONLY if getattr(args, k) is not None]
    if spec.reader is not read_custom and custom_flags:
        raise ValueError(f"{', '.join(custom_flags)} only apply to --data custom")
    if spec.reader is read_synthetic:
        if args.root_path is not None:
            raise ValueError("--data Synthetic is generated in memory; drop --root_path "
                             "(use --synthetic_length/--synthetic_channels/--synthetic_seed)")
    elif args.root_path is None:
        args.root_path = os.path.join(".", "dataset", spec.name)
    if spec.name == "SMD" and args.entity is None:
        _smd_machines_hint(args.root_path)

    # Synthetic: the anomaly ratio is the generator's anomaly rate, as a percentage
    ratio = spec.anomaly_ratio if spec.anomaly_ratio is not None else 100 * args.synthetic_anomaly_rate
    _fill(args, seq_len=spec.win_size, batch_size=spec.batch_size, train_epochs=spec.train_epochs,
          anomaly_ratio=ratio)
    if not 0 < args.anomaly_ratio <= 50:
        raise ValueError(f"--anomaly_ratio is a percentage in (0, 50], got {args.anomaly_ratio} "
                         f"(e.g. 0.85 for MSL means 0.85 %)")
    if args.seq_len < 2:
        raise ValueError(f"--seq_len must be >= 2, got {args.seq_len}")
    if args.test_step is None:
        args.test_step = args.seq_len
    if not 1 <= args.test_step <= args.seq_len:
        raise ValueError(f"--test_step must be in [1, --seq_len={args.seq_len}], got {args.test_step}")


def _apply_forecast(args: Namespace) -> None:
    """Defaults: seq_len from the table (96; ILI 36), label_len = seq_len // 2, root_path
    ./dataset/<folder>, data_path the table's file, batch size, epochs and freq from the table."""
    spec = get_forecast_spec(args.data)
    args.data = spec.name
    if args.entity is not None:
        raise ValueError("--entity is meaningless for long_term_forecast (it selects an SMD machine or a UCR "
                         "series); choose the file with --root_path/--data_path")
    if args.vus_window is not None:
        raise ValueError("--vus_window only applies to --task_name anomaly_detection")
    if spec.name == "custom" and (args.root_path is None or args.data_path is None):
        raise ValueError("--data custom needs --root_path DIR and --data_path FILE.csv (a 'date' column, "
                         "then the variables; the target column --target, default OT)")
    root = os.path.join(".", "dataset", spec.folder) if spec.folder else None
    _fill(args, root_path=root, data_path=spec.file, freq=spec.freq,
          seq_len=spec.seq_len, batch_size=spec.batch_size, train_epochs=spec.train_epochs)
    _fill(args, label_len=args.seq_len // 2)
    if args.pred_len < 1:
        raise ValueError(f"--pred_len must be >= 1, got {args.pred_len}")
    if not 0 <= args.label_len <= args.seq_len:
        raise ValueError(f"--label_len must be in [0, --seq_len={args.seq_len}] (the start token is the end "
                         f"of the lookback), got {args.label_len}")


def validate_args(args: Namespace) -> None:
    """Reject every flag whose value is out of its range, naming the flag, the range and the value."""
    for low, names in _AT_LEAST.items():
        for name in names:
            value = getattr(args, name, None)
            if value is not None and value < low:
                raise ValueError(f"--{name} must be >= {low}, got {value}")
    steps = getattr(args, "max_train_steps", None)
    if steps is not None and steps < 1:
        raise ValueError(f"--max_train_steps must be >= 1 (batches per epoch), got {steps}; omit it for full epochs")
    for name, (low, high, low_in, high_in, meaning) in _RANGES.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        inside = math.isfinite(value) and (low <= value if low_in else low < value) and \
            (value <= high if high_in else value < high)
        if not inside:
            span = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
            raise ValueError(f"--{name} must be a finite number in {span} ({meaning}), got {value}")
    risk, level = getattr(args, "pot_risk", None), getattr(args, "pot_level", None)
    if risk is not None and not (math.isfinite(risk) and 0 < risk < 1 - (level or 0)):
        raise ValueError(f"--pot_risk must be in (0, 1 - --pot_level) = (0, {1 - (level or 0):g}): the risk is the "
                         f"chance of exceeding the threshold, below the tail's {1 - (level or 0):g}; got {risk} "
                         f"(default 1e-3)")
    k = getattr(args, "k", None)
    if k is not None and not math.isfinite(k):
        raise ValueError(f"--k must be a finite number, got {k}")


def _smd_machines_hint(root: str) -> None:
    """SMD without --entity on a folder of per-machine files (the OmniAnomaly layout): say which machines."""
    machines = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(root, "train", "*.txt")))
    if machines and not os.path.isfile(os.path.join(root, "SMD_train.npy")):
        shown = ", ".join(machines[:10]) + (f", ... ({len(machines)} in all)" if len(machines) > 10 else "")
        raise ValueError(f"--data SMD: {root} holds per-machine files ({shown}) and no SMD_train.npy; choose a "
                         f"machine with --entity, e.g. python run.py --data SMD --root_path {root} "
                         f"--entity {machines[0]}")
