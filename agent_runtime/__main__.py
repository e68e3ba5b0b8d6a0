"""``python3 -I -m agent_runtime serve ...``: the CLI without a console script (isolated
mode: neither the working directory nor PYTHON* variables reach the import path)."""

import sys

from ._cli import main

sys.exit(main())
