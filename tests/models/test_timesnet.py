"""TimesNet (models/TimesNet.py): shapes, period discovery, defaults and flags, every weight trains, the instance
normalisation is undone, and a short Synthetic run that ranks anomalies."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

import run
from models.TimesNet import Model, top_periods
from test_pipeline import TINY, only_setting

pytestmark = pytest.mark.usefixtures("one_thread")


def make_args(*flags: str, C: int = 3, L: int = 24):
    args = run.build_parser().parse_args(["--d_model", "8", *flags])
    args.enc_in, args.seq_len = C, L
    return args


@pytest.mark.parametrize("L,C", [(24, 1), (37, 3), (100, 2)])
def test_shapes(L, C):
    torch.manual_seed(0)
    model = Model(make_args("--num_kernels", "2", "--e_layers", "1", C=C, L=L))
    assert model(torch.randn(3, L, C)).shape == (3, L, C)


def test_defaults_and_flags():
    model = Model(make_args())
    assert model.opts == {"d_model": 8, "d_ff": 8, "e_layers": 2, "top_k": 5, "num_kernels": 6}
    assert len(model.blocks) == 2 and len(model.blocks[0].conv[0].kernels) == 6
    args = make_args("--e_layers", "1", "--d_ff", "4", "--top_k", "2", "--num_kernels", "3")
    assert Model.setting_tags(args) == ["dm8", "df4", "el1", "k2", "nk3"]
    assert Model.setting_tags(make_args()) != Model.setting_tags(args)


def test_dominant_period_of_a_sine_is_found():
    t = torch.arange(96, dtype=torch.float32)
    h = torch.sin(2 * math.pi * t / 12)[None, :, None].repeat(2, 1, 4)  # period 12, [2, 96, 4]
    h = h + 0.3 * torch.sin(2 * math.pi * t / 32)[None, :, None]  # weaker period 32
    periods, weights = top_periods(h, 2)
    assert periods == [12, 32] and weights.shape == (2, 2)


def test_every_weight_receives_a_gradient():
    torch.manual_seed(0)
    model = Model(make_args("--num_kernels", "2"))
    x = torch.randn(4, 24, 3)
    torch.mean((model(x) - x) ** 2).backward()
    params = dict(model.named_parameters())
    assert params and all(p.requires_grad for p in params.values())
    missing = [n for n, p in params.items() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


def test_instance_normalisation_is_undone():
    """Eval mode: shifting and scaling a window per channel shifts and scales the reconstruction alike."""
    torch.manual_seed(0)
    model = Model(make_args("--num_kernels", "2")).eval()
    x = torch.randn(2, 24, 3)
    scale, shift = torch.tensor([2.0, 0.5, 3.0]), torch.tensor([10.0, -4.0, 0.0])
    torch.testing.assert_close(model(x * scale + shift), model(x) * scale + shift, atol=1e-3, rtol=1e-3)


def test_short_synthetic_run_ranks_anomalies(run_cli):
    """One epoch of 15 steps, d = 16 (TimesNet's other defaults). Measured AUC-ROC 0.68 (d = 32: 0.78;
    LinearAE on TINY: 0.62; chance 0.5)."""
    flags = list(TINY)
    flags[flags.index("LinearAE")] = "TimesNet"
    flags[flags.index("--d_model") + 1] = "16"
    flags[flags.index("--train_epochs") + 1] = "1"
    code, results = run_cli(*flags, "--threads", "1")
    assert code == 0
    folder = only_setting(results)
    assert "_dm16_df16_el2_k5_nk6_" in os.path.basename(folder)
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    assert payload["model"]["top_k"] == 5
    assert payload["metrics"]["threshold_free"]["auc_roc"] > 0.6, payload["metrics"]["threshold_free"]
