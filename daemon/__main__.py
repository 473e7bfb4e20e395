"""``python -m daemon`` is ``ticketd``."""

import sys

from daemon.cli import main

sys.exit(main())
