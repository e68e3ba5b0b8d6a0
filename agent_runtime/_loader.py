"""Load the user's app: a module name (``pkg.agents``) or a file path (``./agents.py``)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

from ._errors import InvalidInput
from ._runtime import collect_workflows


def load_app(spec: str) -> ModuleType:
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise InvalidInput(f"app file {spec} does not exist")
        name = "agent_runtime_app_" + os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise InvalidInput(f"cannot load app file {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        sys.path.insert(0, os.path.dirname(path))
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            raise InvalidInput(f"cannot import app module {spec!r}: {exc}") from None
    if not collect_workflows(module):
        raise InvalidInput(f"app {spec!r} defines no @workflow")
    return module
