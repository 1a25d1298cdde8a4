"""Tests for xldrift.representations.extract on tiny random BERTs built locally."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

from xldrift.representations import extract as X
from xldrift.model import fingerprint as FP
from xldrift.representations import cache as RC

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "small", "red", "ran", "home", "is", "not"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = list(dict.fromkeys(SPECIAL + WORDS + LETTERS + [f"##{c}" for c in LETTERS]))  # "a" is a word and a letter


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    vocab = tmp_path_factory.mktemp("tok") / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    assert tok.vocab_size == len(VOCAB) and tok.unk_token_id not in tok("the zebra")["input_ids"]
    return tok


def tiny_model(seed: int = 0, layers: int = 2) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    return BertModel(config, add_pooling_layer=False).eval()


def items(n: int, seed: int = 0, pairs: bool = True) -> pd.DataFrame:
    """Random sentences of very different lengths, so batches need padding."""
    rng = np.random.default_rng(seed)
    def sentence() -> str:
        return " ".join(rng.choice(WORDS + ["zebra", "quux"], size=int(rng.integers(1, 25))))
    return pd.DataFrame({"id": np.arange(n) + 100, "group": np.arange(n), "text_a": [sentence() for _ in range(n)],
                         "text_b": [sentence() for _ in range(n)] if pairs else [None] * n, "label": 0})


def loader(model, tokenizer, calls: list | None = None):
    def load():
        if calls is not None:
            calls.append(1)
        return tokenizer, model
    return load


def refusing_loader():
    raise AssertionError("the model was loaded although everything was cached")


def fail_after(model: BertModel, k: int) -> BertModel:
    """A copy of the model whose forward raises from the (k+1)-th call on."""
    model = copy.deepcopy(model)
    count = [0]

    def hook(*_):
        count[0] += 1
        if count[0] > k:
            raise KeyboardInterrupt("simulated interruption")
    model.register_forward_pre_hook(hook)
    return model


def count_forwards(model: BertModel) -> list:
    count: list = []
    model.register_forward_pre_hook(lambda *_: count.append(1))
    return count


# ----------------------------------------------------------------- tokenising
def test_encode_inputs_pairs_singles_and_mixed(tokenizer):
    df = items(6)
    df.loc[[1, 4], "text_b"] = None
    enc = X.encode_inputs(tokenizer, df, max_length=512)
    sep = tokenizer.sep_token_id
    for i, row in df.iterrows():
        ids, types = enc["input_ids"][i], enc["token_type_ids"][i]
        if row.text_b is None:
            assert ids.count(sep) == 1 and set(types) == {0}
            assert ids == tokenizer(row.text_a)["input_ids"]
        else:
            assert ids.count(sep) == 2 and types[-1] == 1
            assert ids == tokenizer(row.text_a, row.text_b)["input_ids"]


def test_encode_inputs_truncates(tokenizer):
    enc = X.encode_inputs(tokenizer, items(20), max_length=12)
    assert max(len(ids) for ids in enc["input_ids"]) == 12


# ----------------------------------------------------------------- extraction
def test_shapes_and_dtypes(tokenizer):
    model, df = tiny_model(layers=3), items(11)
    out = X.extract(model, tokenizer, df, batch_size=4, progress=False)
    assert set(out) == {"cls", "mean"}
    for a in out.values():
        assert a.shape == (4, 11, 32) and a.dtype == np.float32 and np.isfinite(a).all()
    half = X.extract(model, tokenizer, df, poolings=["mean"], batch_size=4, progress=False, dtype=np.float16)
    assert set(half) == {"mean"} and half["mean"].dtype == np.float16
    np.testing.assert_allclose(half["mean"], out["mean"], rtol=1e-3, atol=1e-3)


def test_same_states_whatever_the_padding_sorting_or_batch_size(tokenizer):
    model, df = tiny_model(), items(23)
    reference = X.extract(model, tokenizer, df, batch_size=1, sort_by_length=False, progress=False)  # no padding
    for batch_size, sort in [(4, True), (5, False), (23, False), (64, True)]:
        got = X.extract(model, tokenizer, df, batch_size=batch_size, sort_by_length=sort, progress=False)
        for p in ("cls", "mean"):
            np.testing.assert_allclose(got[p], reference[p], atol=1e-5, rtol=0)


def test_pooling_matches_a_direct_per_item_computation(tokenizer):
    model, df = tiny_model(seed=3), items(9, seed=1)
    out = X.extract(model, tokenizer, df, batch_size=4, progress=False)
    for i, row in df.iterrows():
        enc = tokenizer(row.text_a, row.text_b, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states
            embeddings = model.embeddings(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"])
        assert len(hidden) == 3
        for layer, h in enumerate(hidden):
            np.testing.assert_allclose(out["mean"][layer, i], h[0].mean(0).numpy(), atol=1e-5)
            np.testing.assert_allclose(out["cls"][layer, i], h[0, 0].numpy(), atol=1e-5)
        # layer 0 is the embeddings output, the last layer the encoder's output
        np.testing.assert_allclose(out["mean"][0, i], embeddings[0].mean(0).numpy(), atol=1e-5)
        np.testing.assert_allclose(out["cls"][-1, i], model(**enc).last_hidden_state[0, 0].detach().numpy(),
                                   atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(poolings=("cls", "max")), "unknown pooling"),
    (dict(batch_size=0), "batch_size"),
    (dict(max_length=1), "max_length"),
    (dict(max_length=200), "exceeds the model's 128 positions"),
    (dict(dtype=np.float64), "storage dtype"),
])
def test_bad_arguments_raise(tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        X.extract(tiny_model(), tokenizer, items(3), progress=False, **kwargs)


def test_bad_items_raise(tokenizer):
    model = tiny_model()
    with pytest.raises(ValueError, match="no rows"):
        X.extract(model, tokenizer, items(3).iloc[:0], progress=False)
    with pytest.raises(ValueError, match="lacks column"):
        X.extract(model, tokenizer, items(3).drop(columns="text_a"), progress=False)
    bad = items(3)
    bad.loc[2, "text_a"] = ""
    with pytest.raises(ValueError, match="row 2"):
        X.extract(model, tokenizer, bad, progress=False)
    dup = items(3)
    dup["id"] = [1, 2, 1]
    with pytest.raises(ValueError, match="unique"):
        X.extract(model, tokenizer, dup, progress=False)
    odd = items(3)
    odd["text_b"] = ["fine", 5, None]
    with pytest.raises(ValueError, match="text_b must be a non-empty string or None; row 1"):
        X.extract(model, tokenizer, odd, progress=False)


def test_cache_paths_are_safe_and_distinct(cache):
    df = items(3)
    with pytest.raises(ValueError, match="lang must be"):
        RC.cache_path("pre", "../en", df)
    with pytest.raises(ValueError, match="state must be"):
        RC.cache_path("", "en", df)
    a, b = RC.cache_path("org/model", "en", df), RC.cache_path("org_model", "en", df)
    assert a.parent != b.parent and a.parent.parent == b.parent.parent == cache
    assert RC.cache_path("pre", "en", df) != RC.cache_path("pre", "en", df, poolings=["cls"])


# ----------------------------------------------------------------- weights
def test_assert_weights_differ():
    pre = tiny_model()
    with pytest.raises(ValueError, match="identical weights"):
        FP.assert_weights_differ(pre, copy.deepcopy(pre))
    post = copy.deepcopy(pre)
    with torch.no_grad():
        post.encoder.layer[1].output.dense.weight[3, 5] += 0.25
    assert FP.assert_weights_differ(pre, post) == pytest.approx(0.25, abs=1e-6)
    with pytest.raises(ValueError, match="identical"):
        FP.assert_weights_differ(pre, post, atol=0.3)
    with pytest.raises(ValueError, match="architecture"):
        FP.assert_weights_differ(pre, tiny_model(layers=3))
    # a task model is compared through its encoder; its head and pooler are ignored
    task = BertForSequenceClassification(pre.config)
    task.bert.load_state_dict(pre.state_dict(), strict=False)
    with pytest.raises(ValueError, match="identical"):
        FP.assert_weights_differ(pre, task)
    assert FP.weights_fingerprint(pre) == FP.weights_fingerprint(task) != FP.weights_fingerprint(post)


# ----------------------------------------------------------------- cache
@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XLDRIFT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "representations"


def test_cache_hit_never_loads_the_model(tokenizer, cache):
    model, df, calls = tiny_model(), items(15), []
    first = RC.extract_cached("pre", loader(model, tokenizer, calls), "en", df, batch_size=4, progress=False)
    assert calls == [1]
    second = RC.extract_cached("pre", refusing_loader, "en", df, batch_size=8, progress=False)
    for p in ("cls", "mean"):
        np.testing.assert_array_equal(first[p], second[p])
    direct = X.extract(model, tokenizer, df, batch_size=4, progress=False)
    np.testing.assert_array_equal(first["mean"], direct["mean"])
    files = list(cache.rglob("*.safetensors"))
    assert len(files) == 1 and files[0].parent.name == "pre" and files[0].name.startswith("en-")
    arrays, meta = RC.load_representations(files[0])
    assert meta["state"] == "pre" and meta["n_items"] == 15 and meta["shape"]["cls"] == [3, 15, 32]
    sidecar = files[0].with_name(files[0].name + ".sha256")  # its recorded size and SHA-256
    assert RC.disk_usage() == RC.disk_usage("pre") == files[0].stat().st_size + sidecar.stat().st_size
    assert files[0].stat().st_size > 3 * 15 * 32 * 4 * 2
    assert RC.disk_usage("post") == 0
    # anything that changes the content changes the key: other items, length or dtype
    for kwargs, frame in [({}, items(15, seed=9)), (dict(max_length=16), df), (dict(dtype=np.float16), df)]:
        with pytest.raises(AssertionError, match="was loaded"):
            RC.extract_cached("pre", refusing_loader, "en", frame, progress=False, **kwargs)


def test_interrupted_language_leaves_nothing_that_looks_finished(tokenizer, cache):
    model, df = tiny_model(), items(12)
    with pytest.raises(KeyboardInterrupt):
        RC.extract_cached("pre", loader(fail_after(model, 2), tokenizer), "en", df, batch_size=4, progress=False)
    assert not list(cache.rglob("*.safetensors"))
    with pytest.raises(AssertionError, match="was loaded"):
        RC.extract_cached("pre", refusing_loader, "en", df, progress=False)


def test_resume_after_interruption_gives_identical_arrays(tokenizer, cache, tmp_path, monkeypatch):
    model, df = tiny_model(), items(40)
    kw = dict(batch_size=4, chunk_size=8, chunk_min_items=10, progress=False)  # 5 chunks of 2 batches
    with pytest.raises(KeyboardInterrupt):
        RC.extract_cached("pre", loader(fail_after(model, 5), tokenizer), "en", df, **kw)
    chunks = sorted(cache.rglob("*.chunks/*.safetensors"))
    assert [c.name for c in chunks] == ["0000000-0000008.safetensors", "0000008-0000016.safetensors"]
    assert not list(cache.glob("*/*.safetensors"))  # no finished file yet
    resumed_model = copy.deepcopy(model)
    forwards = count_forwards(resumed_model)
    resumed = RC.extract_cached("pre", loader(resumed_model, tokenizer), "en", df, **kw)
    assert len(forwards) == 6  # only the three missing chunks were computed
    assert not list(cache.rglob("*.chunks"))  # merged and cleaned up
    monkeypatch.setenv("XLDRIFT_CACHE", str(tmp_path / "other"))
    whole = RC.extract_cached("pre", loader(model, tokenizer), "en", df, **kw)
    for p in ("cls", "mean"):
        np.testing.assert_array_equal(resumed[p], whole[p])


def test_chunks_from_other_weights_are_not_reused(tokenizer, cache):
    df, kw = items(20), dict(batch_size=4, chunk_size=8, chunk_min_items=10, progress=False)
    with pytest.raises(KeyboardInterrupt):
        RC.extract_cached("post", loader(fail_after(tiny_model(seed=1), 2), tokenizer), "en", df, **kw)
    other = tiny_model(seed=2)
    forwards = count_forwards(other)
    got = RC.extract_cached("post", loader(other, tokenizer), "en", df, **kw)
    assert len(forwards) == 5  # all three chunks (2 + 2 + 1 batches) recomputed with the new weights
    np.testing.assert_allclose(got["mean"], X.extract(tiny_model(seed=2), tokenizer, df, progress=False)["mean"],
                               atol=1e-5)


def test_state_reused_for_other_weights_raises(tokenizer, cache):
    RC.extract_cached("ckpt", loader(tiny_model(seed=1), tokenizer), "en", items(5), progress=False)
    with pytest.raises(ValueError, match="other weights"):
        RC.extract_cached("ckpt", loader(tiny_model(seed=2), tokenizer), "de", items(5), progress=False)
    assert len(RC.state_fingerprints("ckpt")) == 1


def test_extract_languages_loads_once(tokenizer, cache, caplog):
    model, calls = tiny_model(), []
    data = {"en": items(7, seed=1), "de": items(9, seed=2), "sw": items(4, seed=3, pairs=False)}
    with caplog.at_level("INFO", logger="xldrift.representations.cache"):
        out = RC.extract_languages("pre", loader(model, tokenizer, calls), data, batch_size=4, progress=False)
    assert calls == [1] and "items/s" in caplog.text
    assert {k: v["cls"].shape for k, v in out.items()} == {"en": (3, 7, 32), "de": (3, 9, 32), "sw": (3, 4, 32)}
    again = RC.extract_languages("pre", refusing_loader, data, progress=False)
    np.testing.assert_array_equal(again["de"]["mean"], out["de"]["mean"])
    with pytest.raises(ValueError, match="items of 'xx'"):
        RC.extract_languages("pre", refusing_loader, {**data, "xx": items(2).drop(columns="id")}, progress=False)


SCRIPT = """
import sys, time, torch, pandas as pd
from transformers import BertModel, BertTokenizerFast
from xldrift.representations import cache as RC
torch.set_num_threads(1)
model = BertModel.from_pretrained(sys.argv[1]).eval()
tok = BertTokenizerFast.from_pretrained(sys.argv[1])
model.register_forward_pre_hook(lambda *_: time.sleep(0.05))  # time for the parent to kill us mid-way
RC.extract_cached("pre", lambda: (tok, model), "en", pd.read_pickle(sys.argv[2]), batch_size=4, chunk_size=8,
                 chunk_min_items=10, progress=False)
"""


def test_sigkill_mid_extraction_then_rerun(tokenizer, cache, tmp_path, monkeypatch):
    model_dir, df = tmp_path / "model", items(64)
    tiny_model().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    df.to_pickle(tmp_path / "items.pkl")
    (tmp_path / "run.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(X.__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(model_dir), str(tmp_path / "items.pkl")],
                            env=env)
    deadline = time.time() + 60
    while not list(cache.rglob("*.chunks/*.safetensors")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(list(cache.rglob("*.chunks/*.safetensors"))) < 8  # killed mid-language
    assert not list(cache.glob("*/*.safetensors"))
    model = BertModel.from_pretrained(model_dir).eval()
    kw = dict(batch_size=4, chunk_size=8, chunk_min_items=10, progress=False)
    resumed = RC.extract_cached("pre", loader(model, tokenizer), "en", df, **kw)
    assert not list(cache.rglob("*.chunks"))
    monkeypatch.setenv("XLDRIFT_CACHE", str(tmp_path / "other"))
    whole = RC.extract_cached("pre", loader(model, tokenizer), "en", df, **kw)
    for p in ("cls", "mean"):
        np.testing.assert_array_equal(resumed[p], whole[p])
