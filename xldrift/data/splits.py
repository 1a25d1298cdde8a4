"""Which items are used for training, validation, evaluation and drift.

The XNLI test file is ordered by genre, so contiguous slices differ in
difficulty; items are therefore drawn as seeded random *premise groups* from
the whole file, and the roles never share a premise:

* ``train``/``val`` — the source language's dev file (MultiNLI, the paper's
  training set, is not available offline), split by premise group; when
  ``n_train`` exceeds what the dev file holds, extra training items come from
  test premise groups that are never evaluated or used for drift.
* ``eval`` — zero-shot test items, the same ids in every target language.
* ``drift`` — items whose representations are compared before and after
  fine-tuning (disjoint from ``eval`` unless ``drift_from_eval``).

For SIB-200 the roles follow the dataset's own splits (train / dev / test),
and drift uses all parallel sentences (train + dev + test, 1,004).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from xldrift.data import tasks as data

ROLES = ("train", "val", "eval", "drift")


def _groups(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(df["group"].unique())


def _take(df: pd.DataFrame, groups: np.ndarray, role: str, split: str) -> pd.DataFrame:
    out = df[df["group"].isin(groups)][["id", "group", "label"]].copy()
    out.insert(0, "split", split)
    out.insert(0, "role", role)
    return out


def select_items(
    task: str,
    source: str,
    *,
    n_train: int,
    n_val: int,
    n_eval: int,
    n_drift: int,
    seed: int,
    drift_from_eval: bool = False,
) -> pd.DataFrame:
    """Choose the items of every role.

    Args:
        task: ``xnli`` or ``sib200``.
        source: language whose files define groups (files are parallel, so the
            ids hold for every language).
        n_train, n_val, n_eval, n_drift: wanted sizes; XNLI rounds up to whole
            premise groups (three items each) and caps at what exists.
        seed: seed of the group permutation.
        drift_from_eval: reuse the evaluation items for drift (the paper's
            choice: both on the full test set).

    Returns:
        DataFrame ``role, split, id, group, label`` (ids are row indices in the
        split's file).

    Raises:
        ValueError: the requested sizes do not fit in the data.
    """
    rng = np.random.default_rng(seed)
    if task == "sib200":
        return _select_sib(source, n_train, n_val, n_eval, n_drift, rng)
    dev = data.load_split(task, source, "dev")
    test = data.load_split(task, source, "test")
    per = lambda n: math.ceil(n / 3)  # noqa: E731 - three hypotheses per premise
    dev_groups, test_groups = _groups(dev, rng), _groups(test, rng)
    n_eval_g, n_drift_g = per(n_eval), 0 if drift_from_eval else per(n_drift)
    n_val_g = per(n_val)
    if n_val_g >= len(dev_groups):
        raise ValueError(f"n_val={n_val} leaves no dev premise groups for training (dev has {len(dev)} items)")
    if n_eval_g + n_drift_g > len(test_groups):
        raise ValueError(
            f"n_eval={n_eval} + n_drift={n_drift} exceed the {len(test)} test items; lower them or set drift_from_eval"
        )
    val_g, train_g = dev_groups[:n_val_g], dev_groups[n_val_g:]
    train_g = train_g[: per(n_train)]
    eval_g = test_groups[:n_eval_g]
    drift_g = eval_g if drift_from_eval else test_groups[n_eval_g : n_eval_g + n_drift_g]
    parts = [_take(dev, train_g, "train", "dev"), _take(dev, val_g, "val", "dev")]
    extra = per(n_train) - len(train_g)
    if extra > 0:
        spare = test_groups[n_eval_g + n_drift_g :]
        if extra > len(spare):
            raise ValueError(
                f"n_train={n_train} needs {extra} test premise groups beyond the dev file, "
                f"but only {len(spare)} are left after eval and drift items; expected at most "
                f"n_train={3 * (len(train_g) + len(spare))} with these n_val, n_eval and n_drift"
            )
        parts.append(_take(test, spare[:extra], "train", "test"))
    parts += [_take(test, eval_g, "eval", "test"), _take(test, drift_g, "drift", "test")]
    return pd.concat(parts, ignore_index=True)


def select_shared_items(task: str, sources: list[str], **kwargs) -> pd.DataFrame:
    """:func:`select_items` for several source languages: one item set that every source shares.

    The roles are drawn by premise group and item id, which the parallel files share, so
    every source trains on the translations of the same items and every target is
    evaluated and measured on the same premise groups, whichever source is listed first.
    The selection is made from each source's own files and must come out identical.

    Args:
        task: ``xnli`` or ``sib200``.
        sources: the fine-tuning languages (at least one).
        **kwargs: the sizes and seed of :func:`select_items`.

    Returns:
        The table of :func:`select_items` (``role, split, id, group, label``).

    Raises:
        ValueError: no source given.
        data.DataError: a source's files would give different items (they are not parallel).
    """
    if not sources:
        raise ValueError("select_shared_items needs at least one source language")
    items = select_items(task, sources[0], **kwargs)
    for other in sources[1:]:
        theirs = select_items(task, other, **kwargs)
        if not theirs.reset_index(drop=True).equals(items.reset_index(drop=True)):
            raise data.DataError(f"{task}: the items drawn from {other}'s files differ from those drawn from "
                                 f"{sources[0]}'s; the sources would not train on the same items")
    return items


def _select_sib(
    source: str, n_train: int, n_val: int, n_eval: int, n_drift: int, rng: np.random.Generator
) -> pd.DataFrame:
    splits = {s: data.load_split("sib200", source, s) for s in ("train", "dev", "test")}
    parts = []
    for role, split, n in (("train", "train", n_train), ("val", "dev", n_val), ("eval", "test", n_eval)):
        df = splits[split]
        ids = np.sort(rng.permutation(len(df))[: min(n, len(df))])
        parts.append(_take(df, df["group"].to_numpy()[ids], role, split))
    pool = pd.concat([_take(splits[s], splits[s]["group"].to_numpy(), "drift", s) for s in splits], ignore_index=True)
    keep = np.sort(rng.permutation(len(pool))[: min(n_drift, len(pool))])
    parts.append(pool.iloc[keep])
    return pd.concat(parts, ignore_index=True)


def items_for(task: str, lang: str, items: pd.DataFrame, role: str) -> pd.DataFrame:
    """The texts of ``role``'s items in language ``lang`` (common schema).

    Rows keep the order of ``items``; ``id`` is the row index within its
    split, and a ``split`` column says which file it came from. Evaluation and
    drift items are keyed by ``id`` downstream, so when they come from several
    files (SIB-200 drift uses train, dev and test) each file's ids are shifted
    by the sizes of the files before it, in the order they first appear in
    ``items``; as the files are parallel, the shift is the same in every language.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    sel = items[items["role"] == role]
    out = []
    for split, part in sel.groupby("split", sort=False):
        df = data.load_split(task, lang, split).set_index("id", drop=False)
        rows = df.loc[part["id"].to_numpy()].reset_index(drop=True)
        if not np.array_equal(rows["label"].to_numpy(), part["label"].to_numpy()):
            raise data.DataError(f"{task} {lang} {split}: labels differ from the selected items (not parallel?)")
        rows.insert(0, "split", split)
        out.append(rows)
    if not out:
        return pd.DataFrame(columns=["split", "id", "group", "text_a", "text_b", "label"])
    if role in ("eval", "drift") and len(out) > 1:
        offset = 0
        for rows, split in zip(out, sel.groupby("split", sort=False).groups):
            rows["id"] = rows["id"] + offset
            offset += len(data.load_split(task, lang, split))
    return pd.concat(out, ignore_index=True)
