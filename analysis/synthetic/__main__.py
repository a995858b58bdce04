"""``python -m analysis.synthetic OUT_DIR [--preset demo|test] [--seed N] [--workers N]``."""

import sys

from analysis.synthetic.cohort import main

sys.exit(main())
