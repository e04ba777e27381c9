"""`python -m pyhvm.devproc --control-fd N`: a device process (started by pyhvm itself)."""

import sys

from .server import main

sys.exit(main())
