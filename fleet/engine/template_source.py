"""A template's source on this machine: the user's files, their requirements, the module the
runtime loads, and the version (a hash of all of it and of what it is built on).

The directory is the user's and is not trusted. It is read without following any link
(every open is ``O_NOFOLLOW`` relative to its parent's descriptor, so nothing can be swapped
for a link between a check and a read): a symbolic link, a device or a FIFO is refused with
one line naming it, so a template cannot carry a file from outside its directory. Names
become tar members below ``app/`` and never touch this machine's file system again. Hidden
entries (``.git``, ``.venv``, ``.env``) and byte code are left out. Requirements are
requirement specifiers only: pip options (``-r``, ``-e``, ``--index-url``), paths and URLs
would make the host read local files or build local code, so they are refused. Nothing here
imports or runs the user's code: that happens inside the built image, in a sandbox.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fleet.core import names
from fleet.core.errors import InvalidArgument

MAX_FILES = 5000
MAX_BYTES = 64 << 20  # the code of an agent, not its data
MAX_DEPTH = 32
REQUIREMENTS = "requirements.txt"
PYPROJECT = "pyproject.toml"
_SKIPPED = {"__pycache__", "node_modules"}
_EPOCH = 1700000000  # fixed mtimes: the same files give the same image layer
_NAME_CHARS = re.compile(r"[^a-z0-9]+")
_COMMENT = re.compile(r"(^|\s)#.*$")


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative, '/'-separated
    executable: bool
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class TemplateSource:
    files: tuple[SourceFile, ...]
    requirements: tuple[str, ...]  # normalised specifiers
    target: str  # the file or package directory the runtime loads, relative to app/

    @property
    def app(self) -> str:
        """The app's module name ("agents")."""
        return self.target.removesuffix(".py")

    @property
    def app_path(self) -> str:
        return f"{names.TEMPLATE_APP_DIR}/{self.target}"

    def version(self, base_id: str, recipe: Iterable[tuple[str, bytes]]) -> str:
        """12 hex digits of a SHA-256 over the base image, the build recipe, the target,
        the requirements and every file (name, mode, bytes), each length-prefixed."""
        h = hashlib.sha256()

        def put(chunk: bytes) -> None:
            h.update(len(chunk).to_bytes(8, "big"))
            h.update(chunk)

        put(base_id.encode())
        for name, data in recipe:
            put(name.encode())
            put(data)
        put(self.target.encode())
        put("\n".join(self.requirements).encode())
        for f in self.files:
            put(f.path.encode())
            put(b"x" if f.executable else b"-")
            put(f.data)
        return h.hexdigest()[:12]

    def context(self, recipe: Iterable[tuple[str, bytes]], wheels: Iterable[Path]) -> bytes:
        """The build context: the recipe (Dockerfile, install.sh), requirements.txt, the
        wheels, and app/ with the user's files; a tar in memory."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in recipe:
                _add(tar, name, data, 0o644)
            _add(tar, REQUIREMENTS, "".join(r + "\n" for r in self.requirements).encode(), 0o644)
            _add_dir(tar, "wheels")
            for wheel in sorted(wheels):
                _add(tar, f"wheels/{wheel.name}", wheel.read_bytes(), 0o644)
            _add_dir(tar, "app")
            for f in self.files:
                _add(tar, f"app/{f.path}", f.data, 0o755 if f.executable else 0o644)
        return buf.getvalue()


def read_source(path: Path, app: str | None = None) -> TemplateSource:
    """A template from a directory (its files, requirements.txt / pyproject.toml, the module
    named by ``app`` or its one candidate) or from a single ``.py`` file (no dependencies)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISREG(st.st_mode) and path.suffix == ".py":
        if app is not None:
            raise InvalidArgument("--app names a module of a directory, not of a single file")
        data = _read_file(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), path, MAX_BYTES)
        return TemplateSource((SourceFile(path.name, False, data),), (), path.name)
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(
            f"{path} is neither a directory nor a .py file", "a template is a directory of code"
        )
    files = _read_tree(path)
    return TemplateSource(files, _requirements(files), _target(path, files, app))


def implicit_name(path: Path) -> str:
    """The template `fleet up --app PATH` builds: named after the file or directory."""
    stem = path.resolve().stem if path.suffix == ".py" else path.resolve().name
    name = _NAME_CHARS.sub("-", stem.lower()).strip("-")[:63].strip("-")
    return name or "app"


# -- reading the directory


def _read_tree(root: Path) -> tuple[SourceFile, ...]:
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {root}: {exc.strerror or exc}") from None
    found: list[SourceFile] = []
    try:
        _walk(fd, root, "", found, 0)
    finally:
        os.close(fd)
    if not found:
        raise InvalidArgument(f"{root} holds no files", "put the agent's module in it")
    return tuple(sorted(found, key=lambda f: f.path))


def _walk(dir_fd: int, root: Path, rel: str, found: list[SourceFile], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{root / rel} is nested more than {MAX_DEPTH} levels deep")
    for name in sorted(os.listdir(dir_fd)):
        if name.startswith(".") or name in _SKIPPED or name.endswith((".pyc", ".pyo")):
            continue
        where = f"{rel}/{name}" if rel else name
        _check_name(root, where)
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise InvalidArgument(
                f"{root / where} is a symbolic link", "a template holds regular files only"
            )
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                _walk(sub, root, where, found, depth + 1)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            used = sum(len(f.data) for f in found)
            if len(found) >= MAX_FILES:
                raise InvalidArgument(f"{root} holds more than {MAX_FILES} files")
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
            data = _read_file(fd, root / where, MAX_BYTES - used)
            found.append(SourceFile(where, bool(st.st_mode & 0o111), data))
        else:
            raise InvalidArgument(
                f"{root / where} is not a regular file", "a template holds regular files only"
            )


def _check_name(root: Path, rel: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"a file name under {root} is not UTF-8") from None
    if any(c in rel for c in "\n\r\x00\\"):
        raise InvalidArgument(f"{root / rel!r}: file names may not hold line breaks or '\\'")


def _read_file(fd: int, path: Path, budget: int) -> bytes:
    """The whole regular file behind ``fd`` (closed), at most ``budget`` bytes."""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InvalidArgument(f"{path} is not a regular file")
        data = f.read(budget + 1)
    if len(data) > budget:
        raise InvalidArgument(
            f"the template is larger than {MAX_BYTES >> 20} MiB (at {path})",
            "keep data out of the template's directory",
        )
    return data


# -- what the runtime loads


def _target(root: Path, files: tuple[SourceFile, ...], app: str | None) -> str:
    """The module (``x.py``) or package directory (``x``) of the app, at the top level."""
    top_modules = {f.path for f in files if "/" not in f.path and f.path.endswith(".py")}
    packages = {f.path.split("/")[0] for f in files if f.path.count("/") == 1}
    packages = {p for p in packages if f"{p}/__init__.py" in {f.path for f in files}}
    if app is not None:
        stem = app.removesuffix(".py").rstrip("/")
        if f"{stem}.py" in top_modules:
            return f"{stem}.py"
        if stem in packages:
            return stem
        raise InvalidArgument(
            f"--app {app}: no module {stem}.py or package {stem}/ at the top of {root}"
        )
    candidates = _candidates(root, top_modules | packages)
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise InvalidArgument(
            f"{root} must hold exactly one module or package (found: {found})",
            "name it with --app MODULE",
        )
    return candidates[0]


def _candidates(root: Path, entries: set[str]) -> list[str]:
    """What the runtime's loader would take from this directory (its own rule), among the
    entries read."""
    from agent_runtime._loader import app_candidates

    return sorted(p.name for p in app_candidates(root) if p.name in entries)


# -- requirements


def _requirements(files: tuple[SourceFile, ...]) -> tuple[str, ...]:
    by_path = {f.path: f.data for f in files}
    lines: list[str] = []
    if REQUIREMENTS in by_path:
        lines += _requirement_lines(_text(by_path[REQUIREMENTS], REQUIREMENTS))
    if PYPROJECT in by_path:
        lines += _pyproject_dependencies(_text(by_path[PYPROJECT], PYPROJECT))
    return tuple(dict.fromkeys(_requirement(line) for line in lines))


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{name} is not UTF-8 text") from None


def _requirement_lines(text: str) -> list[str]:
    """Non-empty lines without comments (``#`` at the start or after white space, as pip)."""
    lines = (_COMMENT.sub("", raw).strip() for raw in text.splitlines())
    return [line for line in lines if line]


def _pyproject_dependencies(text: str) -> list[str]:
    try:
        deps = tomllib.loads(text).get("project", {}).get("dependencies", [])
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{PYPROJECT}: {exc}") from None
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise InvalidArgument(f"{PYPROJECT}: project.dependencies must be a list of strings")
    return deps


def _requirement(line: str) -> str:
    """One requirement specifier (``name[extra]>=1; marker``), normalised; options, paths
    and URLs are refused."""
    from packaging.requirements import InvalidRequirement, Requirement

    if line.startswith("-"):
        raise InvalidArgument(
            f"requirement {line!r}: pip options are not accepted in a template",
            "list packages from the package index, one specifier a line",
        )
    try:
        req = Requirement(line)
    except InvalidRequirement:
        raise InvalidArgument(
            f"requirement {line!r} is not a package specifier",
            "paths and URLs are not accepted: list packages from the package index",
        ) from None
    if req.url:
        raise InvalidArgument(
            f"requirement {line!r} names a URL",
            "list packages from the package index, e.g. name==1.2",
        )
    return str(req)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, _EPOCH
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _EPOCH
    tar.addfile(info)
