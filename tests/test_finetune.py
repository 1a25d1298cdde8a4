"""Tests for xldrift.model.finetune and xldrift.model.evaluate on tiny local BERT models."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, BertTokenizerFast, TrainerCallback

from xldrift.model import evaluate as ev
from xldrift.model import finetune as ft
from xldrift.study import io, paths
from xldrift.study.config import StudyConfig

REPO = Path(__file__).resolve().parents[1]
FILLER = list("cdefghijklmnop")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", *FILLER]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("XLDRIFT_THREADS", "1")
    monkeypatch.setenv("XLDRIFT_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _save_tiny_bert(directory: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-block BERT and its WordPiece tokenizer, saved like a Hub model."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    # transformers 5 ignores ``vocab_file=``; ``vocab=`` is the argument that loads the file
    tok = BertTokenizerFast(vocab=str(vocab))
    transformers.set_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=64),
                      add_pooling_layer=False)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return _save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def toy(n: int, seed: int) -> pd.DataFrame:
    """Label 0 when the text holds the token 'a', 1 when it holds 'b'; filler elsewhere."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 9))))
        words.insert(int(rng.integers(0, len(words) + 1)), "ab"[label])
        rows.append({"id": i, "group": i, "text_a": " ".join(words), "text_b": None, "label": label})
    return pd.DataFrame(rows)


TRAIN, VAL = toy(128, seed=1), toy(64, seed=2)


def make_cfg(model_dir: Path, train=TRAIN, val=VAL, **kw) -> ft.FinetuneConfig:
    base = dict(model=str(model_dir), task="toy", source="en", seed=0, epochs=6, learning_rate=3e-3,
                batch_size=16, max_length=32, warmup_ratio=0.1, weight_decay=0.01, pooling="mean",
                freeze_word_embeddings=False, num_labels=2, data_fingerprint=ft.data_fingerprint(train, val))
    base.update(kw)
    return ft.FinetuneConfig(**base)


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return {**load_file(str(ckpt / "encoder" / "model.safetensors")),
            **{f"head.{k}": v for k, v in load_file(str(ckpt / ft.HEAD_FILE)).items()}}


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory) -> Path:
    """One toy checkpoint shared by the read-only tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XLDRIFT_CACHE", str(tmp_path_factory.mktemp("shared-cache")))
        mp.setenv("XLDRIFT_THREADS", "1")
        return ft.finetune(make_cfg(tiny_model), TRAIN, VAL, progress=False)


# ------------------------------------------------------------------ learning
def test_tiny_bert_learns_toy_task(trained):
    hist = ft.history(trained)
    assert list(hist.columns) == ["epoch", "step", "train_loss", "val_accuracy", "lr"]
    losses = hist["train_loss"].dropna().to_numpy()
    # an untrained 2-class head starts near ln 2 = 0.693 (chance)
    assert losses[0] > 0.6
    assert losses[-2:].mean() < losses[0] - 0.15
    tok, model = ft.load_classifier(trained)
    held_out = toy(200, seed=3)
    acc = ev.accuracy(ev.predict(model, tok, held_out, progress=False), held_out["label"])
    assert acc >= 0.8, f"toy accuracy {acc} not well above chance 0.5"
    # the Trainer's last-epoch evaluation and our own predict() agree on the validation set
    val_acc = ev.accuracy(ev.predict(model, tok, VAL, progress=False), VAL["label"])
    assert hist["val_accuracy"].dropna().iloc[-1] == pytest.approx(val_acc)
    assert hist["val_accuracy"].dropna().size == 6  # one evaluation per epoch


def test_manifest_and_layout(trained):
    m = io.read_manifest(trained)
    assert m["steps"] == 6 * math.ceil(len(TRAIN) / 16)
    assert m["parameters"]["trainable"] == m["parameters"]["total"] > 0
    assert m["seconds_per_step"] > 0 and m["config"]["pooling"] == "mean"
    assert m["optimizer"] == "adamw_torch_fused"  # CPU
    for name in ("encoder", "tokenizer", ft.HEAD_FILE, ft.HISTORY_FILE):
        assert (trained / name).exists()
    from xldrift.model.loading import load_encoder

    _, enc = load_encoder(str(trained / "encoder"))
    assert enc.pooler is None
    assert torch.equal(enc.embeddings.word_embeddings.weight,
                       weights(trained)["embeddings.word_embeddings.weight"])


def test_fused_adamw_follows_the_for_loop_trajectory(tiny_model, tmp_path):
    # finetune() asks the Trainer for fused AdamW; on CPU the Trainer's plain "adamw_torch" is the
    # for-loop implementation. Same start, batches and dropout masks: the same weights, to rounding.
    from transformers import Trainer, TrainingArguments

    tok = BertTokenizerFast.from_pretrained(tiny_model)
    batches = [tok(TRAIN["text_a"].tolist()[i:i + 16], padding=True, return_tensors="pt") for i in range(0, 64, 16)]
    labels = [torch.tensor(TRAIN["label"].to_numpy()[i:i + 16]) for i in range(0, 64, 16)]
    start = {n: p.detach().clone() for n, p in _classifier(tiny_model).named_parameters()}
    trained_weights, used = {}, {}
    for optim in ("adamw_torch", ft.optimizer_name("cpu")):
        model = _classifier(tiny_model).train()
        args = TrainingArguments(output_dir=str(tmp_path), optim=optim, use_cpu=True, report_to="none")
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        opt = cls(model.parameters(), **{**kwargs, "lr": 3e-3, "weight_decay": 0.01})
        used[optim] = opt.defaults
        torch.manual_seed(0)
        for batch, y in zip(batches, labels):
            model(**batch, labels=y).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        trained_weights[optim] = {n: p.detach() for n, p in model.named_parameters()}
    assert used["adamw_torch_fused"]["fused"] and not used["adamw_torch"]["fused"]
    assert used["adamw_torch"]["foreach"] in (None, False)  # PyTorch's CPU default: the for loop
    loop, fused = trained_weights["adamw_torch"], trained_weights["adamw_torch_fused"]
    moved = max(float((loop[n] - start[n]).abs().max()) for n in start)
    assert moved > 1e-3  # four steps at lr 3e-3 move the weights well beyond the tolerance below
    assert max(float((loop[n] - fused[n]).abs().max()) for n in start) < 1e-5


def test_optimizer_name_per_device():
    assert ft.optimizer_name("cpu") == ft.optimizer_name("cuda") == "adamw_torch_fused"
    assert ft.optimizer_name("mps") == "adamw_torch"


# ------------------------------------------------------------------ freezing
def _classifier(model_dir: Path, **kw) -> ft.EncoderClassifier:
    from xldrift.model.loading import load_encoder

    _, enc = load_encoder(str(model_dir))
    transformers.set_seed(0)
    return ft.EncoderClassifier(enc, num_labels=2, **kw)


def test_freeze_counts_and_step(tiny_model):
    model = _classifier(tiny_model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen_prefixes = ("encoder.encoder.layer.0.", "encoder.embeddings.")
    expected_frozen = sum(p.numel() for n, p in model.named_parameters() if n.startswith(frozen_prefixes))
    info = ft.freeze(model, layers=[1], embeddings=True)
    assert info["frozen"] == expected_frozen
    assert info["trainable"] == sum(p.numel() for p in model.parameters()) - expected_frozen
    tok = BertTokenizerFast.from_pretrained(tiny_model)
    batch = tok(TRAIN["text_a"].tolist()[:16], padding=True, return_tensors="pt")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model(**batch, labels=torch.tensor(TRAIN["label"].to_numpy()[:16])).loss.backward()
    opt.step()
    for n, p in model.named_parameters():
        if n.startswith(frozen_prefixes):
            assert torch.equal(p, before[n]), n
        else:
            assert not torch.equal(p, before[n]), n


def test_freeze_rejects_invalid_layers(tiny_model):
    model = _classifier(tiny_model)
    for bad in ([0], [3], [1, 5]):
        with pytest.raises(ValueError, match=r"1\.\.2"):
            ft.freeze(model, layers=bad)
    assert all(p.requires_grad for p in model.parameters())


def test_finetune_with_frozen_layers_keeps_them(tiny_model):
    cfg = make_cfg(tiny_model, epochs=1, frozen_layers=(2,), freeze_word_embeddings=True, weight_decay=0.1)
    ckpt = ft.finetune(cfg, TRAIN, VAL, progress=False)
    base, tuned = load_file(str(tiny_model / "model.safetensors")), weights(ckpt)
    for name, value in base.items():
        unchanged = name.startswith("encoder.layer.1.") or name == "embeddings.word_embeddings.weight"
        assert torch.equal(value, tuned[name]) == unchanged, name
    m = io.read_manifest(ckpt)
    frozen = sum(v.numel() for n, v in base.items()
                 if n.startswith("encoder.layer.1.") or n == "embeddings.word_embeddings.weight")
    assert m["parameters"]["total"] - m["parameters"]["trainable"] == frozen


# ------------------------------------------------------------------ config and caching
def test_config_key_and_normalisation(tiny_model):
    cfg = make_cfg(tiny_model)
    assert replace(cfg, frozen_layers=(1,)).key() != cfg.key()
    assert make_cfg(tiny_model, frozen_layers=[2, 1, 2]).key() == make_cfg(tiny_model, frozen_layers=(1, 2)).key()
    assert make_cfg(tiny_model, frozen_layers=(np.int64(1),), seed=np.int64(0)).key() == \
        make_cfg(tiny_model, frozen_layers=(1,)).key()
    assert replace(cfg, seed=1).key() != cfg.key()


def test_from_study_maps_the_study_config(tiny_model, trained):
    params = StudyConfig(model=str(tiny_model), task="xnli", epochs=2, learning_rate=1e-4, batch_size=8,
                         max_length=64, warmup_ratio=0.1, weight_decay=0.01, head_pooling="cls",
                         freeze_word_embeddings=True)
    cfg = ft.FinetuneConfig.from_study(params, source="de", seed=3, frozen_layers=[2, 1], fingerprint="abc")
    assert (cfg.pooling, cfg.num_labels, cfg.frozen_layers, cfg.source, cfg.seed) == ("cls", 3, (1, 2), "de", 3)
    assert (cfg.model, cfg.task, cfg.epochs, cfg.learning_rate, cfg.batch_size, cfg.max_length, cfg.warmup_ratio,
            cfg.weight_decay, cfg.freeze_word_embeddings, cfg.data_fingerprint) == \
        (str(tiny_model), "xnli", 2, 1e-4, 8, 64, 0.1, 0.01, True, "abc")
    assert ft.FinetuneConfig.from_study(replace(params, task="sib200"), source="eng_Latn", seed=0,
                                        fingerprint="x").num_labels == 7
    hp = ft.hyperparameters(params)
    assert hp["learning_rate"] == 1e-4 and "seed" not in hp and "frozen_layers" not in hp
    with pytest.raises(ValueError, match="epochs"):
        ft.FinetuneConfig.from_study(replace(params, epochs=0), source="en", seed=0, fingerprint="x")
    rec = ft.run_record(trained, condition="full")
    assert rec["checkpoint"] == trained.name and rec["frozen_layers"] == "" and rec["steps"] == 48
    assert rec["source"] == "en" and rec["condition"] == "full"


def test_the_study_holds_the_only_defaults_of_what_it_sets():
    """A setting the study chooses has its default in StudyConfig alone; from_study passes it through."""
    fields = {f.name: f for f in dataclasses.fields(ft.FinetuneConfig)}
    study_set = {"model", "task", "source", "seed", "epochs", "learning_rate", "batch_size", "max_length",
                 "warmup_ratio", "weight_decay", "pooling", "freeze_word_embeddings"}
    assert all(fields[n].default is dataclasses.MISSING for n in study_set)
    assert {n for n, f in fields.items() if f.default is not dataclasses.MISSING} == \
        {"max_grad_norm", "dropout", "frozen_layers", "data_fingerprint", "num_labels"}
    study = StudyConfig()
    cfg = ft.FinetuneConfig.from_study(study, source="en", seed=0, fingerprint="x")
    assert (cfg.learning_rate, cfg.epochs, cfg.pooling) == (study.learning_rate, study.epochs, study.head_pooling)
    with pytest.raises(TypeError):
        ft.FinetuneConfig(model="m", task="xnli", source="en", seed=0)  # no second set of defaults to fall back on


@pytest.mark.parametrize("field, value", [("epochs", 0), ("learning_rate", 0.0), ("learning_rate", 2.0),
                                          ("batch_size", 0), ("warmup_ratio", 1.0), ("pooling", "max"),
                                          ("dropout", 1.5), ("frozen_layers", (0,)), ("seed", -1),
                                          ("epochs", 2.5), ("data_fingerprint", "")])
def test_config_rejects_bad_values(tiny_model, field, value):
    with pytest.raises(ValueError, match=field):
        replace(make_cfg(tiny_model), **{field: value}).validate()


def test_bad_input_writes_nothing(tiny_model):
    with pytest.raises(ValueError, match="data_fingerprint"):
        ft.finetune(make_cfg(tiny_model, data_fingerprint="stale"), TRAIN, VAL, progress=False)
    with pytest.raises(ValueError, match="label"):
        bad = TRAIN.assign(label=TRAIN["label"] + 5)
        ft.finetune(make_cfg(tiny_model, train=bad), bad, VAL, progress=False)
    with pytest.raises(ValueError, match=r"1\.\.2"):
        ft.finetune(make_cfg(tiny_model, frozen_layers=(3,)), TRAIN, VAL, progress=False)
    assert not paths.checkpoints_cache().exists() or not any(paths.checkpoints_cache().iterdir())


def test_second_call_reuses_checkpoint(tiny_model, monkeypatch):
    cfg = make_cfg(tiny_model, epochs=1)
    first = ft.finetune(cfg, TRAIN, VAL, progress=False)
    stamp = (first / io.MANIFEST).stat().st_mtime_ns

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained again although the checkpoint was complete")

    monkeypatch.setattr(ft, "_train", must_not_train)
    assert ft.finetune(cfg, TRAIN, VAL, progress=False) == first
    assert (first / io.MANIFEST).stat().st_mtime_ns == stamp
    with pytest.raises(AssertionError, match="trained again"):
        ft.finetune(cfg, TRAIN, VAL, progress=False, force=True)
    assert io.is_complete(first)  # a failed forced rerun leaves the old checkpoint intact


# ------------------------------------------------------------------ determinism and interruption
class _Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise RuntimeError("simulated crash")


def test_interrupted_run_leaves_nothing_and_rerun_matches(tiny_model, trained, tmp_path, monkeypatch):
    cfg = make_cfg(tiny_model)
    monkeypatch.setenv("XLDRIFT_CACHE", str(tmp_path / "other-cache"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        ft.finetune(cfg, TRAIN, VAL, progress=False, callbacks=[_Crash()])
    assert list(paths.checkpoints_cache().iterdir()) == []
    rerun = ft.finetune(cfg, TRAIN, VAL, progress=False)
    assert rerun != trained and rerun.name == trained.name
    a, b = weights(trained), weights(rerun)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    np.testing.assert_allclose(ft.history(trained)["train_loss"], ft.history(rerun)["train_loss"], atol=1e-6)
    (tok_a, model_a), (tok_b, model_b) = ft.load_classifier(trained), ft.load_classifier(rerun)
    la = ev.predict_logits(model_a, tok_a, VAL, progress=False)
    lb = ev.predict_logits(model_b, tok_b, VAL, progress=False)
    np.testing.assert_allclose(la, lb, rtol=0, atol=1e-6)
    # the comparison can fail: another seed gives other weights
    other = ft.finetune(replace(cfg, seed=1, epochs=1), TRAIN, VAL, progress=False)
    assert not torch.equal(weights(other)["head.weight"], a["head.weight"])


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import pandas as pd
    from transformers import TrainerCallback
    from xldrift.model import finetune as ft
    from tests.test_finetune import TRAIN, VAL, make_cfg

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    ft.finetune(make_cfg(sys.argv[1], epochs=2), TRAIN, VAL, progress=False, callbacks=[Kill()])
""")


@pytest.mark.slow  # a fresh interpreter spends ~8 s importing transformers
def test_sigkill_mid_training_then_rerun(tiny_model, tmp_path, monkeypatch):
    env = {**os.environ, "PYTHONPATH": str(REPO), "XLDRIFT_CACHE": str(tmp_path / "killed")}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tiny_model)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    monkeypatch.setenv("XLDRIFT_CACHE", str(tmp_path / "killed"))
    cfg = make_cfg(tiny_model, epochs=2)
    assert not io.is_complete(ft.checkpoint_dir(cfg))
    ckpt = ft.finetune(cfg, TRAIN, VAL, progress=False)
    assert [p.name for p in paths.checkpoints_cache().iterdir()] == [ckpt.name]  # stale temp removed
    monkeypatch.setenv("XLDRIFT_CACHE", str(tmp_path / "clean"))
    clean = ft.finetune(cfg, TRAIN, VAL, progress=False)
    for name, value in weights(clean).items():
        torch.testing.assert_close(weights(ckpt)[name], value, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ prediction and evaluation
def test_predict_independent_of_order_and_batching(tiny_model):
    model = _classifier(tiny_model, pooling="mean")
    tok = BertTokenizerFast.from_pretrained(tiny_model)
    df = toy(50, seed=5)
    sorted_ = ev.predict_logits(model, tok, df, batch_size=8, progress=False)
    unsorted = ev.predict_logits(model, tok, df, batch_size=8, progress=False, sort_by_length=False)
    single = np.concatenate([ev.predict_logits(model, tok, df.iloc[[i]], progress=False) for i in range(len(df))])
    np.testing.assert_allclose(sorted_, unsorted, atol=1e-5)
    np.testing.assert_allclose(sorted_, single, atol=1e-5)
    reversed_ = ev.predict(model, tok, df.iloc[::-1], batch_size=8, progress=False)
    assert np.array_equal(reversed_[::-1], ev.predict(model, tok, df, batch_size=8, progress=False))
    assert sorted_.shape == (50, 2) and np.isfinite(sorted_).all()


def test_cls_pooling_reads_first_token(tiny_model):
    model = _classifier(tiny_model, pooling="cls").eval()
    hidden = torch.randn(2, 5, 32)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.equal(model.pool(hidden, mask), hidden[:, 0])
    model.pooling = "mean"
    np.testing.assert_allclose(model.pool(hidden, mask)[0], hidden[0, :3].mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="cls, mean"):
        ft.EncoderClassifier(model.encoder, 2, pooling="max")


def test_evaluate_cached_and_languages(trained, monkeypatch):
    frames = {"xx": toy(30, seed=7), "yy": toy(20, seed=8)}
    calls = []
    real = ev.load_classifier
    monkeypatch.setattr(ev, "load_classifier", lambda d: calls.append(d) or real(d))
    out = ev.evaluate_languages(trained, frames, batch_size=8, max_length=32, progress=False)
    assert len(calls) == 1
    for lang, df in frames.items():
        table = out[lang]
        assert list(table.columns) == ["id", "label", "pred", "correct"]
        assert table["id"].tolist() == df["id"].tolist()
        assert (table["correct"] == (table["pred"] == table["label"])).all()
    files = sorted(p.name for p in (paths.evaluations_cache() / trained.name).glob("*.csv"))
    assert [f.split("-")[0] for f in files] == ["xx", "yy"]
    def no_reload(ckpt_dir):
        raise RuntimeError("reloaded a cached evaluation")

    monkeypatch.setattr(ev, "load_classifier", no_reload)
    again = ev.evaluate_cached(trained, "xx", frames["xx"], batch_size=8, max_length=32, progress=False)
    pd.testing.assert_frame_equal(again, out["xx"])
    with pytest.raises(RuntimeError, match="reloaded"):  # other items are a different cache entry
        ev.evaluate_cached(trained, "xx", frames["xx"].iloc[:10], batch_size=8, max_length=32, progress=False)


def test_evaluate_rejects_incomplete_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not a complete"):
        ev.evaluate_cached(tmp_path, "xx", toy(4, seed=0), batch_size=8, max_length=32)


# ------------------------------------------------------------------ statistics
def test_accuracy_hand_made():
    assert ev.accuracy([0, 1, 2, 1], [0, 2, 2, 1]) == 0.75
    assert ev.accuracy(np.array([2, 2]), np.array([0, 1])) == 0.0
    with pytest.raises(ValueError, match="equal length"):
        ev.accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="zero items"):
        ev.accuracy([], [])
