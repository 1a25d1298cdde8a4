"""The README's published claims and links agree with the committed results."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VERDICT = re.compile(r"^(not supported|supported|mixed)\b")


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def claims_table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The profiles named in the claims table's header and each claim's cells, from README text.

    Returns:
        ``(profiles, {claim letter: [cell per profile]})``; a header cell names its
        profile in backticks, e.g. ``XNLI (`full`, 14 targets)``.
    """
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith("| claim |")]
    if len(starts) != 1:
        raise ValueError(f"expected one claims table header ('| claim | ...'), found {len(starts)}")
    rows = lines[starts[0]:]
    header = _cells(rows[0])[1:]
    profiles = []
    for cell in header:
        names = re.findall(r"`([^`]+)`", cell)
        if len(names) != 1:
            raise ValueError(f"claims table header cell {cell!r} must name one profile in backticks")
        profiles.append(names[0])
    body: dict[str, list[str]] = {}
    for row in rows[2:]:
        if not row.startswith("|"):
            break
        cells = _cells(row)
        letter = re.match(r"\((\w)\)", cells[0])
        if letter is None:
            raise ValueError(f"claims table row {row!r} does not start with a claim letter such as (a)")
        if len(cells) != len(header) + 1:
            raise ValueError(f"claims table row ({letter.group(1)}) has {len(cells) - 1} cells for {len(header)} profiles")
        body[letter.group(1)] = cells[1:]
    return profiles, body


PAPER_COLUMN = "as the paper computes it"


def committed_verdicts(profile: str, paper: bool = False) -> dict[str, str]:
    """Verdict per claim letter from ``results/<profile>/claims.csv`` and ``intervention_verdict.csv``.

    With ``paper``, claims (a)-(c) come from ``claims_paper.csv`` (notebook 05's reading as the paper computes
    it); claim (d) has one reading.
    """
    out: dict[str, str] = {}
    for name in ("claims_paper.csv" if paper else "claims.csv", "intervention_verdict.csv"):
        path = ROOT / "results" / profile / name
        if path.is_file():
            t = pd.read_csv(path)
            out.update(zip(t["claim"].astype(str), t["verdict"].astype(str)))
    return out


def test_claims_table_parser_reads_profiles_and_cells():
    text = ("intro\n| claim | XNLI (`full`, 3 seeds) | SIB (`sib200`) |\n| --- | --- | --- |\n"
            "| (a) distance | mixed: r = -0.9 | supported |\n| (d) freezing | not supported | not supported, 1 seed |\n\nafter")
    profiles, body = claims_table(text)
    assert profiles == ["full", "sib200"]
    assert body == {"a": ["mixed: r = -0.9", "supported"], "d": ["not supported", "not supported, 1 seed"]}
    with pytest.raises(ValueError, match="one profile in backticks"):
        claims_table("| claim | XNLI |\n| --- | --- |\n| (a) x | mixed |")
    with pytest.raises(ValueError, match="2 cells for 1 profiles"):
        claims_table("| claim | X (`full`) |\n| --- | --- |\n| (a) x | mixed | extra |")


def paper_columns(text: str) -> list[bool]:
    """Per profile column of the claims table: does its header say it is read as the paper computes it?"""
    header = next(ln for ln in text.splitlines() if ln.startswith("| claim |"))
    return [PAPER_COLUMN in cell for cell in _cells(header)[1:]]


def test_readme_verdicts_match_the_committed_results():
    text = README.read_text()
    profiles, body = claims_table(text)
    assert set(body) == {"a", "b", "c", "d"}, f"the claims table must have rows (a)-(d), has {sorted(body)}"
    paper = paper_columns(text)
    assert any(paper), f"the claims table needs a column {PAPER_COLUMN!r}"
    for i, profile in enumerate(profiles):
        verdicts = committed_verdicts(profile, paper=paper[i])
        assert verdicts, f"README's claims table names {profile!r}, but results/{profile}/ has no claims"
        assert not paper[i] or (ROOT / "results" / profile / "claims_paper.csv").is_file(), (
            f"README reads {profile!r} as the paper computes it, but results/{profile}/claims_paper.csv is missing")
        for letter, cells in body.items():
            said = VERDICT.match(cells[i])
            assert said, f"claim ({letter}), {profile}: cell {cells[i]!r} must start with a verdict"
            assert said.group(1) == verdicts[letter], (
                f"README says claim ({letter}) is {said.group(1)!r} for {profile}; "
                f"results/{profile} say {verdicts[letter]!r}")


def test_readme_links_and_figures_exist():
    text = README.read_text()
    targets = re.findall(r"\]\(((?:figures|notebooks|results|bench)/[^)#\s]*)", text)
    assert len(targets) >= 10, f"expected the README to link its figures and results, found {len(targets)} links"
    missing = sorted({t for t in targets if not (ROOT / t).exists()})
    assert not missing, f"README links to files that are not in the repository: {missing}"


def test_paper_column_is_recognised():
    text = "| claim | X (`full`) | X as the paper computes it (`full`) |\n| --- | --- | --- |\n| (a) x | mixed | supported |"
    assert claims_table(text)[0] == ["full", "full"]
    assert paper_columns(text) == [False, True]


def test_readme_names_the_commit_each_published_profile_ran_at():
    """Each published profile's executed copies record the commit they ran at; the README names it."""
    import json

    text = README.read_text()
    for d in sorted((ROOT / "notebooks" / "executed").iterdir()):
        copies = sorted(d.glob("0[0-9]_*.ipynb"))
        if not copies:
            continue
        commits = {(json.loads(c.read_text())["metadata"].get("xldrift") or {}).get("commit", "") for c in copies}
        for commit in sorted(commits):
            short = commit.split("+")[0][:7]
            assert short and re.search(rf"ran at commit `?{short}", text), (
                f"README does not say that profile {d.name} ran at commit {short} ('ran at commit {short}')")
