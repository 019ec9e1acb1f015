"""The paper's forecasting layout for a comparison: datasets x horizons + Avg rows, MSE/MAE per model.

Used by `python -m scripts.compare --task long_term_forecast`. The measured table holds only rows this
comparison ran; the paper's reported CrossAlign averages are a separate reference table (`REPORTED`),
labelled "reported", never mixed with the measured rows.
"""
from __future__ import annotations

import glob
import json
import math
import os

import numpy as np
import pandas as pd

# the paper's forecasting table, CrossAlign's averages over horizons 96-720 at lookback 96: (MSE, MAE)
REPORTED: dict[str, tuple[float, float]] = {
    "ETTm1": (0.314, 0.342), "ETTm2": (0.251, 0.303), "ETTh1": (0.376, 0.392), "ETTh2": (0.287, 0.334),
    "Weather": (0.211, 0.248), "ECL": (0.175, 0.268), "Traffic": (0.427, 0.290),
}


def _fmt(v: float, digits: int, best: bool) -> str:
    if not math.isfinite(v):
        return "—"
    text = f"{v:.{digits}f}"
    return f"**{text}**" if best else text


def forecast_layout(df: pd.DataFrame, methods: list[str], digits: int = 3) -> tuple[str, pd.DataFrame]:
    """(Markdown, long DataFrame) of the measured rows: one row per dataset and horizon, then `Avg` (the mean
    over that dataset's horizons, only when every method ran every horizon of it); each cell the mean over
    seeds; the lowest MSE and MAE of each row in bold.

    `df` needs columns data, pred_len, method, mse, mae (the comparison's merged summary).
    """
    for col in ("data", "pred_len", "method", "mse", "mae"):
        if col not in df.columns:
            raise ValueError(f"forecasting summary lacks column {col!r}")
    mean = df.groupby(["data", "pred_len", "method"])[["mse", "mae"]].mean()
    head = "| dataset | horizon | " + " | ".join(f"{m} MSE | {m} MAE" for m in methods) + " |"
    lines, rows = [head, "|---|---:|" + "---:|---:|" * len(methods)], []

    def emit(ds: str, horizon: str, values: dict[str, tuple[float, float]]) -> None:
        best = [min((v[i] for v in values.values() if math.isfinite(v[i])), default=math.nan) for i in (0, 1)]
        cells = [_fmt(values[m][i], digits, values[m][i] == best[i]) for m in methods for i in (0, 1)]
        label = f"**{horizon}**" if horizon == "Avg" else horizon
        lines.append(f"| {ds} | {label} | " + " | ".join(cells) + " |")
        rows.extend({"dataset": ds, "horizon": horizon, "method": m, "mse": values[m][0], "mae": values[m][1]}
                    for m in methods)

    for ds in dict.fromkeys(df["data"]):
        horizons = sorted(int(h) for h in df.loc[df["data"] == ds, "pred_len"].unique())
        per: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
        for h in horizons:
            values = {}
            for m in methods:
                key = (ds, h, m)
                values[m] = tuple(float(mean.loc[key, c]) for c in ("mse", "mae")) if key in mean.index \
                    else (math.nan, math.nan)
                per[m].append(values[m])
            emit(ds, str(h), values)
        if len(horizons) > 1:
            emit(ds, "Avg", {m: tuple(float(np.mean(c)) if all(map(math.isfinite, c)) else math.nan
                                      for c in zip(*per[m])) for m in methods})
    return "\n".join(lines) + "\n", pd.DataFrame(rows)


def reported_table(digits: int = 3) -> str:
    """The paper's reported CrossAlign averages, a reference table of their own (never measured here)."""
    lines = ["| dataset | horizon | CrossAlign (reported) MSE | CrossAlign (reported) MAE |", "|---|---:|---:|---:|"]
    lines += [f"| {ds} | Avg (96-720) | {mse:.{digits}f} | {mae:.{digits}f} |" for ds, (mse, mae) in REPORTED.items()]
    return "\n".join(lines) + "\n"


def epoch_seconds(out: str, keys: dict[str, tuple[str, str, int]]) -> pd.DataFrame:
    """Seconds of the first training epoch of each finished run (metrics.json), with its steps: columns
    method, data, pred_len, seconds, steps. `keys` maps a run folder name to (method, data, pred_len)."""
    rows = []
    for key, (method, data, pred_len) in keys.items():
        for path in glob.glob(os.path.join(out, "runs", key, "*", "metrics.json")):
            with open(path) as f:
                epochs = json.load(f).get("training", {}).get("epochs") or []
            if epochs:
                rows.append({"method": method, "data": data, "pred_len": pred_len,
                             "seconds": float(epochs[0]["seconds"]), "steps": int(epochs[0]["steps"])})
    return pd.DataFrame(rows, columns=["method", "data", "pred_len", "seconds", "steps"])


def markdown(df: pd.DataFrame, methods: list[str], caption: str, seconds: pd.DataFrame | None = None,
             digits: int = 3) -> tuple[str, pd.DataFrame]:
    """The whole forecasting report: measured table, caption, timing, then the reported reference table."""
    measured, long = forecast_layout(df, methods, digits)
    out = ["## Long-term forecasting (measured here; MSE / MAE on standardised test data, lower is better)", "",
           measured, caption, ""]
    if seconds is not None and len(seconds):
        t = seconds.groupby(["method", "data"], sort=False).agg(seconds=("seconds", "mean"), steps=("steps", "mean"))
        out += ["### Seconds of the first training epoch (mean over horizons)", "",
                "| model | dataset | seconds | steps | seconds / step |", "|---|---|---:|---:|---:|"]
        out += [f"| {m} | {d} | {r.seconds:.1f} | {r.steps:.0f} | {r.seconds / max(r.steps, 1):.3f} |"
                for (m, d), r in t.iterrows()]
        out.append("")
    out += ["## Reference: the paper's reported CrossAlign averages (not measured here)", "", reported_table(digits),
            "Reported at the paper's full budget and GPT-2 backbone; compare with the measured rows above only "
            "as a reference."]
    return "\n".join(out) + "\n", long
