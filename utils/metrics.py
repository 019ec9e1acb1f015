"""Old path of `utils.eval.metrics`, kept as an alias for one release: import `utils.eval.metrics` instead."""
import sys

from utils.eval import metrics as _moved

sys.modules[__name__] = _moved
