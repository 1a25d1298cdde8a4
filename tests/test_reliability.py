"""Reliability: the cache, locks, up-front checks, data errors, interrupts and partial runs.

Each case found by probing the study as users and real faults would is a
regression test here, on tiny fixtures (a 2-block random BERT, a few toy rows,
60-row copies of the XNLI files). The tests that run the real runner and its
kernels in subprocesses take minutes and are marked slow.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xldrift.data import tasks as data
from xldrift.study import cachecheck, checks, io, locks, paths, runlog, runner

ROOT = Path(__file__).resolve().parents[1]


def _env(out: Path, cache: Path) -> dict[str, str]:
    cache.mkdir(parents=True, exist_ok=True)
    models = cache / "models"
    if not models.exists():  # share the converted base model; everything else starts empty
        models.symlink_to(paths.models_cache())
    return {**os.environ, "XLDRIFT_OUT": str(out), "XLDRIFT_CACHE": str(cache)}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_study.py"), "--profile", "smoke", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800)


def _kill_when(env: dict[str, str], args: list[str], ready, timeout: float = 900) -> None:
    """Start the runner, SIGKILL its whole process group as soon as ``ready()`` is true."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_study.py"), "--profile", "smoke", *args], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    try:
        while not ready():
            assert proc.poll() is None, "the run finished before the moment to interrupt it"
            assert time.time() - t0 < timeout, "never reached the moment to interrupt"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    res = out / "results" / "smoke"
    return {n: pd.read_csv(res / f"{n}.csv") for n in ("accuracy", "drift", "alignment")}


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for name in a:
        x, y = a[name], b[name]
        assert list(x.columns) == list(y.columns) and len(x) == len(y), name
        num = [c for c in x.columns if c in ("accuracy", "similarity")]
        keys = [c for c in x.columns if c not in num]
        x, y = x.sort_values(keys).reset_index(drop=True), y.sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(x[keys], y[keys], check_dtype=False)
        np.testing.assert_allclose(x[num].to_numpy(float), y[num].to_numpy(float), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_killed_runs_resume_and_equal_an_uninterrupted_run(tmp_path):
    # reference: one uninterrupted run from an empty cache
    ref = _run(_env(tmp_path / "outA", tmp_path / "cacheA"))
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference = _tables(tmp_path / "outA")

    # SIGKILL in the middle of fine-tuning (its temporary checkpoint folder exists), then re-run
    env = _env(tmp_path / "outB", tmp_path / "cacheB")
    ckpts = tmp_path / "cacheB" / "checkpoints"
    _kill_when(env, [], lambda: ckpts.is_dir() and any(p.name.startswith(".tmp-") for p in ckpts.iterdir()))
    assert not any(p.name.startswith("xnli-") for p in ckpts.iterdir()), "a killed fine-tuning left a checkpoint"
    done = _run(env)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same(reference, _tables(tmp_path / "outB"))

    # SIGKILL in the middle of extraction (some languages written, not all), then re-run 03-04
    reps = tmp_path / "cacheB" / "representations"
    for f in reps.rglob("*.safetensors"):
        f.unlink()
    _kill_when(env, ["--only", "03", "--rerun"], lambda: reps.is_dir() and 0 < len(list(reps.rglob("*.safetensors"))))
    n_before = len(list(reps.rglob("*.safetensors")))
    assert n_before < 12, "extraction finished before it could be interrupted"
    done = _run(env, "--only", "03,04", "--rerun")  # 03's copy from the first run is up to date
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same(reference, _tables(tmp_path / "outB"))


@pytest.mark.slow
def test_a_failing_notebook_is_named_and_kept_apart(tmp_path):
    out = tmp_path / "out"
    env = _env(out, tmp_path / "cache")
    executed = out / "notebooks" / "executed" / "smoke"
    executed.mkdir(parents=True)
    other = executed / "01_data.ipynb"
    other.write_text('{"earlier": "run"}')
    # notebook 02 reads items.csv from 01; this one is there (the up-front check passes) but holds no items
    (out / "results" / "smoke").mkdir(parents=True)
    (out / "results" / "smoke" / "items.csv").write_text("x\n1\n")
    proc = _run(env, "--only", "02")
    assert proc.returncode == 1
    assert "FAILED: 02_finetune.ipynb, cell" in proc.stderr and "KeyError" in proc.stderr
    assert (executed / "02_finetune.FAILED.ipynb").is_file()
    assert not (executed / "02_finetune.ipynb").exists()
    assert other.read_text() == '{"earlier": "run"}'


# =================================================================== shared tiny fixtures
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", *list("cdefghij")]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised 1-block BERT and its tokenizer, saved like a Hub model."""
    import transformers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab=str(d / "vocab.txt")).save_pretrained(d)
    transformers.set_seed(0)
    BertModel(BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32), add_pooling_layer=False).save_pretrained(d)
    return d


def toy(n: int, seed: int = 0) -> pd.DataFrame:
    """Items whose label is 0 when the text holds 'a', 1 when it holds 'b'."""
    rng = np.random.default_rng(seed)
    rows = [{"id": i, "group": i, "text_a": " ".join([*rng.choice(list("cdefghij"), 3), "ab"[i % 2]]),
             "text_b": None, "label": i % 2} for i in range(n)]
    return pd.DataFrame(rows)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private cache and notices file; returns the cache folder."""
    monkeypatch.setenv("XLDRIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XLDRIFT_THREADS", "1")
    monkeypatch.setenv(runlog.NOTICES_ENV, str(tmp_path / "notices.log"))
    return tmp_path / "cache"


def _executed_copy(src: str, dst: str) -> None:
    """What a kernel leaves: the notebook, its injected last cell reporting no modules and no reads."""
    from xldrift.study import provenance

    nb = json.loads(Path(src).read_text())
    for c in nb["cells"]:
        if provenance.END_TAG in c.get("metadata", {}).get("tags", []):
            c["outputs"] = [{"output_type": "stream", "name": "stdout",
                             "text": [provenance._END_MARK + json.dumps({"modules": [], "reads": []}) + "\n"]}]
    Path(dst).write_text(json.dumps(nb))


def notices(tmp_path: Path) -> list[str]:
    f = tmp_path / "notices.log"
    return f.read_text().splitlines() if f.is_file() else []


def train_tiny(model_dir: Path, train: pd.DataFrame | None = None) -> Path:
    from xldrift.model import finetune as ft

    train = toy(32, seed=1) if train is None else train
    cfg = ft.FinetuneConfig(model=str(model_dir), task="toy", source="en", seed=0, epochs=1, learning_rate=1e-3,
                            batch_size=16, max_length=16, warmup_ratio=0.0, weight_decay=0.0, pooling="mean",
                            freeze_word_embeddings=False, num_labels=2, data_fingerprint=ft.data_fingerprint(train, None))
    return ft.finetune(cfg, train, None, progress=False)


# =================================================================== 1. verified cache
@pytest.fixture
def predictions(tiny_bert, cache):
    """A checkpoint, 60 items of 'de' and their cached predictions file."""
    from xldrift.model import evaluate as ev

    ckpt = train_tiny(tiny_bert)
    items = toy(60, seed=5)
    first = ev.evaluate_cached(ckpt, "de", items, batch_size=16, max_length=16, progress=False)
    (target,) = (paths.evaluations_cache() / ckpt.name).glob("de-*.csv")
    return ckpt, items, first, target


def _evaluate_again(ckpt, items):
    from xldrift.model import evaluate as ev

    return ev.evaluate_cached(ckpt, "de", items, batch_size=16, max_length=16, progress=False)


@pytest.mark.parametrize("with_record", [True, False], ids=["recorded", "made-before-records"])
def test_predictions_cut_to_whole_rows_are_recomputed_not_used(predictions, tmp_path, with_record):
    # before: a file cut to 30 whole rows gave accuracy on n = 30 instead of 60, exit 0
    ckpt, items, first, target = predictions
    lines = target.read_text().splitlines(keepends=True)
    target.write_text("".join(lines[:31]))  # header + 30 rows
    if not with_record:
        target.with_name(target.name + cachecheck.SIDECAR).unlink()
    again = _evaluate_again(ckpt, items)
    assert len(again) == len(items) == 60
    pd.testing.assert_frame_equal(again, first)
    (line,) = notices(tmp_path)
    assert str(target) in line and "damaged cache entry" in line
    assert ("bytes where" in line) if with_record else ("30 rows for 60 items" in line)
    moved = list((paths.cache_dir() / ".quarantine").rglob("de-*.csv.*"))
    assert any(len(m.read_text().splitlines()) == 31 for m in moved), moved
    assert cachecheck.check_file(target) is None  # the recomputed file has a record and matches it


@pytest.mark.parametrize("with_record", [True, False], ids=["recorded", "made-before-records"])
def test_predictions_cut_mid_row_are_recomputed_and_named(predictions, tmp_path, with_record):
    # before: TypeError: Could not convert string 'FalseTrue...' naming no file
    ckpt, items, first, target = predictions
    raw = target.read_bytes()
    target.write_bytes(raw[: len(raw) // 2 + 3])
    if not with_record:
        target.with_name(target.name + cachecheck.SIDECAR).unlink()
    again = _evaluate_again(ckpt, items)
    pd.testing.assert_frame_equal(again, first)
    (line,) = notices(tmp_path)
    assert str(target) in line


def test_predictions_of_other_items_are_never_used(predictions, tmp_path):
    ckpt, items, first, target = predictions
    table = pd.read_csv(target)
    table.loc[7, "id"] = 999  # a sound file, with its record, but not these items
    table.to_csv(target, index=False)
    cachecheck.seal_file(target)
    pd.testing.assert_frame_equal(_evaluate_again(ckpt, items), first)
    (line,) = notices(tmp_path)
    assert "row 8 holds item 999, expected 7" in line


def test_truncated_checkpoint_is_moved_aside_and_trained_again(tiny_bert, cache, tmp_path, monkeypatch):
    # before: 02 passed on cached predictions, 03 failed with "SafetensorError: incomplete metadata" naming no
    # file, and every re-run failed the same way because manifest.json still marked the checkpoint complete
    from xldrift.model import finetune as ft

    ckpt = train_tiny(tiny_bert)
    run_id = io.read_manifest(ckpt)["run_id"]
    weights = ckpt / "encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    # the runner sees it before running anything: 02's executed copy is stale
    monkeypatch.setenv("XLDRIFT_OUT", str(tmp_path / "out"))
    io.write_csv(pd.DataFrame({"checkpoint": [ckpt.name]}), paths.results_dir("smoke") / "checkpoints.csv")
    why = checks.cache_staleness("smoke", Path("02_finetune.ipynb"))
    assert why is not None and "model.safetensors" in why and "truncated" in why

    # a notebook that only reads it (03) names the file and the notebook to run
    with pytest.raises(cachecheck.CacheEntryError, match=r"model\.safetensors.*truncated.*notebook 02"):
        ft.encoder_dir(ckpt)
    assert not ckpt.exists() and len(notices(tmp_path)) == 1
    assert "not in the cache" in checks.missing_cache_inputs("smoke", "03")
    assert "moved aside as damaged" in checks.cache_staleness("smoke", Path("02_finetune.ipynb"))

    # fine-tuning again (02) makes a new, sound checkpoint
    again = train_tiny(tiny_bert)
    assert again == ckpt and io.read_manifest(again)["run_id"] != run_id
    assert ft.encoder_dir(again) == again / "encoder"
    ft.load_classifier(again)


def test_checkpoint_damaged_in_place_is_retrained_when_reused(tiny_bert, cache, tmp_path):
    ckpt = train_tiny(tiny_bert)
    weights = ckpt / "encoder" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF  # same size, one byte flipped
    weights.write_bytes(bytes(raw))
    cachecheck._verified.clear()  # a new process: nothing verified yet
    run_id = io.read_manifest(ckpt)["run_id"]
    again = train_tiny(tiny_bert)
    assert io.read_manifest(again)["run_id"] != run_id
    (line,) = notices(tmp_path)
    assert "model.safetensors" in line and "SHA-256" in line


def test_checkpoint_made_before_records_is_checked_and_adopted(tiny_bert, cache):
    ckpt = train_tiny(tiny_bert)
    manifest = io.read_manifest(ckpt)
    io.write_manifest(ckpt, {k: v for k, v in manifest.items() if k != "files"})
    assert cachecheck.check_dir(ckpt) is None
    assert set(io.read_manifest(ckpt)["files"]) == set(manifest["files"])
    weights = ckpt / "encoder" / "model.safetensors"
    io.write_manifest(ckpt, {k: v for k, v in manifest.items() if k != "files"})
    weights.write_bytes(weights.read_bytes()[:-100])
    assert "truncated" in cachecheck.check_dir(ckpt)


def _extract_items() -> pd.DataFrame:
    return toy(12, seed=3)


def _loader(model_dir: Path):
    from transformers import AutoModel, AutoTokenizer

    return lambda: (AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir, add_pooling_layer=False))


def test_truncated_representations_are_recomputed_and_the_terminal_is_told(tiny_bert, cache, tmp_path, monkeypatch,
                                                                           capsys):
    # before: detected and recomputed, but the warning showed only inside the executed notebook
    import papermill as pm

    from xldrift.representations import cache as RC

    first = RC.extract_cached("pre", _loader(tiny_bert), "en", _extract_items(), max_length=16, progress=False)
    (f,) = paths.representations_cache().rglob("en-*.safetensors")
    f.write_bytes(f.read_bytes()[:-64])

    def kernel(src, out, **kwargs):  # stands in for notebook 03's kernel: it reads the cache
        again = RC.extract_cached("pre", _loader(tiny_bert), "en", _extract_items(), max_length=16, progress=False)
        np.testing.assert_array_equal(again["mean"], first["mean"])
        _executed_copy(src, out)

    monkeypatch.setattr(pm, "execute_notebook", kernel)
    monkeypatch.setenv("XLDRIFT_OUT", str(tmp_path / "out"))
    monkeypatch.delenv(runlog.NOTICES_ENV)
    values, nbs = runner.plan("smoke", {}, ["03"])
    assert runner._execute("smoke", values, nbs) == 0
    err = capsys.readouterr().err.splitlines()
    hits = [line for line in err if str(f) in line]
    assert len(hits) == 1 and hits[0].startswith("03_extract.ipynb: damaged cache entry:"), err
    assert "truncated" in hits[0]


# =================================================================== 2. locks
HOLD_ENTRY = """
import sys, time
from pathlib import Path
from xldrift.study import locks
entry = Path(sys.argv[1])
with locks.entry_lock(entry, "fine-tuned checkpoint"):
    Path(sys.argv[2]).write_text("locked")
    time.sleep(float(sys.argv[3]))
    entry.mkdir(parents=True)
    (entry / "done").write_text("made by the first process")
"""


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def test_a_second_process_waits_for_the_entry_and_reuses_it(cache, tmp_path):
    entry = paths.checkpoints_cache() / "xnli-en-s0-abc"
    holder = _python(HOLD_ENTRY, str(entry), str(tmp_path / "locked"), "1.5")
    _wait_for(tmp_path / "locked", holder)
    t0 = time.time()
    with locks.entry_lock(entry, "fine-tuned checkpoint"):
        waited = time.time() - t0
        assert (entry / "done").read_text() == "made by the first process"  # there to be reused
    assert holder.wait(30) == 0 and waited > 0.5
    (line,) = notices(tmp_path)
    assert f"waiting for process {holder.pid}" in line and entry.name in line


LOCK_SCRIPT_TRAIN = """
import sys, time
from pathlib import Path
import pandas as pd
from transformers import TrainerCallback
sys.path.insert(0, sys.argv[2])
from test_reliability import toy
from xldrift.model import finetune as ft
from xldrift.study import io

marks = Path(sys.argv[3])


class Slow(TrainerCallback):
    def on_train_begin(self, args, state, control, **kw):
        (marks / "training").write_text("training")
        t0 = time.time()  # keep the lock until the second process is about to ask for it
        while not (marks / "second-ready").exists() and time.time() - t0 < 120:
            time.sleep(0.05)
        time.sleep(1.5)

train = toy(32, seed=1)
cfg = ft.FinetuneConfig(model=sys.argv[1], task="toy", source="en", seed=0, epochs=1, learning_rate=1e-3,
                        batch_size=16, max_length=16, warmup_ratio=0.0, weight_decay=0.0, pooling="mean",
                        freeze_word_embeddings=False, num_labels=2, data_fingerprint=ft.data_fingerprint(train, None))
if sys.argv[4] == "second":
    (marks / "second-ready").write_text("ready")
ckpt = ft.finetune(cfg, train, None, progress=False, callbacks=[Slow()])
print(io.read_manifest(ckpt)["run_id"])
"""


@pytest.mark.slow  # two fresh interpreters importing transformers
def test_two_processes_needing_one_checkpoint_train_it_once(tiny_bert, cache, tmp_path):
    # before: two runners trained the same checkpoint at once, 9.2 s/step instead of 1.8
    env = {"XLDRIFT_CACHE": str(cache), "XLDRIFT_THREADS": "1", runlog.NOTICES_ENV: str(tmp_path / "notices.log")}
    args = (str(tiny_bert), str(Path(__file__).parent), str(tmp_path))
    first = _python(LOCK_SCRIPT_TRAIN, *args, "first", env=env)
    _wait_for(tmp_path / "training", first, timeout=120)
    second = _python(LOCK_SCRIPT_TRAIN, *args, "second", env=env)
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, err1[-2000:] + err2[-2000:]
    assert out1.split()[-1] == out2.split()[-1], "the second process trained again instead of reusing"
    assert f"waiting for process {first.pid}" in err2
    assert len(list(paths.checkpoints_cache().iterdir())) == 1, "one checkpoint, no temporaries left"


def test_cleanup_never_touches_a_live_process_temporaries(cache):
    # before: _remove_stale_temps deleted another live process's .tmp-<key>.* folder
    from xldrift.model import finetune as ft

    target = paths.checkpoints_cache() / "xnli-en-s0-key"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        mine = target.with_name(f".tmp-{target.name}.{live.pid}.x1y2")
        gone = target.with_name(f".tmp-{target.name}.{dead.pid}.x3y4")
        for d in (mine, gone):
            d.mkdir(parents=True)
        ft._remove_stale_temps(target)
        assert mine.is_dir() and not gone.exists()
    finally:
        live.kill()
        live.wait()
    # temporaries the package makes carry its pid
    with io.atomic_dir(target) as tmp:
        assert locks.temp_owner(tmp.name, target.name) == os.getpid()


HOLD_PROFILE = """
import sys, time
from pathlib import Path
from xldrift.study import locks
with locks.profile_lock("smoke"):
    Path(sys.argv[1]).write_text("locked")
    time.sleep(30)
"""


@pytest.fixture
def out(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XLDRIFT_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("XLDRIFT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "out"


@pytest.fixture
def no_kernel(monkeypatch):
    """Notebooks 'run' by copying the source; the calls are recorded."""
    import papermill as pm

    calls: list[tuple[str, str]] = []

    def fake(src, dst, **kwargs):
        calls.append((Path(src).name, Path(dst).name))
        _executed_copy(src, dst)

    monkeypatch.setattr(pm, "execute_notebook", fake)
    monkeypatch.setattr(runner, "ensure_kernel", lambda: None)
    return calls


def test_a_second_runner_on_the_same_profile_and_output_refuses_at_once(out, no_kernel, capsys):
    # before: no lock; both runners wrote the same .tmp-<nb>.ipynb
    holder = _python(HOLD_PROFILE, str(out.parent / "locked"), env={"XLDRIFT_OUT": str(out)})
    try:
        _wait_for(out.parent / "locked", holder)
        t0 = time.time()
        code = runner.main(["--profile", "smoke", "--only", "01"])
        err = capsys.readouterr().err
        assert code == 2 and time.time() - t0 < 10
        assert f"process {holder.pid}" in err and "XLDRIFT_OUT" in err and err.count("\n") == 1
        assert no_kernel == []
    finally:
        holder.kill()
        holder.wait()
    assert runner.main(["--profile", "smoke", "--only", "01"]) == 0  # free again once the holder is gone
    assert no_kernel == [(f".tmp-{os.getpid()}-src-01_data.ipynb", f".tmp-{os.getpid()}-01_data.ipynb")]


# =================================================================== 3. --check checks all of it
def _read_only_dir(tmp_path: Path) -> Path:
    d = tmp_path / "read-only"
    d.mkdir()
    d.chmod(0o555)
    try:
        (d / "probe").write_text("x")
    except OSError:
        return d
    (d / "probe").unlink()  # root writes anyway: use a folder the kernel refuses to everyone
    for candidate in (Path("/sys/kernel"), Path("/sys")):
        try:
            tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
    pytest.skip("no folder that refuses writes to this user")


CHECK_CASES = {
    # name: (--set items, environment, fragments of the one error line)
    "freeze_k": (["freeze_k=13"], {}, ["freeze_k=13", "12 encoder blocks", "[1, 12]"]),
    "n_eval": (["n_eval=100000"], {}, ["n_eval=100000", "5010 test items"]),
    "n_train": (["n_train=10000"], {}, ["n_train=10000", "expected at most n_train="]),
    "umap_layers": (["umap_layers=[99]"], {}, ["umap_layers=[99]", "valid: 1..12"]),
    "cache_under_a_file": ([], {"XLDRIFT_CACHE": "/etc/hostname/cache"},
                           ["XLDRIFT_CACHE=/etc/hostname/cache", "/etc/hostname is a file"]),
    "out_under_a_file": ([], {"XLDRIFT_OUT": "/etc/hostname/out"},
                         ["XLDRIFT_OUT=/etc/hostname/out", "/etc/hostname is a file"]),
    "read_only_cache": ([], {"XLDRIFT_CACHE": "<read-only>"}, ["cannot write in"]),
}


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
@pytest.mark.parametrize("check", [True, False], ids=["--check", "run"])
def test_check_refuses_what_would_fail_later(case, check, out, no_kernel, monkeypatch, capsys, tmp_path):
    # before: each passed --check with exit 0 and failed minutes later (or never)
    sets, env, fragments = CHECK_CASES[case]
    for k, v in env.items():
        monkeypatch.setenv(k, str(_read_only_dir(tmp_path)) if v == "<read-only>" else v)
    argv = ["--profile", "smoke", *[a for s in sets for a in ("--set", s)]] + (["--check"] if check else [])
    t0 = time.process_time()  # CPU seconds: other jobs on the machine do not count
    code = runner.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and time.process_time() - t0 < 10, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert no_kernel == [] and not out.exists(), "nothing runs, nothing is written"


def test_only_names_the_notebook_to_run_first(out, no_kernel, capsys):
    # before: --only 05 in an empty output folder gave FileNotFoundError: .../languages.csv
    assert runner.main(["--profile", "smoke", "--only", "05", "--check"]) == 2
    err = capsys.readouterr().err
    assert "languages.csv" in err and "run notebook 01 first" in err and err.count("\n") == 1
    # with 01 in the same run, 05's next missing input names 02, and so on
    assert runner.main(["--profile", "smoke", "--only", "01,05", "--check"]) == 2
    assert "accuracy.csv" in capsys.readouterr().err
    # files present, but the checkpoints they list are not in the cache
    res = out / "results" / "smoke"
    res.mkdir(parents=True)
    for name in ("items.csv", "checkpoints.csv"):
        (res / name).write_text("checkpoint\nxnli-en-s0-gone\n")
    assert runner.main(["--profile", "smoke", "--only", "03", "--check"]) == 2
    err = capsys.readouterr().err
    assert "xnli-en-s0-gone" in err and "run notebook 02 first" in err
    assert no_kernel == []


def _child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_check_runs_in_a_fresh_process_in_under_ten_seconds_without_a_traceback(tmp_path):
    # before: XLDRIFT_OUT=/etc/hostname/out gave a raw runner traceback
    # (CPU seconds of the child: on a machine shared with other jobs, wall time measures them too)
    env = {**os.environ, "XLDRIFT_OUT": "/etc/hostname/out", "XLDRIFT_CACHE": str(tmp_path / "cache")}
    cpu = _child_cpu_seconds()
    proc = subprocess.run([sys.executable, str(ROOT / "run_study.py"), "--profile", "smoke", "--set", "freeze_k=3",
                           "--check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and _child_cpu_seconds() - cpu < 10
    assert proc.stderr.startswith("error: XLDRIFT_OUT=/etc/hostname/out") and proc.stderr.count("\n") == 1
    env["XLDRIFT_OUT"] = str(tmp_path / "out")
    cpu = _child_cpu_seconds()
    ok = subprocess.run([sys.executable, str(ROOT / "run_study.py"), "--profile", "smoke", "--check"], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and _child_cpu_seconds() - cpu < 10, ok.stderr
    assert not (tmp_path / "out").exists()


# =================================================================== 4. data errors
def _error(tiny_xnli: Path) -> str:
    with pytest.raises(data.DataError) as err:
        data.load_parallel("xnli", ["en", "de", "sw"], "test")
    return str(err.value)


def test_a_removed_row_is_reported_where_it_was_removed(tiny_xnli):
    # before: a row removed from test-de.tsv at row 100 was reported as "first missing row: 5010"
    en = data.load_split("xnli", "en", "test")
    labels = en["label"].to_numpy()
    row = next(r for r in range(20, 50) if labels[r - 1] != labels[r])  # 1-based row whose successor differs
    f = tiny_xnli / "xnli" / "test-de.tsv"
    lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
    f.write_text("".join(lines[: row - 1] + lines[row:]), encoding="utf-8")
    msg = _error(tiny_xnli)
    assert msg.startswith(str(f)) and f"row {row} " in msg and "removed" in msg, msg


def test_a_bom_is_named_in_its_own_file(tiny_xnli):
    # before: a UTF-8 BOM in test-en.tsv was blamed on the intact test-de.tsv
    f = tiny_xnli / "xnli" / "test-en.tsv"
    f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    msg = _error(tiny_xnli)
    assert msg.startswith(str(f)) and "byte-order mark" in msg, msg


def test_an_empty_file_is_named_as_empty(tiny_xnli):
    # before: an empty test-en.tsv was reported as a problem of test-de.tsv
    f = tiny_xnli / "xnli" / "test-en.tsv"
    f.write_text("")
    msg = _error(tiny_xnli)
    assert msg.startswith(str(f)) and "empty" in msg, msg


def test_windows_line_endings_are_named(tiny_xnli):
    f = tiny_xnli / "xnli" / "test-sw.tsv"
    lines = f.read_text(encoding="utf-8").splitlines()
    f.write_bytes(("\n".join(lines[:4]) + "\n" + "\r\n".join(lines[4:]) + "\r\n").encode())
    msg = _error(tiny_xnli)
    assert msg.startswith(str(f)) and "CRLF" in msg and "line 5" in msg, msg


def test_a_changed_label_blames_the_odd_language_out(tiny_xnli):
    f = tiny_xnli / "xnli" / "test-en.tsv"  # the first language, which used to be the reference
    lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
    premise, hypothesis, label = lines[9].rstrip("\n").split("\t")
    other = next(x for x in data.XNLI_LABELS if x != label)
    lines[9] = f"{premise}\t{hypothesis}\t{other}\n"
    f.write_text("".join(lines), encoding="utf-8")
    msg = _error(tiny_xnli)
    assert msg.startswith(str(f)) and "row 10 differs in its label" in msg, msg


# =================================================================== 5. interrupts and partial runs
def test_ctrl_c_prints_one_line_and_exits_130(out, no_kernel, monkeypatch, capsys):
    import papermill as pm

    def interrupted(src, dst, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pm, "execute_notebook", interrupted)
    assert runner.main(["--profile", "smoke", "--only", "01"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "01_data.ipynb" in err and "resumes" in err and "Traceback" not in err
    assert not list((out / "notebooks" / "executed" / "smoke").glob(".tmp-*"))


@pytest.mark.slow  # starts a real kernel
def test_ctrl_c_on_a_real_run(tmp_path):
    # before: Ctrl-C printed a 40-line KeyboardInterrupt traceback
    env = _env(tmp_path / "out", tmp_path / "cache")
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_study.py"), "--profile", "smoke", "--only", "01"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    executed = tmp_path / "out" / "notebooks" / "executed" / "smoke"
    t0 = time.time()
    while not any(executed.glob(".tmp-*")) and time.time() - t0 < 120:  # the kernel has started
        time.sleep(0.1)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "interrupted while running 01_data.ipynb" in lines[0], err


def test_only_and_interrupted_runs_keep_the_records_of_other_notebooks(out, no_kernel, monkeypatch):
    # before: any --only run, even an interrupted one, rewrote config.json and dropped the other records
    import papermill as pm

    config = out / "results" / "smoke" / "config.json"
    records = {"02": {"seeds": [0]}, "05": {"n_perm": 1000}}
    io.write_json({"profile": "smoke", "notebooks": records}, config)
    assert runner.main(["--profile", "smoke", "--only", "01"]) == 0
    kept = json.loads(config.read_text())
    assert kept["notebooks"] == records and kept["profile"] == "smoke"

    monkeypatch.setattr(pm, "execute_notebook", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert runner.main(["--profile", "smoke", "--only", "01", "--rerun"]) == 130
    assert json.loads(config.read_text())["notebooks"] == records


def _writes(nb: Path) -> set[str]:
    src = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
    return set(re.findall(r'write_(?:csv|json)\([^\n]*?cfg\.results / "([^"]+)"', src))


def test_no_notebook_writes_a_table_another_notebook_writes():
    # before: `--rerun --only 02` removed notebook 06's 18 rows from accuracy.csv (06 added them to 02's file)
    owners: dict[str, list[str]] = {}
    for nb in runner.notebook_paths():
        for name in _writes(nb):
            owners.setdefault(name, []).append(nb.name[:2])
    shared = {name: nbs for name, nbs in owners.items() if len(nbs) > 1}
    assert not shared, f"result files written by more than one notebook: {shared}"
    assert owners["accuracy.csv"] == ["02"] and "intervention.csv" in _writes(runner.notebook_paths()[5])


def test_the_tables_of_reads_and_writes_match_the_notebooks():
    for nb in runner.notebook_paths():
        number = nb.name[:2]
        assert _writes(nb) <= set(checks.MAKES[number]), f"{nb.name} writes files checks.MAKES does not list"
        src = nb.read_text()
        code = "\n".join("".join(c["source"]) for c in json.loads(src)["cells"] if c["cell_type"] == "code")
        for name in set(re.findall(r'"([A-Za-z_0-9]+\.(?:csv|json))"', code)) - {"config.json"}:
            known = name in checks.MAKES[number] or name in checks.NEEDS[number] or (ROOT / "data" / name).is_file()
            assert known, f"{nb.name} uses {name}, which checks.NEEDS/MAKES does not list"
        for name in checks.NEEDS[number]:
            assert f'\\"{name}\\"' in src, f"{nb.name} does not mention {name}"
            assert checks.producer(name) < number, f"{name} is made by a later notebook"
