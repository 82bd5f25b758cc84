"""``python -m gbs_core``: see :mod:`gbs_core.cli`."""

import sys

from gbs_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
