"""Token lengths and tokenizer fertility per language.

Fertility is the number of subword tokens per word (Rust et al. 2021, "How
Good is Your Tokenizer?", ACL). For scripts written without spaces between
words (Chinese, Japanese, Thai, Lao, Khmer, Burmese, Tibetan) a
whitespace word count is meaningless, so tokens per character is reported
for every language and tokens per word is left empty for those scripts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NO_SPACE_SCRIPTS = {"Hani", "Hans", "Hant", "Jpan", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"}


def pair_lengths(tokenizer, df: pd.DataFrame, max_length: int | None = None) -> np.ndarray:
    """Token count of each item as the model sees it (pair for XNLI), shape (n_items,).

    Counts include special tokens; with ``max_length`` the count is the
    truncated one (what the model really reads).
    """
    b = None if df["text_b"].isna().all() else df["text_b"].tolist()
    enc = tokenizer(df["text_a"].tolist(), b, truncation=max_length is not None,
                    max_length=max_length, add_special_tokens=True)
    return np.array([len(x) for x in enc["input_ids"]])


def fertility(tokenizer, texts: list[str], script: str) -> dict[str, float]:
    """Subword tokens per word and per character over ``texts`` (no special tokens)."""
    n_tok = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    n_chars = sum(len(t.replace(" ", "")) for t in texts)
    n_words = sum(len(t.split()) for t in texts)
    return {
        "tokens_per_word": np.nan if script in NO_SPACE_SCRIPTS else n_tok / max(n_words, 1),
        "tokens_per_char": n_tok / max(n_chars, 1),
        "unk_rate": _unk_rate(tokenizer, texts),
    }


def _unk_rate(tokenizer, texts: list[str]) -> float:
    unk = tokenizer.unk_token_id
    ids = [i for seq in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in seq]
    return float(np.mean(np.array(ids) == unk)) if ids and unk is not None else 0.0


def token_table(tokenizer, frames: dict[str, pd.DataFrame], scripts: dict[str, str], max_length: int) -> pd.DataFrame:
    """Per language: length statistics of the items and fertility of their texts."""
    rows = []
    for lang, df in frames.items():
        lengths = pair_lengths(tokenizer, df)
        texts = df["text_a"].tolist() + ([] if df["text_b"].isna().all() else df["text_b"].tolist())
        rows.append({
            "language": lang,
            "n_items": len(df),
            "median_tokens": float(np.median(lengths)),
            "p95_tokens": float(np.percentile(lengths, 95)),
            "truncated_share": float(np.mean(lengths > max_length)),
            **fertility(tokenizer, texts, scripts.get(lang, "")),
        })
    return pd.DataFrame(rows)
