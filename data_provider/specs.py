"""The dataset tables: one row per dataset, for anomaly detection and for long-term forecasting.

These two tables are the single place that holds per-dataset facts and
defaults (files, reader, window or lookback, anomaly ratio, batch size,
epochs); `data_provider/defaults.py` applies them to the parsed flags.
Adding a dataset is one row here, plus a reader in `data_provider/readers.py`
if its file layout is new. The README documents both tables (README,
Anomaly detection > Datasets; Long-term forecasting > Datasets). Windows and
anomaly ratios are those of the paper's published scripts.
"""
from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass
from typing import Callable

from data_provider.readers import (Raw, read_custom, read_npy, read_psm, read_smd, read_swat, read_synthetic,
                                   read_tsbad, read_ucr)


# ---- anomaly detection -------------------------------------------------------------------------

@dataclass(frozen=True)
class AnomalySpec:
    """How to find and read one anomaly-detection dataset.

    reader: the function of `data_provider/readers.py` that reads its file layout,
        called as `reader(spec, root_path, args)` and returning raw `(train, test, labels)`.
    files: the files expected under `--root_path` (for error messages and the README).
    channels: the usual channel count (informational; the data decide).
    source: where a user obtains the files.
    """

    name: str
    reader: Callable[[AnomalySpec, str, Namespace], Raw]
    files: tuple[str, ...]
    channels: int | None
    win_size: int
    anomaly_ratio: float | None  # None: derived from the data (Synthetic)
    batch_size: int
    train_epochs: int
    source: str
    entity: str | None = None  # what --entity means for this dataset, or None if it takes none


def _npy(prefix: str) -> tuple[str, ...]:
    return (f"{prefix}_train.npy", f"{prefix}_test.npy", f"{prefix}_test_label.npy")


_TELEMANOM = ("NASA telemanom (Hundman et al., KDD 2018), concatenated per OmniAnomaly's preprocessing; "
              "the .npy files as distributed with Anomaly-Transformer/DCdetector")
_NIPS_TS = "NeurIPS-TS benchmark (Lai et al., NeurIPS 2021 Datasets), .npy files as distributed with DCdetector"

ANOMALY_SPECS: dict[str, AnomalySpec] = {s.name: s for s in (
    AnomalySpec("SMD", read_smd, _npy("SMD"), 38, 100, 0.3, 32, 3,
                "Server Machine Dataset (Su et al., KDD 2019), github.com/NetManAIOps/OmniAnomaly "
                "ServerMachineDataset/ (per machine: train/<e>.txt, test/<e>.txt, test_label/<e>.txt)",
                entity="machine id such as machine-1-2 (reads the ServerMachineDataset text files)"),
    AnomalySpec("MSL", read_npy, _npy("MSL"), 55, 100, 0.85, 32, 3, _TELEMANOM),
    AnomalySpec("SMAP", read_npy, _npy("SMAP"), 25, 105, 0.8, 32, 3, _TELEMANOM),
    AnomalySpec("PSM", read_psm, ("train.csv", "test.csv", "test_label.csv"), 25, 150, 2.0, 32, 3,
                "Pooled Server Metrics (Abdulaal et al., KDD 2021), github.com/eBay/RANSynCoders data/"),
    AnomalySpec("SWaT", read_swat, ("swat_train2.csv", "swat2.csv"), 51, 100, 0.5, 32, 3,
                "Secure Water Treatment (iTrust, SUTD; request access at itrust.sutd.edu.sg), "
                "CSV form as used by DCdetector"),
    AnomalySpec("NIPS_TS_Swan", read_npy, _npy("NIPS_TS_Swan"), 38, 100, 0.9, 32, 3, _NIPS_TS),
    AnomalySpec("NIPS_TS_Water", read_npy, _npy("NIPS_TS_Water"), 9, 100, 0.5, 32, 3, _NIPS_TS),
    AnomalySpec("UCR", read_ucr, ("<id>_UCR_Anomaly_<name>_<trainEnd>_<begin>_<end>.txt",), 1, 100, 1.0, 32, 3,
                "UCR Time Series Anomaly Archive (Wu & Keogh, KDD Cup 2021)",
                entity="the series id, the number before _UCR_Anomaly_ (e.g. 135)"),
    # TSB-AD: window 100 (TSB-AD's own is each series' period; 100 is its get_metrics default and ours);
    # anomaly ratio 1 % like UCR: TSB-AD itself is threshold-free, and a default cannot read the file
    AnomalySpec("TSB-AD", read_tsbad, ("[TSB-AD-U/|TSB-AD-M/]<id>_<name>_id_<k>_<domain>_tr_<trainEnd>_1st_<first>.csv",),
                None, 100, 1.0, 32, 3,
                "TSB-AD benchmark (Liu & Paparrizos, NeurIPS 2024), github.com/TheDatumOrg/TSB-AD Datasets/ "
                "(TSB-AD-U.zip, TSB-AD-M.zip)",
                entity="the file name, without .csv, or its numeric id prefix (e.g. 001)"),
    AnomalySpec("custom", read_custom, ("--train_file", "--test_file", "[--label_file]"), None, 100, 1.0, 32, 3,
                "your own CSV/NPY files"),
    AnomalySpec("Synthetic", read_synthetic, (), None, 100, None, 32, 3,
                "built-in seeded generator (data_provider/synthetic.py)"),
)}


def get_anomaly_spec(name: str) -> AnomalySpec:
    """Spec for `--data name` (case-insensitive); a clear error lists the known names."""
    for key, spec in ANOMALY_SPECS.items():
        if key.lower() == name.lower():
            return spec
    raise ValueError(f"unknown --data {name!r} for anomaly_detection; choose one of: {', '.join(ANOMALY_SPECS)}")


# ---- long-term forecasting ---------------------------------------------------------------------

_TSLIB = ("the Autoformer / Time-Series-Library dataset collection (github.com/thuml/Time-Series-Library, "
          "'Prepare Data': the all_datasets archive linked from its README)")


@dataclass(frozen=True)
class ForecastSpec:
    """How to find and split one forecasting dataset (all are read by `data_provider/forecast.py`).

    folder: default `--root_path` is ./dataset/<folder> (the TSLib archive's layout).
    file: default `--data_path` (None for custom, which must be given).
    split: `ett_hour`, `ett_minute` (12/4/4 months) or `ratio` (70/10/20).
    """

    name: str
    folder: str | None
    file: str | None
    split: str
    freq: str
    channels: int | None  # informational; the file decides
    batch_size: int
    train_epochs: int
    seq_len: int = 96
    aliases: tuple[str, ...] = ()
    source: str = _TSLIB


# batch sizes shrink with the number of variates (each variate is one token of the LLM)
FORECAST_SPECS: dict[str, ForecastSpec] = {s.name: s for s in (
    ForecastSpec("ETTh1", "ETT-small", "ETTh1.csv", "ett_hour", "h", 7, 32, 10),
    ForecastSpec("ETTh2", "ETT-small", "ETTh2.csv", "ett_hour", "h", 7, 32, 10),
    ForecastSpec("ETTm1", "ETT-small", "ETTm1.csv", "ett_minute", "t", 7, 32, 10),
    ForecastSpec("ETTm2", "ETT-small", "ETTm2.csv", "ett_minute", "t", 7, 32, 10),
    ForecastSpec("Weather", "weather", "weather.csv", "ratio", "10min", 21, 32, 10),
    ForecastSpec("ECL", "electricity", "electricity.csv", "ratio", "h", 321, 16, 10, aliases=("electricity",)),
    ForecastSpec("Traffic", "traffic", "traffic.csv", "ratio", "h", 862, 8, 10),
    ForecastSpec("Exchange", "exchange_rate", "exchange_rate.csv", "ratio", "d", 8, 32, 10,
                 aliases=("exchange_rate",)),
    ForecastSpec("ILI", "illness", "national_illness.csv", "ratio", "w", 7, 16, 10, seq_len=36,
                 aliases=("illness", "national_illness")),
    ForecastSpec("custom", None, None, "ratio", "h", None, 32, 10, source="your own CSV"),
)}


def get_forecast_spec(name: str) -> ForecastSpec:
    """Spec for `--data name` (case-insensitive, aliases accepted); a clear error lists the known names."""
    for spec in FORECAST_SPECS.values():
        if name.lower() in (n.lower() for n in (spec.name, *spec.aliases)):
            return spec
    raise ValueError(f"unknown --data {name!r} for long_term_forecast; choose one of: {', '.join(FORECAST_SPECS)} "
                     f"(any CSV with a date column: --data custom --root_path DIR --data_path FILE.csv)")
