"""Old path of `utils.eval.thresholds`, kept as an alias for one release: import `utils.eval.thresholds` instead."""
import sys

from utils.eval import thresholds as _moved

sys.modules[__name__] = _moved
