"""validate_args: every out-of-range flag is rejected before any default is derived, naming the flag."""
from __future__ import annotations

import pytest

from data_provider.defaults import apply_defaults, validate_args
from run import build_parser


def _args(*flags: str):
    return build_parser().parse_args(["--model", "LinearAE", *flags])


@pytest.mark.parametrize("flags,message", [
    (("--max_train_steps", "-5"), "--max_train_steps must be >= 1"),
    (("--max_train_steps", "0"), "omit it for full epochs"),
    (("--threads", "0"), "--threads must be >= 1"),
    (("--learning_rate", "inf"), "--learning_rate must be a finite number in (0, 1]"),
    (("--learning_rate", "nan"), "--learning_rate must be a finite number"),
    (("--learning_rate", "1e6"), "--learning_rate must be a finite number in (0, 1]"),
    (("--learning_rate", "0"), "--learning_rate must be"),
    (("--dropout", "1"), "--dropout must be a finite number in [0, 1)"),
    (("--dropout", "-0.1"), "--dropout must be"),
    (("--lora_dropout", "1.5"), "--lora_dropout must be"),
    (("--d_model", "0"), "--d_model must be >= 1"),
    (("--n_heads", "0"), "--n_heads must be >= 1"),
    (("--pot_level", "1.5"), "--pot_level must be a finite number in (0, 1)"),
    (("--pot_level", "0"), "--pot_level must be"),
    (("--pot_risk", "0"), "--pot_risk must be in (0, 1 - --pot_level)"),
    (("--pot_risk", "0.05"), "--pot_risk must be in (0, 1 - --pot_level) = (0, 0.02)"),
    (("--synthetic_anomaly_rate", "0"), "--synthetic_anomaly_rate must be a finite number in (0, 0.5]"),
    (("--synthetic_anomaly_rate", "0.9"), "--synthetic_anomaly_rate must be"),
    (("--num_workers", "-1"), "--num_workers must be >= 0"),
    (("--vus_window", "0"), "--vus_window must be >= 1"),
    (("--cons_weight", "inf"), "--cons_weight must be"),
    (("--batch_size", "0"), "--batch_size must be >= 1"),
])
def test_out_of_range_flags_name_themselves(flags, message):
    with pytest.raises(ValueError) as err:
        apply_defaults(_args(*flags))
    assert message in str(err.value)


def test_defaults_and_sensible_values_pass():
    validate_args(_args("--learning_rate", "1e-3", "--dropout", "0", "--pot_risk", "0.01", "--max_train_steps", "5"))
    validate_args(build_parser().parse_args([]))


def test_smd_without_entity_on_per_machine_files_lists_them(tmp_path):
    for part in ("train", "test", "test_label"):
        (tmp_path / part).mkdir()
        for machine in ("machine-1-1", "machine-2-3"):
            (tmp_path / part / f"{machine}.txt").write_text("0,0\n")
    with pytest.raises(ValueError) as err:
        apply_defaults(_args("--data", "SMD", "--root_path", str(tmp_path)))
    text = str(err.value)
    assert "machine-1-1, machine-2-3" in text
    assert f"python run.py --data SMD --root_path {tmp_path} --entity machine-1-1" in text
