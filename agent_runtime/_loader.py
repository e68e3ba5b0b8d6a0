"""Load the user's app: an installed module (``pkg.agents``), a ``.py`` file
(``./agents.py``), a package directory (``./myagent/``, holding ``__init__.py``), or a
directory holding exactly one module or package.

A file or directory app is imported without touching ``sys.path``: its directory would
otherwise come first on the path for the rest of the server's life, and any file there
(``json.py``, ``uvloop.py``: agent code can write files) would shadow the standard library
and the runtime's own dependencies. Instead the app's own top-level modules, as they are
when the app loads, are found by a finder placed after every other one, for imports made by
the app's own code: the app can import its siblings, and nothing it ships or plants can
replace a module of the server or stand in for an optional one the server looks for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from ._errors import InvalidInput
from ._runtime import collect_workflows

_SKIPPED_FILES = {"setup.py", "conftest.py", "noxfile.py"}


def load_app(spec: str) -> ModuleType:
    """The app module named by ``spec``; ``InvalidInput`` (one line) when it cannot be
    loaded or defines no ``@workflow``."""
    if is_app_path(spec):
        try:
            module = _load_path(Path(spec))
        except OSError as exc:  # unreadable file or directory
            raise InvalidInput(f"cannot read app {spec}: {exc.strerror or exc}") from None
    else:
        module = _import(spec, lambda: importlib.import_module(spec))
    if not collect_workflows(module):
        raise InvalidInput(f"app {spec!r} defines no @workflow")
    return module


def is_app_path(spec: str) -> bool:
    """A path (``x.py``, anything with a ``/``, ``.``...) rather than a module name."""
    return spec.endswith(".py") or os.sep in spec or spec.startswith(".")


def app_candidates(directory: Path) -> list[Path]:
    """The modules a directory app may mean: its top-level ``.py`` files (not private,
    tests or build scripts) and its package subdirectories."""
    found = [
        p
        for p in directory.iterdir()
        if (p.suffix == ".py" and p.is_file() and p.name not in _SKIPPED_FILES) or _is_package(p)
    ]
    return sorted(p for p in found if not p.name.startswith(("_", ".", "test_")))


def _is_package(p: Path) -> bool:
    """A directory with an ``__init__.py``; False for one this process may not enter (a
    tenant's volume holds the supervisor's private directories next to the app)."""
    try:
        return p.is_dir() and (p / "__init__.py").is_file()
    except PermissionError:
        return False


def _load_path(path: Path) -> ModuleType:
    if not path.exists():
        raise InvalidInput(f"app path {path} does not exist")
    path = path.resolve()
    if path.is_dir() and not (path / "__init__.py").is_file():
        candidates = app_candidates(path)
        if len(candidates) != 1:
            names = ", ".join(p.name for p in candidates) or "none"
            raise InvalidInput(
                f"app directory {path} must hold exactly one module or package "
                f"(found: {names}); name the file instead"
            )
        root, target = path, candidates[0]
    elif path.is_dir() or path.suffix == ".py":
        root, target = path.parent, path
    else:
        raise InvalidInput(f"app path {path} is neither a .py file nor a directory")
    name = _free_name(target.name if target.is_dir() else target.stem)
    _install_finder(root)
    return _import(str(path), lambda: _exec_path(target, name))


def _exec_path(target: Path, name: str) -> ModuleType:
    package = target.is_dir()
    init = target / "__init__.py" if package else target
    locations = [str(target)] if package else None
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=locations)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"cannot load app {target}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _free_name(stem: str) -> str:
    """The app's module name: its own when that names nothing else (so its siblings can
    import it), otherwise a prefixed one that cannot replace an installed module."""
    if stem.isidentifier() and stem not in sys.modules:
        try:
            taken = importlib.util.find_spec(stem) is not None
        except (ImportError, ValueError):
            taken = True
        if not taken:
            return stem
    safe = "".join(c if c.isalnum() else "_" for c in stem)
    return f"agent_runtime_app_{safe}"


def _import(spec: str, load: Callable[[], ModuleType]) -> ModuleType:
    try:
        module = load()
    except InvalidInput:
        raise
    except ModuleNotFoundError as exc:
        raise InvalidInput(f"cannot import app module {spec!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # the app's own code failed while importing
        where = _first_line(exc)
        raise InvalidInput(
            f"app {spec!r} failed to import: {type(exc).__name__}: {where}"
        ) from None
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


class _AppFinder(importlib.abc.MetaPathFinder):
    """Finds the app's sibling top-level modules that existed when the app loaded, after
    every other finder has had its turn."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.names = {p.stem for p in root.glob("*.py")}
        self.names |= {p.name for p in root.iterdir() if _is_package(p)}

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if "." in fullname or fullname not in self.names or not self._asked_by_the_app():
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [self.root])

    def _asked_by_the_app(self) -> bool:
        """Whether the code importing (the first frame outside the import machinery) is a
        file of the app."""
        frame = sys._getframe(2)  # above find_spec
        while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            frame = frame.f_back  # type: ignore[assignment]
        return frame is not None and frame.f_code.co_filename.startswith(self.root + os.sep)


def _install_finder(root: Path) -> None:
    if not any(isinstance(f, _AppFinder) and f.root == str(root) for f in sys.meta_path):
        sys.meta_path.append(_AppFinder(root))
