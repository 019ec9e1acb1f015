"""`python -m scripts.bench memory` on a small series: it writes the files, runs on the map and prints the table."""
from __future__ import annotations

import numpy as np
import pytest

from scripts.bench import memory


def test_written_series_is_the_npy_layout_the_readers_read(tmp_path):
    size = memory.write_series(str(tmp_path), 5000, 3, chunk=1024)
    train = np.load(tmp_path / f"{memory.PREFIX}_train.npy", mmap_mode="r")
    labels = np.load(tmp_path / f"{memory.PREFIX}_test_label.npy")
    assert train.shape == (5000, 3) and train.dtype == np.float32 and labels.shape == (5000,)
    assert np.isfinite(train).all() and set(np.unique(labels)) <= {0.0, 1.0}
    assert size == 2 * 5000 * 3 * 4 + 5000 * 4 + 3 * 128


@pytest.mark.slow  # a child process that imports torch: ~10-30 s
def test_small_run_prints_rss_beside_the_file_size(capsys):
    parser = __import__("argparse").ArgumentParser()
    memory.add_args(parser)
    args = parser.parse_args(["--points", "20000", "--channels", "4", "--steps", "3", "--mapped_min_bytes", "0"])
    assert memory.main(args) == 0
    out = capsys.readouterr().out
    assert "files on disk" in out and "peak RSS (VmHWM)" in out and "memory-mapped: True" in out
    assert "scoring 20,000 test points" in out and "finite: True" in out
