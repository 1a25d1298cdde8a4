"""Module docstrings cite only files that exist in the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted((ROOT / "xldrift").rglob("*.py")) + [ROOT / "utils.py", ROOT / "run_study.py"]
# ``some/path.ext`` or ``folder/`` in double backquotes; placeholders (<profile>, $VAR, *) are not files
TOP_LEVEL = {"data", "docs", "notebooks", "profiles", "bench", "tests", "xldrift", "results", "figures"}
CITED = re.compile(r"``([A-Za-z0-9_./-]+(?:\.(?:md|py|csv|json|yaml|txt|sha256|ipynb)|/))``")


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_docstring_cites_existing_files(module):
    doc = ast.get_docstring(ast.parse(module.read_text())) or ""
    for cited in CITED.findall(doc):
        if cited.split("/")[0] not in TOP_LEVEL and not cited.endswith(".md"):
            continue  # a file inside a cache entry (``encoder/``) or a kind of file (``manifest.json``)
        assert (ROOT / cited).exists(), f"{module.relative_to(ROOT)} cites {cited}, which is not in the repository"


def test_the_check_finds_a_missing_file():
    assert CITED.findall("see ``docs/embedded-model.md`` and ``data/``") == ["docs/embedded-model.md", "data/"]
    assert not (ROOT / "docs" / "embedded-model.md").exists()
