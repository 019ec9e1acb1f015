"""Evaluation of anomaly scores (README, Evaluation): everything below imports only numpy, pandas,
scipy, matplotlib and `utils.io`.

- `metrics`: vectorised metrics on one score per point (point-wise, PA, PA%K, affiliation, AUCs,
  range-AUC/VUS in the three published conventions, the paper's published protocol);
- `thresholds`: percentile, POT and SPOT thresholds;
- `columns`: the thresholds and report metrics, declared once;
- `report`: `evaluate_scores` (the full report of one run) and its summary row;
- `render`: the console table and report.md; `plot`: scores.png;
- `tables`: paper-style tables from results/summary.csv (`python -m utils.eval.tables`);
- `cli`: the evaluate command (`python -m utils.eval`).
"""
