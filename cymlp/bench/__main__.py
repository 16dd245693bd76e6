"""``python -m cymlp.bench [options]`` is ``cymlp bench [options]``."""

import sys

from .command import main

sys.exit(main())
