"""``python -m suite.cli``: the ``suite`` command without its installed script."""

import sys

from suite.cli.commands import main

sys.exit(main())
