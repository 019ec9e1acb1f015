"""USAD (models/USAD.py): shapes, the gradient routing of its single training scalar, the epoch counter under
the shared loop, and a short Synthetic run that ranks anomalies."""
from __future__ import annotations

import json
import os
from argparse import Namespace

import pytest
import torch

from models.USAD import Model
from test_pipeline import TINY, only_setting

pytestmark = pytest.mark.usefixtures("one_thread")


def make(L: int = 8, C: int = 2, z: int = 4) -> Model:
    torch.manual_seed(0)
    return Model(Namespace(seq_len=L, enc_in=C, d_model=z))


@pytest.mark.parametrize("L,C", [(8, 1), (16, 3), (100, 5)])
def test_shapes(L, C):
    model, x = make(L, C), torch.randn(4, L, C)
    assert model(x).shape == (4, L, C)
    assert model.score(x).shape == (4, L)
    total, task = model.loss(x)
    assert total.dim() == task.dim() == 0 and torch.isfinite(total)


def test_score_is_the_weighted_errors_of_both_autoencoders():
    model, x = make(), torch.randn(3, 8, 2)
    flat = x.reshape(3, -1)
    w1 = model.decoder1(model.encoder(flat))
    w3 = model.decoder2(model.encoder(w1))
    expected = 0.5 * ((w1.reshape(x.shape) - x) ** 2).mean(-1) + 0.5 * ((w3.reshape(x.shape) - x) ** 2).mean(-1)
    torch.testing.assert_close(model.score(x), expected)


@pytest.mark.parametrize("epoch", [1, 3])
def test_single_scalar_gives_each_part_the_gradient_of_its_phase(epoch):
    """D1 gets dL_AE1/dD1, D2 gets dL_AE2/dD2, the shared E gets dL_AE1/dE + dL_AE2/dE (the paper's two phases,
    at the same weights), checked against plain autograd of the paper's two losses."""
    model, x = make(), torch.randn(5, 8, 2)
    model.epoch = epoch
    E, D1, D2 = (list(m.parameters()) for m in (model.encoder, model.decoder1, model.decoder2))
    total, _ = model.loss(x)
    got = torch.autograd.grad(total, E + D1 + D2)
    got_E, got_D1, got_D2 = got[:len(E)], got[len(E):len(E) + len(D1)], got[len(E) + len(D1):]
    l1, l2 = model.phase_losses(x, epoch)
    g1 = torch.autograd.grad(l1, E + D1, retain_graph=True)
    g2 = torch.autograd.grad(l2, E + D2)
    for a, b in zip(got_D1, g1[len(E):]):
        torch.testing.assert_close(a, b)
    for a, b in zip(got_D2, g2[len(E):]):
        torch.testing.assert_close(a, b)
    for a, b1, b2 in zip(got_E, g1[:len(E)], g2[:len(E)]):
        torch.testing.assert_close(a, b1 + b2, atol=1e-6, rtol=1e-4)
    if epoch > 1:  # the routing matters: plain autograd of L_AE1 + L_AE2 would give D1 and D2 other gradients
        naive = torch.autograd.grad(sum(model.phase_losses(x, epoch)), D1 + D2)
        assert any(not torch.allclose(a, b) for a, b in zip(naive, [*got_D1, *got_D2]))


def test_epoch_counts_training_phases_separated_by_evaluation():
    model, x = make(), torch.randn(2, 8, 2)
    model.train()
    model.loss(x), model.loss(x)
    assert model.epoch == 1
    model.eval()
    model.loss(x)  # validation: no new epoch
    assert model.epoch == 1
    model.train()
    model.loss(x)
    assert model.epoch == 2
    model.eval(), model.train(), model.loss(x)
    assert model.epoch == 3


def test_short_synthetic_run_ranks_anomalies(run_cli):
    """3 epochs of 59 steps (latent 8): the adversarial epochs 2-3 run under the shared loop.

    Measured AUC-ROC 0.66 / 0.63 / 0.60 for seeds 2024 / 1 / 2 (LinearAE on TINY: 0.62; chance 0.5)."""
    flags = list(TINY)
    flags[flags.index("LinearAE")] = "USAD"
    flags[flags.index("--step") + 1] = "1"
    flags[flags.index("--d_model") + 1] = "8"
    flags[flags.index("--train_epochs") + 1] = "3"
    code, results = run_cli(*flags, "--lradj", "constant", "--threads", "1")
    assert code == 0
    folder = only_setting(results)
    assert "_z8_" in os.path.basename(folder)
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    assert len(payload["training"]["epochs"]) == 3
    assert payload["metrics"]["threshold_free"]["auc_roc"] > 0.55, payload["metrics"]["threshold_free"]
