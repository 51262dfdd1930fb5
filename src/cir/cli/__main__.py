"""`python -m cir.cli`: the command line."""

import sys

from cir.cli import main

sys.exit(main())
