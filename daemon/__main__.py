"""``python -m ticketd.daemon`` is ``ticketd``."""

import sys

from ticketd.daemon.cli import main

sys.exit(main())
