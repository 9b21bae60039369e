"""``python -m pinnacle.simulate``: see :func:`pinnacle.simulate.main`."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
