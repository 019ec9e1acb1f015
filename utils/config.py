"""Fill per-dataset defaults into the parsed flags and reject meaningless combinations.

Every rejection raises ValueError with a message naming the flag and the fix;
run.py prints it and exits with status 2.
"""
from __future__ import annotations

import os
from argparse import Namespace

from data_provider.specs import get_anomaly_spec

_ANOMALY_ONLY = ("anomaly_ratio", "test_step", "entity", "train_file", "test_file", "label_column", "label_file")


def fill_missing(args: Namespace, **defaults) -> None:
    """Set each flag in `defaults` that the user left unset (None); flags given on the command line win."""
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def finalize_args(args: Namespace) -> Namespace:
    """Return `args` with dataset defaults filled in, after checking the flags make sense together."""
    if args.task_name == "anomaly_detection":
        _finalize_anomaly(args)
    else:
        given = [f"--{k}" for k in _ANOMALY_ONLY if getattr(args, k) is not None and k != "entity"]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to --task_name anomaly_detection")
        from data_provider.forecast import finalize_forecast_args
        finalize_forecast_args(args)
    for flag in ("batch_size", "train_epochs", "seq_len", "step", "patience", "itr"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be >= 1, got {value}")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning_rate must be > 0, got {args.learning_rate}")
    if args.model_id is None:
        args.model_id = args.data + (f"_{args.entity}" if args.entity else "")
    return args


def _finalize_anomaly(args: Namespace) -> None:
    spec = get_anomaly_spec(args.data)
    args.data = spec.name
    if spec.entity is None and args.entity is not None:
        raise ValueError(f"--entity is meaningless for --data {spec.name}; it applies to SMD and UCR")
    if spec.layout == "ucr" and args.entity is None:
        raise ValueError(f"--data UCR needs --entity: {spec.entity}")
    custom_flags = [f"--{k}" for k in ("train_file", "test_file", "label_column", "label_file")
                    if getattr(args, k) is not None]
    if spec.layout != "custom" and custom_flags:
        raise ValueError(f"{', '.join(custom_flags)} only apply to --data custom")
    if spec.layout == "synthetic":
        if args.root_path is not None:
            raise ValueError("--data Synthetic is generated in memory; drop --root_path "
                             "(use --synthetic_length/--synthetic_channels/--synthetic_seed)")
    elif args.root_path is None:
        args.root_path = os.path.join(".", "dataset", spec.name)

    # Synthetic: the anomaly ratio is the generator's anomaly rate, as a percentage
    ratio = spec.anomaly_ratio if spec.anomaly_ratio is not None else 100 * args.synthetic_anomaly_rate
    fill_missing(args, seq_len=spec.win_size, batch_size=spec.batch_size, train_epochs=spec.train_epochs,
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
