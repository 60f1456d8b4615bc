"""``python -m sb3_trpo train|enjoy``: see ``sb3_trpo.zoo.cli``."""

import sys

from sb3_trpo.zoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
