"""``python -m parle_hpc.train`` = ``parle-train``."""

import sys

from ..cli import train_main

sys.exit(train_main())
