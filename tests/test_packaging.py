"""What a non-editable install (the Docker images build a wheel) contains: every package of the source tree.

`make install` installs in editable mode, where a package missing from pyproject's explicit list still
imports from the checkout; the images' wheel silently left `matteflow.core.instructions` out. This builds the
wheel and checks it holds every module the source tree has."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def source_packages() -> dict[str, Path]:
    """Every folder with an ``__init__.py`` under the mapped roots, by its installed name."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found: dict[str, Path] = {}
    for name, folder in config["package-dir"].items():
        root = ROOT / folder
        for init in root.rglob("__init__.py"):
            if ".venv" in init.parts or "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(root).parts
            found[".".join((name, *relative))] = init.parent
    return found


def test_every_package_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(config["packages"]) == sorted(source_packages())


def test_the_wheel_holds_every_module(tmp_path: Path) -> None:
    # Built from a clean copy: setuptools keeps build/ and *.egg-info beside the sources, and stale ones can
    # hide a package missing from the list.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for folder in set(config["package-dir"].values()):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*command, "-w", str(wheels)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("matteflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package, folder in source_packages().items():
        for module in folder.glob("*.py"):
            path = "/".join(package.split(".")) + "/" + module.name
            assert path in names, f"{path} is not in the wheel"
