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
- optional class attribute `needs_training = False` for models with no
  gradient training (the Random baseline, classical detectors).

Optional hooks, through which a model changes what the shared loop does
(`exp/` never names a model):

- `setting_tags(args) -> list[str]` (a staticmethod or classmethod): the
  model's options that must appear in the run's setting name (so runs that
  differ in them never share a folder), e.g. CrossAlign's backbone and
  ablation flags.
- `loss(x) -> (total, task)`: its own training objective on windows
  `x` `[B, L, C]` (default: MSE of the reconstruction + `aux_loss`); `task`
  is what validation and early stopping read.
- `score(x) -> [B, L]`: its own per-point anomaly score of each window
  (default: mean over channels of the squared reconstruction error).
- `score_series(series) -> [N]`: scores a whole split `[N, C]` (numpy) at
  once, one score per point, instead of window by window (classical
  detectors whose features need each point's history).
- `fit(train)`: called once before gradient training with the standardised
  training split `[N, C]` (numpy); with `needs_training = False` it is the
  whole training. Its result is not in the checkpoint: a test-only run
  (`--is_training 0`) calls `fit` again (seeded, so the same model).

Registering a model = one line in `MODELS` below.
"""
from __future__ import annotations

import importlib

MODELS: dict[str, str] = {
    "CrossAlign": "models.CrossAlign",
    "LinearAE": "models.LinearAE",
    "Random": "models.Random",
    "RepeatLast": "models.RepeatLast",
    # rivals on the same bench (README, Rivals)
    "PyOD": "models.PyOD",
    "AnomalyTransformer": "models.AnomalyTransformer",
    "DCdetector": "models.DCdetector",
    "USAD": "models.USAD",
    "TimesNet": "models.TimesNet",
    "GPT4TS": "models.GPT4TS",
}


def get_model_class(name: str) -> type:
    """Return the `Model` class registered under `name` (imported lazily)."""
    if name not in MODELS:
        raise ValueError(f"unknown --model {name!r}; registered models: {', '.join(sorted(MODELS))}")
    return importlib.import_module(MODELS[name]).Model
