"""An app whose import kills the process that loads it: the runtime dies at every start
(tests/test_self_healing.py: the restart bound)."""

import os
import signal

os.kill(os.getpid(), signal.SIGKILL)
