"""`python -m utils.eval`: evaluate saved scores (see `utils.eval.cli`)."""
import sys

from utils.eval.cli import main

sys.exit(main())
