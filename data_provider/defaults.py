"""Fill per-dataset defaults into the parsed flags and reject meaningless combinations.

The defaults come from the tables in `data_provider/specs.py` (README,
Anomaly detection > Datasets; Long-term forecasting > Datasets); a flag given
on the command line wins. Every rejection raises ValueError with a message
naming the flag and the fix; run.py prints it and exits with status 2.
"""
from __future__ import annotations

import os
from argparse import Namespace

from data_provider.readers import read_custom, read_synthetic, read_tsbad, read_ucr
from data_provider.specs import ANOMALY_SPECS, get_anomaly_spec, get_forecast_spec

_ANOMALY_ONLY = ("anomaly_ratio", "test_step", "entity", "train_file", "test_file", "label_column", "label_file")
_CUSTOM_ONLY = ("train_file", "test_file", "label_column", "label_file")
_POSITIVE = ("batch_size", "train_epochs", "seq_len", "step", "patience", "itr", "moving_avg", "patch_len", "stride")


def apply_defaults(args: Namespace) -> Namespace:
    """Return `args` with the dataset's defaults filled in, after checking the flags make sense together."""
    if args.task_name == "anomaly_detection":
        _apply_anomaly(args)
    else:
        given = [f"--{k}" for k in _ANOMALY_ONLY if getattr(args, k) is not None and k != "entity"]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to --task_name anomaly_detection")
        _apply_forecast(args)
    _check_generic(args)
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


def _check_generic(args: Namespace) -> None:
    """Checks of flags that hold for every dataset and task."""
    for flag in _POSITIVE:
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be >= 1, got {value}")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning_rate must be > 0, got {args.learning_rate}")
