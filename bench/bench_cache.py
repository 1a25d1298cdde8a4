"""What verifying cache entries costs, set against the work each entry saves.

Every cache entry records its files' sizes and SHA-256 when it is written
(:mod:`xldrift.study.cachecheck`); reading it checks the sizes every time and the
hashes once per process and entry. This measures, at the study's sizes:

* SHA-256 throughput on this machine;
* a checkpoint (the embedded model's weights and tokenizers, as fine-tuning
  saves them): the first verification in a process, a repeated one (the
  per-process memo), the size-only check the runner makes when planning, and
  loading the same checkpoint, which every read does anyway;
* one representations file (13 layers x 2 poolings x 501 items x 384 dims,
  float32, the default profile's drift entry per language and state): the
  first verification against reading it;
* one predictions file (300 items): verification plus the row check against
  the items, against reading the CSV.

The work each entry saves (training, extraction, prediction) is taken from
what the committed default profile recorded, and from the extraction
benchmark's throughput when it has been measured.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def _median_time(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None) -> float:
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _checkpoint_like(dest: Path) -> Path:
    """A checkpoint folder with the embedded model's files (hard links where possible), sealed as fine-tuning seals it."""
    from xldrift.model import loading as models
    from xldrift.study import cachecheck, io, paths

    src = paths.models_cache() / models.DEFAULT_MODEL
    models.load_tokenizer(models.DEFAULT_MODEL)  # builds the embedded model on first use
    enc = dest / "encoder"
    enc.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name != io.MANIFEST:
            try:
                os.link(f, enc / f.name)
            except OSError:
                shutil.copy2(f, enc / f.name)
    shutil.copytree(enc, dest / "tokenizer", ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    io.write_manifest(dest, cachecheck.seal_dir(dest))
    return dest


def run(repeats: int = 3, extraction_items_per_s: float | None = None) -> dict[str, Any]:
    """Time verification of each kind of entry; return the numbers for ``results.json``."""
    from xldrift.model import evaluate, loading as models
    from xldrift.study import cachecheck

    out: dict[str, Any] = {"repeats": repeats}
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        tmp = Path(tmp)
        blob = tmp / "blob.bin"
        blob.write_bytes(np.random.default_rng(0).bytes(64 << 20))
        s = _median_time(lambda: cachecheck.file_digest(blob), repeats)
        out["sha256_mb_per_s"] = round(64 / s, 1)

        # checkpoint
        ckpt = _checkpoint_like(tmp / "ckpt")
        size = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())
        first = _median_time(lambda: cachecheck.check_dir(ckpt), repeats, setup=cachecheck._verified.clear)
        cachecheck.check_dir(ckpt)
        again = _median_time(lambda: cachecheck.check_dir(ckpt), repeats)
        sizes = _median_time(lambda: cachecheck.check_dir(ckpt, deep=False), repeats)
        load = _median_time(lambda: models.load_encoder(str(ckpt / "encoder")), max(1, repeats - 1))
        out["checkpoint"] = {"mb": round(size / 2**20, 1), "verify_first_s": round(first, 3),
                             "verify_again_s": round(again, 5), "sizes_only_s": round(sizes, 5),
                             "load_s": round(load, 3)}

        # representations: the default profile's entry per language and state
        from safetensors.numpy import save_file

        rep = tmp / "rep" / "en-key.safetensors"
        rep.parent.mkdir()
        rng = np.random.default_rng(1)
        save_file({p: rng.standard_normal((13, 501, 384), dtype=np.float32) for p in ("cls", "mean")}, str(rep))
        cachecheck.seal_file(rep)

        def read_rep() -> None:
            from safetensors.numpy import load_file

            load_file(str(rep))

        first = _median_time(lambda: cachecheck.check_file(rep), repeats, setup=cachecheck._verified.clear)
        read = _median_time(read_rep, repeats)
        out["representations"] = {"mb": round(rep.stat().st_size / 2**20, 1), "items": 501,
                                  "verify_first_s": round(first, 4), "read_s": round(read, 4)}
        if extraction_items_per_s:
            out["representations"]["extract_s"] = round(501 / extraction_items_per_s, 1)

        # predictions: 300 items
        items = pd.DataFrame({"id": np.arange(300), "label": rng.integers(0, 3, 300)})
        pred = rng.integers(0, 3, 300)
        table = pd.DataFrame({"id": items["id"], "label": items["label"], "pred": pred,
                              "correct": pred == items["label"].to_numpy()})
        csv = tmp / "pred" / "de-key.csv"
        csv.parent.mkdir()
        table.to_csv(csv, index=False)
        cachecheck.seal_file(csv)

        def verify_predictions() -> None:
            assert cachecheck.check_file(csv) is None
            assert evaluate.prediction_problem(pd.read_csv(csv), items, 3) is None

        first = _median_time(verify_predictions, repeats, setup=cachecheck._verified.clear)
        read = _median_time(lambda: pd.read_csv(csv), repeats)
        out["predictions"] = {"items": 300, "verify_and_rows_s": round(first, 4), "read_s": round(read, 4)}

    runs = _recorded_checkpoints("default")
    if runs is not None:
        out["checkpoint"]["train_s_recorded"] = runs
    return out


def _recorded_checkpoints(profile: str) -> float | None:
    """Median fine-tuning wall time of the profile's committed checkpoints, or None."""
    f = ROOT / "results" / profile / "checkpoints.csv"
    if not f.is_file():
        return None
    walls = pd.read_csv(f)["wall_seconds"].dropna()
    return round(float(walls.median()), 1) if len(walls) else None


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
