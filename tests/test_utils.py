"""The notebooks' facade (``utils.py``) and the package layout it maps onto."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import utils as U  # noqa: E402

STAGES = ("data", "model", "representations", "analysis", "plots", "study")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0[0-9]_*.ipynb"))


def _code(nb: Path) -> str:
    """The code cells of a notebook, joined."""
    return "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")


def test_every_module_of_the_package_lives_in_a_stage():
    top = sorted(p.name for p in (ROOT / "xldrift").glob("*.py"))
    assert top == ["__init__.py"], f"modules outside a stage folder: {top}"
    folders = sorted(p.name for p in (ROOT / "xldrift").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(STAGES)
    for stage in STAGES:
        doc = ast.get_docstring(ast.parse((ROOT / "xldrift" / stage / "__init__.py").read_text())) or ""
        assert re.search(r"\b0[1-7]\b|notebook|every stage", doc), f"xldrift/{stage}/__init__.py names no notebook"


def test_every_short_name_maps_to_a_module_of_its_stage():
    for name, dotted in U.MODULES.items():
        parts = dotted.split(".")
        assert parts[0] == "xldrift" and parts[1] in STAGES, f"U.{name} -> {dotted}"
        module = getattr(U, name)
        assert module is importlib.import_module(dotted) and module.__name__ == dotted


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(AttributeError, match=r"no attribute 'nosuch'; package modules: data, languages"):
        U.nosuch  # noqa: B018


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_what_a_notebook_calls_through_the_facade_exists(nb):
    """``U.<name>.<attr>`` of every code cell resolves, so a module split cannot strand a notebook."""
    code = _code(nb)
    for name, attr in sorted(set(re.findall(r"\bU\.([a-z_]\w*)\.([A-Za-z_]\w*)", code))):
        if name in ("np", "pd"):
            continue
        assert name in U.MODULES, f"{nb.name} uses U.{name}, which the facade does not map"
        assert hasattr(getattr(U, name), attr), f"{nb.name} calls U.{name}.{attr}; {U.MODULES[name]} has no {attr}"
    for name in set(re.findall(r"\bU\.([a-z_]\w*)\b", code)) - {"np", "pd"}:
        assert name in U.MODULES or hasattr(U, name), f"{nb.name} uses U.{name}"


def test_importing_utils_loads_no_heavy_module():
    probe = ("import sys, utils; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'matplotlib', "
             "'sklearn', 'umap', 'scipy') or m.startswith('xldrift.')))")
    env = {k: v for k, v in os.environ.items() if k != "XLDRIFT_HEADLESS"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    heavy = [m for m in loaded if not m.startswith("xldrift.")]
    assert not heavy, f"importing utils loaded {heavy[:5]}"
    # the parameters and what they need (paths, task names, poolings), nothing of the later stages
    assert "xldrift.study.config" in loaded
    assert not [m for m in loaded if m.split(".")[1] in ("model", "analysis", "plots")], loaded
