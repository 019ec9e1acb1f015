"""USAD: an autoencoder pair trained adversarially over the flattened window.

Audibert, Michiardi, Guyard, Marti & Zuluaga, "USAD: UnSupervised Anomaly
Detection on Multivariate Time Series", KDD 2020. Written here from the paper.

One encoder ``E`` and two decoders ``D1``, ``D2`` share the latent space;
``AE1 = D1∘E`` and ``AE2 = D2∘E``. On a window ``W`` (flattened, ``N = L*C``)::

    w1 = D1(E(W))      w2 = D2(E(W))      w3 = D2(E(w1))          all [B, N]
    L_AE1 = 1/n ||W - w1||² + (1 - 1/n) ||W - w3||²     minimised by E, D1
    L_AE2 = 1/n ||W - w2||² - (1 - 1/n) ||W - w3||²     minimised by E, D2

``n`` is the epoch (1, 2, ...): the first epoch is plain reconstruction, later
ones weigh the adversarial game more (AE1 learns to fool AE2, AE2 to tell
``w1`` from ``W``). Anomaly score of a point (the paper's balanced setting)::

    score = alpha ||W - w1||² + beta ||W - w3||²,   alpha = beta = 0.5

with the squared error averaged over the channels of the point, ``[B, L]``.
``forward`` returns AE1's reconstruction ``w1`` ``[B, L, C]``.

**One scalar for one optimiser.** The paper alternates two optimisers per
batch (AE1's parameters on ``L_AE1``, then AE2's on ``L_AE2``). The shared
loop has one Adam over every trainable parameter and one ``loss(x)`` per
step, so ``loss`` returns ``L_AE1' + L_AE2'`` in which each decoder only
sees the loss of its own autoencoder:

- in ``L_AE1'``, ``D2`` is applied with its parameters detached (a constant
  function: gradients still flow *through* it to ``E`` and ``D1``, none reach
  ``D2``'s weights);
- in ``L_AE2'``, ``w1`` is recomputed with ``D1``'s parameters detached
  (gradients flow through ``D1`` to ``E``, none reach ``D1``'s weights).

So ``D1`` receives ∂L_AE1/∂D1, ``D2`` receives ∂L_AE2/∂D2 and the shared ``E``
∂L_AE1/∂E + ∂L_AE2/∂E (its two adversarial terms cancel: ``E`` in effect
trains on 1/n (||W-w1||² + ||W-w2||²)), exactly the gradients of the paper's
two phases taken at the same weights (``tests/models/test_usad.py`` checks this
with ``torch.autograd.grad``). What differs from the paper: both phases use
the same weights within a step (simultaneous rather than alternating updates),
and ``E`` has one Adam state instead of one per optimiser. The reported task
loss (validation, early stopping) is the mean anomaly score.

**The epoch ``n``.** The loop does not pass the epoch. The shared loop puts
the model in train mode at the start of every epoch and in eval mode for
validation after it; ``n`` therefore counts the training phases: it starts at
1 and is incremented at the first training call of ``loss`` after the model
has been in eval mode. Under the shared loop that is exactly the epoch number
(``--max_train_steps`` does not change it). A caller that never switches to
eval mode (``scripts/bench``) stays at ``n = 1``. ``n`` is a plain attribute,
not in the checkpoint (scoring does not use it).

Choices where the paper is silent or differs from this bench: the layer widths
halve, ``N → N/2 → N/4 → z`` (ReLU between; decoders mirror), with the latent
size ``z = --d_model`` (run.py's common flag, default 128); the decoders end
linearly, without the sigmoid the paper pairs with min-max scaled inputs,
because this bench standardises every channel (values outside [0, 1]).
"""
from __future__ import annotations

from argparse import Namespace

import torch
from torch import nn
from torch.func import functional_call

ALPHA, BETA = 0.5, 0.5  # score weights of AE1's and AE2's reconstruction errors (the paper's balanced setting)


def _mlp(widths: list[int], final_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _frozen(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`module(x)` with the module's parameters detached: gradients reach `x`, not the weights."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, (x,))


class Model(nn.Module):
    def __init__(self, args: Namespace):
        super().__init__()
        self.seq_len, self.channels = args.seq_len, args.enc_in
        n = args.seq_len * args.enc_in  # N = L*C, the flattened window
        z = args.d_model  # latent size
        widths = [n, max(1, n // 2), max(1, n // 4), z]
        self.encoder = _mlp(widths, final_activation=True)  # E: [B, N] -> [B, z]
        self.decoder1 = _mlp(widths[::-1], final_activation=False)  # D1: [B, z] -> [B, N]
        self.decoder2 = _mlp(widths[::-1], final_activation=False)  # D2: [B, z] -> [B, N]
        self.epoch = 1  # n of the paper; see the module docstring
        self._train_calls = 0
        self._left_training = False

    @staticmethod
    def setting_tags(args) -> list[str]:
        return [f"z{args.d_model}"]

    def train(self, mode: bool = True) -> "Model":
        if not mode and self._train_calls:
            self._left_training = True  # validation after a training phase: the next phase is a new epoch
        return super().train(mode)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)  # [B, L, C] -> [B, N]

    def _point_error(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Squared error of a flat reconstruction `w` [B, N] against `x` [B, L, C], mean over channels: [B, L]."""
        return ((w.reshape(x.shape) - x) ** 2).mean(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w1 = self.decoder1(self.encoder(self._flat(x)))  # [B, N]
        return w1.reshape(x.shape)  # [B, L, C]

    def score(self, x: torch.Tensor) -> torch.Tensor:
        w1 = self.decoder1(self.encoder(self._flat(x)))  # [B, N]
        w3 = self.decoder2(self.encoder(w1))  # [B, N]
        return ALPHA * self._point_error(w1, x) + BETA * self._point_error(w3, x)  # [B, L]

    def phase_losses(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's (L_AE1, L_AE2) at epoch `n`, with plain autograd everywhere (no routing)."""
        W = self._flat(x)
        z = self.encoder(W)
        w1, w2 = self.decoder1(z), self.decoder2(z)
        w3 = self.decoder2(self.encoder(w1))
        e1, e2, e3 = (torch.mean((W - w) ** 2) for w in (w1, w2, w3))
        return e1 / n + (1 - 1 / n) * e3, e2 / n - (1 - 1 / n) * e3

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            if self._left_training:
                self.epoch += 1
                self._left_training = False
            self._train_calls += 1
        n = self.epoch
        W = self._flat(x)  # [B, N]
        z = self.encoder(W)  # [B, z]
        w1 = self.decoder1(z)  # [B, N], D1 live: AE1's reconstruction
        w2 = self.decoder2(z)  # [B, N], D2 live: AE2's reconstruction
        w3_ae1 = _frozen(self.decoder2, self.encoder(w1))  # D2(E(w1)) for L_AE1: no gradient to D2
        w1_ae2 = _frozen(self.decoder1, z)  # D1(E(W)) for L_AE2: no gradient to D1
        w3_ae2 = self.decoder2(self.encoder(w1_ae2))  # D2(E(w1)) for L_AE2
        e1, e2 = torch.mean((W - w1) ** 2), torch.mean((W - w2) ** 2)
        loss_ae1 = e1 / n + (1 - 1 / n) * torch.mean((W - w3_ae1) ** 2)
        loss_ae2 = e2 / n - (1 - 1 / n) * torch.mean((W - w3_ae2) ** 2)
        with torch.no_grad():
            task = torch.mean(ALPHA * self._point_error(w1, x) + BETA * self._point_error(w3_ae1, x))
        return loss_ae1 + loss_ae2, task

    def describe(self) -> dict:
        return {"architecture": "USAD: encoder + two decoders over the flattened window, adversarial training "
                                "(Audibert et al., KDD 2020)",
                "latent": self.encoder[-2].out_features, "d_model": self.encoder[-2].out_features, "score": f"{ALPHA}*|x-AE1(x)|^2 + {BETA}*|x-AE2(AE1(x))|^2",
                "epoch_weight": "1/n, n = training phases seen (the epoch under the shared loop)"}
