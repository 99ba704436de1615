"""distill installed from a built wheel (not the clone) still has its shipped recipes.

They live in the top-level `recipes/` folder, outside the package: a wheel held none of them, so
`distill recipes` listed nothing and `distill students --write-recipe` (whose template is the
shipped function_matching recipe) failed on a `pip install`. The package reaches them through
`distill_cli/shipped_recipes` (pyproject's package data).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_built_wheel_ships_every_recipe_and_lists_them_from_anywhere(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: setuptools writes build/ and egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("distill_cli", "recipes"):
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    wheels = tmp_path / "wheels"
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation"]
    built = subprocess.run([*cmd, "-q", "-w", str(wheels)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("*.whl")
    shipped = sorted(
        p.relative_to(ROOT / "recipes").as_posix() for p in ROOT.glob("recipes/**/*.yaml")
    )
    with zipfile.ZipFile(wheel) as z:
        inside = sorted(
            n.removeprefix("distill_cli/shipped_recipes/")
            for n in z.namelist()
            if n.startswith("distill_cli/shipped_recipes/")
        )
        assert inside == shipped
        z.extractall(tmp_path / "site")
    code = (
        "from distill_cli.recipe.catalog import entries, shipped;"
        "import distill_cli;"
        "print(distill_cli.__file__);"
        "print(shipped('function_matching'));"
        "print(*[e.name for e in entries()], sep='\\n')"
    )
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(tmp_path / "site"))  # the installed copy, not the clone
    assert lines[1].startswith(str(tmp_path / "site"))
    assert lines[2:] == sorted(name.removesuffix(".yaml") for name in shipped)
