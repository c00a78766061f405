"""`python -m pmgui` (the background engine of a window handing over is started this way)."""

import sys

from pmgui.cli import main

sys.exit(main())
