"""Data errors that name the right file, row and cause.

Two kinds of fault reach the task files: a file damaged on its own (empty, a
byte-order mark, Windows line endings), found by :func:`inspect_text` before
the file is parsed (bytes that are not UTF-8 or gzip are named by the loader); and files that are each sound
but not parallel (a row removed or added, labels that differ), found by
:func:`check_parallel`. The latter blames the language that disagrees with
the majority, not whichever happened to be compared first, and reports the
first row where it differs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd


def _error(message: str) -> Exception:
    from xldrift.data.tasks import DataError

    return DataError(message)


def inspect_text(path: Path, text: str, *, header: bool = False) -> None:
    """Raise ``DataError`` if a task file's text is empty, starts with a BOM or has CR line endings.

    Args:
        path: the file (named in the error).
        text: its decoded (and decompressed) content.
        header: whether its first line is a header (then a file with only
            that line is empty too).
    """
    if not text.strip():
        raise _error(f"{path}: the file is empty ({len(text)} characters); it should hold one item per line")
    if text.startswith("\ufeff"):
        raise _error(f"{path}: starts with a UTF-8 byte-order mark (bytes EF BB BF) before row 1; "
                     f"save it as UTF-8 without a BOM")
    cr = text.find("\r")
    if cr >= 0:
        line = text.count("\n", 0, cr) + 1
        kind = "Windows (CRLF)" if text[cr + 1:cr + 2] == "\n" else "carriage-return (CR)"
        raise _error(f"{path}: {kind} line ending at line {line}; the task files use Unix (LF) line endings "
                     f"(convert it, e.g. with dos2unix)")
    if header and len(text.splitlines()) <= 1:
        raise _error(f"{path}: only a header line, no rows")


def _boundaries(df: pd.DataFrame) -> np.ndarray:
    g = df["group"].to_numpy()
    return np.r_[True, g[1:] != g[:-1]] if len(g) else np.array([], bool)


def first_difference(df: pd.DataFrame, ref: pd.DataFrame) -> tuple[int, str] | None:
    """0-based index and kind (label / premise-group boundary) of the first row where ``df`` and ``ref`` differ.

    Rows past the shorter frame's end count as differing there; None when the
    frames agree on every row and have the same length.
    """
    n = min(len(df), len(ref))
    found: list[tuple[int, str]] = []
    for what, a, b in (("label", df["label"].to_numpy()[:n], ref["label"].to_numpy()[:n]),
                       ("premise-group boundary", _boundaries(df)[:n], _boundaries(ref)[:n])):
        bad = np.flatnonzero(a != b)
        if bad.size:
            found.append((int(bad[0]), what))
    if found:
        return min(found)
    return None if len(df) == len(ref) else (n, "row count")


def check_parallel(frames: Mapping[str, pd.DataFrame], where: Callable[[str], object], task: str,
                   split: str) -> None:
    """Same row count, labels and premise-group boundaries in every language.

    The reference is the row count most languages share (the first language
    breaks ties); a language that differs from it is named with its file and
    the first row that differs.

    Raises:
        DataError: naming the offending file, the row and what differs.
    """
    if len(frames) < 2:
        return
    langs = list(frames)
    counts = Counter(len(frames[lang]) for lang in langs)
    n_ref = counts.most_common(1)[0][0]
    agree = [lang for lang in langs if len(frames[lang]) == n_ref]
    ref = agree[0]
    also = f" (and {len(agree) - 1} other language{'s' if len(agree) > 2 else ''})" if len(agree) > 1 else ""
    for lang in langs:
        df = frames[lang]
        if len(df) == n_ref:
            continue
        diff = first_difference(df, frames[ref])
        row = diff[0] + 1 if diff else min(len(df), n_ref) + 1
        change = "removed" if len(df) < n_ref else "added"
        raise _error(f"{where(lang)}: {len(df)} rows where {ref}{also} has {n_ref}; the {task} {split} files must "
                     f"be parallel. First row that differs from {ref}: row {row} ({diff[1] if diff else 'row count'})"
                     f", so a row was {change} at or before row {row}")
    # equal lengths: at the first row where languages disagree, blame those against the majority
    first: tuple[int, str] | None = None
    for lang in langs[1:]:
        d = first_difference(frames[lang], frames[ref])
        if d is not None and (first is None or d < first):
            first = d
    if first is None:
        return
    row, what = first
    col = "label" if what == "label" else None
    values = {lang: (frames[lang]["label"].to_numpy()[row] if col else bool(_boundaries(frames[lang])[row]))
              for lang in langs}
    majority, n_major = Counter(values.values()).most_common(1)[0]
    odd = [lang for lang in langs if values[lang] != majority] if n_major > len(langs) / 2 else langs[1:2]
    others = [lang for lang in langs if lang not in odd]
    raise _error(f"{where(odd[0])}: row {row + 1} differs in its {what} from {', '.join(others[:3])}"
                 f"{' and others' if len(others) > 3 else ''}; the {task} {split} files are not parallel")
