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

Registering a model = one line in `MODELS` below. Its default hyperparameters, when they differ from
run.py's, are one row of `MODEL_DEFAULTS` (per task): run.py applies the row before parsing (as it does a
`--preset`), so `--model X` alone gives them and any flag given on the command line wins.
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
    # forecasting rivals (README, Long-term forecasting > Rivals)
    "DLinear": "models.DLinear",
    "PatchTST": "models.PatchTST",
    "iTransformer": "models.iTransformer",
}

# The Time-Series-Library's settings at lookback 96 (github.com/thuml/Time-Series-Library,
# scripts/long_term_forecast/ETT_script/<Model>_ETTh1.sh at horizon 96, over its run.py defaults: Adam at
# learning rate 1e-4, dropout 0.1, batch 32, 10 epochs, patience 3, halving schedule: run.py's own
# defaults here). GPT4TS is not in those scripts: its row is the paper's (Zhou et al., NeurIPS 2023:
# patches of 16 with stride 8, 6 GPT-2 blocks). The TSLib scripts retune a few per dataset and horizon
# (PatchTST's n_heads 2/8/16, iTransformer's width 128-512); one row per model is kept here, and those
# flags still override it.
MODEL_DEFAULTS: dict[str, dict[str, dict]] = {
    "DLinear": {"long_term_forecast": {"moving_avg": 25}},
    "PatchTST": {"long_term_forecast": {"d_model": 512, "d_ff": 2048, "e_layers": 1, "n_heads": 2,
                                        "patch_len": 16, "stride": 8}},
    "iTransformer": {"long_term_forecast": {"d_model": 128, "d_ff": 128, "e_layers": 2, "n_heads": 8}},
    "GPT4TS": {"long_term_forecast": {"patch_len": 16, "stride": 8, "llm_layers": 6}},
}


def model_defaults(name: str, task: str) -> dict:
    """The `MODEL_DEFAULTS` row of model `name` for `task` (empty when the model takes run.py's defaults)."""
    return dict(MODEL_DEFAULTS.get(name, {}).get(task, {}))


def model_option(args, model: str, name: str):
    """Flag `name` of `args`, or the model's `MODEL_DEFAULTS` value when the flag is unset (None), as in
    a namespace built without run.parse_args; a clear error when neither gives one."""
    value = getattr(args, name, None)
    if value is None:
        value = model_defaults(model, getattr(args, "task_name", "long_term_forecast")).get(name)
    if value is None:
        raise ValueError(f"--model {model} needs --{name}")
    return value


def get_model_class(name: str) -> type:
    """Return the `Model` class registered under `name` (imported lazily)."""
    if name not in MODELS:
        raise ValueError(f"unknown --model {name!r}; registered models: {', '.join(sorted(MODELS))}")
    return importlib.import_module(MODELS[name]).Model
