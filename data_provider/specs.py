"""The anomaly-detection dataset table: one row per dataset, one reader per file layout.

This table is the single place that holds per-dataset defaults (window,
anomaly ratio, batch size, epochs); the README documents it. Windows and
anomaly ratios are those of the paper's published scripts (DESIGN section 2).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnomalySpec:
    """How to find and read one anomaly-detection dataset.

    layout: the reader in `data_provider/readers.py` (`npy`, `smd`, `psm`, `swat`, `ucr`, `custom`, `synthetic`).
    files: the files expected under `--root_path` (for error messages and the README).
    channels: the usual channel count (informational; the data decide).
    source: where a user obtains the files.
    """

    name: str
    layout: str
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
    AnomalySpec("SMD", "smd", _npy("SMD"), 38, 100, 0.3, 32, 3,
                "Server Machine Dataset (Su et al., KDD 2019), github.com/NetManAIOps/OmniAnomaly "
                "ServerMachineDataset/ (per machine: train/<e>.txt, test/<e>.txt, test_label/<e>.txt)",
                entity="machine id such as machine-1-2 (reads the ServerMachineDataset text files)"),
    AnomalySpec("MSL", "npy", _npy("MSL"), 55, 100, 0.85, 32, 3, _TELEMANOM),
    AnomalySpec("SMAP", "npy", _npy("SMAP"), 25, 105, 0.8, 32, 3, _TELEMANOM),
    AnomalySpec("PSM", "psm", ("train.csv", "test.csv", "test_label.csv"), 25, 150, 2.0, 32, 3,
                "Pooled Server Metrics (Abdulaal et al., KDD 2021), github.com/eBay/RANSynCoders data/"),
    AnomalySpec("SWaT", "swat", ("swat_train2.csv", "swat2.csv"), 51, 100, 0.5, 32, 3,
                "Secure Water Treatment (iTrust, SUTD; request access at itrust.sutd.edu.sg), "
                "CSV form as used by DCdetector"),
    AnomalySpec("NIPS_TS_Swan", "npy", _npy("NIPS_TS_Swan"), 38, 100, 0.9, 32, 3, _NIPS_TS),
    AnomalySpec("NIPS_TS_Water", "npy", _npy("NIPS_TS_Water"), 9, 100, 0.5, 32, 3, _NIPS_TS),
    AnomalySpec("UCR", "ucr", ("<id>_UCR_Anomaly_<name>_<trainEnd>_<begin>_<end>.txt",), 1, 100, 1.0, 32, 3,
                "UCR Time Series Anomaly Archive (Wu & Keogh, KDD Cup 2021)",
                entity="the series id, the number before _UCR_Anomaly_ (e.g. 135)"),
    AnomalySpec("custom", "custom", ("--train_file", "--test_file", "[--label_file]"), None, 100, 1.0, 32, 3,
                "your own CSV/NPY files"),
    AnomalySpec("Synthetic", "synthetic", (), None, 100, None, 32, 3,
                "built-in seeded generator (data_provider/synthetic.py)"),
)}


def get_anomaly_spec(name: str) -> AnomalySpec:
    """Spec for `--data name` (case-insensitive); a clear error lists the known names."""
    for key, spec in ANOMALY_SPECS.items():
        if key.lower() == name.lower():
            return spec
    raise ValueError(f"unknown --data {name!r} for anomaly_detection; choose one of: {', '.join(ANOMALY_SPECS)}")
