"""Old path of `utils.eval.plot`, kept as an alias for one release: import `utils.eval.plot` instead."""
import sys

from utils.eval import plot as _moved

sys.modules[__name__] = _moved
