"""The package layout, enforced: imports between the top-level folders only point downward.

    scripts (benchmarks) -> run.py -> exp/ -> models/ -> layers/ -> utils/
                                      exp/ -> data_provider/ -> utils/

`utils/` is a leaf: it imports nothing of the project above it. The graph is read from the source with
`ast` (every `import` and `from ... import`, also those inside functions).
"""
from __future__ import annotations

import ast
import os

from conftest import REPO

# a folder may import only folders of lower rank
RANK = {"utils": 0, "layers": 1, "data_provider": 1, "models": 2, "exp": 3, "run": 4, "scripts": 5}


def _top_level_imports(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(RANK)


def import_graph() -> dict[tuple[str, str], list[str]]:
    """(importer folder, imported folder) -> the files that make that edge."""
    edges: dict[tuple[str, str], list[str]] = {}
    for top in RANK:
        root = os.path.join(REPO, top if top != "run" else "run.py")
        files = [root] if root.endswith(".py") else [
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".py")]
        for path in files:
            for target in _top_level_imports(path) - {top}:
                edges.setdefault((top, target), []).append(os.path.relpath(path, REPO))
    return edges


def test_imports_point_downward():
    upward = {edge: files for edge, files in import_graph().items() if RANK[edge[1]] >= RANK[edge[0]]}
    assert not upward, "imports against the layering (importer -> imported: files): " + "; ".join(
        f"{a} -> {b}: {', '.join(sorted(fs))}" for (a, b), fs in sorted(upward.items()))


def test_utils_is_a_leaf():
    assert not {b for a, b in import_graph() if a == "utils"}


def test_old_evaluation_paths_are_aliases():
    import subprocess
    import sys

    import utils.eval.metrics
    import utils.eval.report
    import utils.evaluation
    import utils.metrics
    import utils.thresholds

    assert utils.metrics is utils.eval.metrics and utils.thresholds.pot_threshold
    assert utils.evaluation.evaluate_scores is utils.eval.report.evaluate_scores
    for module in ("utils.evaluate", "utils.tables", "utils.eval", "utils.eval.tables", "scripts.bench"):
        done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0 and "usage:" in done.stdout, (module, done.stderr)
