"""`python -m peftlab ...` (what `accelerate launch -m peftlab train ...` runs in every process)."""

import sys

from peftlab.cli import main

sys.exit(main())
