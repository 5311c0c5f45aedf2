"""``python -m mitzo_client`` is the ``mitzo`` command."""

import sys

from .cli import main

sys.exit(main())
