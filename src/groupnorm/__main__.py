"""``python -m groupnorm``."""

import sys

from groupnorm.cli import main

sys.exit(main())
