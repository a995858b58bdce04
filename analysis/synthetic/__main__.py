"""``python -m analysis.synthetic OUT_DIR [--preset demo|test] [--seed N] [--workers N]``;
``python -m analysis.synthetic large OUT_DIR [--seed N] [--rows Y0 Y1]`` for the Camelyon-size slide."""

import sys

from analysis.synthetic.cohort import main
from analysis.synthetic.large import main as large_main

sys.exit(large_main(sys.argv[2:]) if sys.argv[1:2] == ["large"] else main())
