"""DCdetector (models/DCdetector.py): shapes, patch-size validation, the dual views, the contrastive loss,
and a short Synthetic run."""
from __future__ import annotations

import json
import math
import os
from argparse import Namespace

import numpy as np
import pytest
import torch

from models.DCdetector import Model, contrastive_terms, parse_patch_sizes, symmetric_kl
from test_pipeline import only_setting


def tiny(L: int = 20, C: int = 3, patch_size="2,5", **over) -> Model:
    args = dict(enc_in=C, seq_len=L, d_model=16, n_heads=2, dropout=0.0, e_layers=2, patch_size=patch_size)
    args.update(over)
    torch.manual_seed(0)
    return Model(Namespace(**args))


@pytest.mark.parametrize("L,C,ps", [(20, 1, "2,5"), (32, 3, "4,8"), (100, 5, None), (12, 2, "1,12")])
def test_shapes(L, C, ps, one_thread):
    model = tiny(L, C, ps)
    x = torch.randn(3, L, C)
    assert model(x).shape == (3, L, C)
    views = model.views(x)
    assert len(views) == 2 * len(model.patch_sizes)  # one (N, P) pair per patch size and layer
    for log_n, log_p in views:
        assert log_n.shape == log_p.shape == (3, 2, L, L)
        torch.testing.assert_close(log_n.exp().sum(-1), torch.ones(3, 2, L))  # rows are distributions
        torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(3, 2, L))
    total, task = model.loss(x)
    assert total.shape == () and total is task and torch.isfinite(total) and total > 0
    s = model.score(x)
    assert s.shape == (3, L) and torch.isfinite(s).all() and (s >= 0).all()


def test_patch_sizes_must_divide_the_window(run_cli, capsys):
    assert parse_patch_sizes(None, 100) == (5, 10) and parse_patch_sizes("3, 5", 105) == (3, 5)
    with pytest.raises(ValueError, match=r"patch size\(s\) 3 do not divide the window --seq_len 100.*--patch_size"):
        parse_patch_sizes("3,5", 100)
    with pytest.raises(ValueError, match="positive integers"):
        parse_patch_sizes("3;5", 100)
    with pytest.raises(ValueError, match="positive integers"):
        parse_patch_sizes("0", 100)
    with pytest.raises(ValueError, match="1, 2, 4, 8, 16, 32"):
        tiny(L=32, patch_size="5")
    # through run.py: a message, not a traceback
    code, _ = run_cli("--model", "DCdetector", "--data", "Synthetic", "--synthetic_length", "500",
                      "--seq_len", "32", "--patch_size", "3,5", "--train_epochs", "1")
    assert code == 2 and "do not divide the window --seq_len 32" in capsys.readouterr().err


def test_upsampling_puts_each_branch_where_it_belongs():
    """N_ij depends on the patches of i and j only, P_ij on their positions inside the patch only."""
    model = tiny(L=12, C=2, patch_size="3", e_layers=1)
    log_n, log_p = model.views(torch.randn(2, 12, 2))[0]
    n, p = log_n.exp(), log_p.exp()  # [2, H, 12, 12]; patch size 3, 4 patches
    patch = torch.arange(12) // 3
    pos = torch.arange(12) % 3
    for i in range(12):
        for j in range(12):
            same_block = (patch == patch[i])[:, None] & (patch == patch[j])[None, :]
            assert torch.allclose(n[..., same_block], n[..., i, j][..., None])  # constant on a patch block
            same_pos = (pos == pos[i])[:, None] & (pos == pos[j])[None, :]
            assert torch.allclose(p[..., same_pos], p[..., i, j][..., None])  # tiled over patch pairs


def test_channel_fusion_is_the_mean_of_the_maps():
    model = tiny(L=10, C=3, patch_size="5", e_layers=1)
    x = torch.randn(2, 10, 3)
    fused_n, _ = model.views(x)[0]
    per_channel = [model.views(x[..., c:c + 1])[0][0].exp() for c in range(3)]  # the same weights, one channel
    torch.testing.assert_close(fused_n.exp(), sum(per_channel) / 3)


def test_contrastive_loss_is_symmetric_positive_and_zero_on_agreement():
    rng = np.random.default_rng(0)
    a = torch.tensor(np.log(rng.dirichlet(np.ones(4), size=(1, 1, 4))), requires_grad=True)
    b = torch.tensor(np.log(rng.dirichlet(np.ones(4), size=(1, 1, 4))), requires_grad=True)
    ab, ba = contrastive_terms(a, b), contrastive_terms(b, a)
    torch.testing.assert_close(ab, ba)
    assert (ab > 0).all() and torch.allclose(contrastive_terms(a, a), torch.zeros(1, 1, 4, dtype=torch.float64), atol=1e-12)
    # value: twice the symmetric KL, by a direct numpy KL
    pa, pb = a.detach().exp().numpy(), b.detach().exp().numpy()
    direct = 2 * (np.sum(pa * np.log(pa / pb), -1) + np.sum(pb * np.log(pb / pa), -1))
    np.testing.assert_allclose(ab.detach().numpy(), direct, rtol=1e-10)
    torch.testing.assert_close(symmetric_kl(a, b) * 2, ab)
    # value 2·symmetric KL, but the gradient of ONE un-stopped symmetric KL (module docstring)
    g = torch.autograd.grad(ab.sum(), [a, b])
    want = torch.autograd.grad(symmetric_kl(a, b).sum(), [a, b])
    for got, w in zip(g, want):
        torch.testing.assert_close(got, w)


def test_tags_and_defaults():
    args = Namespace(seq_len=100, d_model=128, n_heads=8, e_layers=None, patch_size=None)
    assert Model.setting_tags(args) == ["dm128", "nh8", "el3", "ps5-10"]
    assert Model.setting_tags(Namespace(**{**vars(args), "patch_size": "2,4"}))[-1] == "ps2-4"
    assert math.isclose(sum(p.numel() for p in tiny().parameters()), sum(
        p.numel() for p in tiny().parameters() if p.requires_grad))


def test_short_synthetic_run_gives_finite_scores(run_cli):
    # default Synthetic data (8 channels, window 100), 18 steps of a small model, one thread
    code, results = run_cli("--model", "DCdetector", "--data", "Synthetic", "--train_epochs", "1", "--step", "8",
                            "--d_model", "16", "--n_heads", "1", "--e_layers", "2", "--learning_rate", "1e-4",
                            "--threads", "1")
    assert code == 0
    folder = only_setting(results)
    assert "_el2_ps5-10_" in os.path.basename(folder)
    scores = np.load(os.path.join(folder, "scores.npy"))
    assert scores.shape == (6000,) and np.isfinite(scores).all() and scores.std() > 0
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    assert np.isfinite(payload["training"]["epochs"][0]["val_loss"]) and payload["training"]["epochs"][0]["val_loss"] > 0
    # No AUC assertion: on this budget DCdetector does not beat chance reliably (measured AUC-ROC 0.521 at the
    # default seed, 0.419 and 0.449 at seeds 1 and 2); only that it trains and scores is asserted.
    assert 0.0 <= payload["metrics"]["threshold_free"]["auc_roc"] <= 1.0
