"""Old path of the tables command, kept as an alias for one release: `python -m utils.eval.tables`."""
import sys

from utils.eval.tables import anomaly_table, forecast_table, load_summary, main, wide_table  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
