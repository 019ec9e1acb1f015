"""Model registry. Every model is one file in `models/` defining `class Model(nn.Module)`.

Contract (shared by the anomaly and forecasting experiments):

- `Model(args)`: `args` is the parsed run.py namespace, finalised by
  `data_provider.defaults.apply_defaults`; `args.enc_in` is the channel
  count `C` taken from the data, `args.seq_len` the window `L`,
  `args.pred_len` the horizon.
- `forward(x)`: `x` is `[B, L, C]`; returns the output (`[B, L, C]` for
  anomaly detection, `[B, pred_len, C_out]` for forecasting) or a tuple
  `(output, aux_loss)` where `aux_loss` is a scalar tensor already weighted
  (added to the main loss by the training loop).
- optional `describe() -> dict`: provenance recorded in metrics.json
  (backbone, pretrained weights or not, where they came from).
- optional class attribute `needs_training = False` for models with nothing
  to fit (the Random baseline).

Registering a model = one line in `MODELS` below.
"""
from __future__ import annotations

import importlib

MODELS: dict[str, str] = {
    "CrossAlign": "models.CrossAlign",
    "LinearAE": "models.LinearAE",
    "Random": "models.Random",
    "RepeatLast": "models.RepeatLast",
}


def get_model_class(name: str) -> type:
    """Return the `Model` class registered under `name` (imported lazily)."""
    if name not in MODELS:
        raise ValueError(f"unknown --model {name!r}; registered models: {', '.join(sorted(MODELS))}")
    return importlib.import_module(MODELS[name]).Model
