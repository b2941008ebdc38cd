"""``python -m novactl``."""

import sys

from novactl.cli import main

if __name__ == "__main__":
    sys.exit(main())
