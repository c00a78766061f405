"""Entry script of the frozen app: the same entry point as the `pmgui` console script."""

import sys

from pmgui.cli import main

if __name__ == "__main__":
    sys.exit(main())
