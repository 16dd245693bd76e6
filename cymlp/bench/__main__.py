"""``python -m cymlp.bench [options]`` is ``cymlp bench [options]``."""

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
