"""Old path of the evaluate command, kept as an alias for one release: `python -m utils.eval`."""
import sys

from utils.eval.cli import build_parser, main, run  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
