"""Atomic writes and the keep-if-close rule for result tables."""

from __future__ import annotations

import pandas as pd

from xldrift.study import io


def test_write_csv_keeps_a_file_that_differs_only_in_float_noise(tmp_path):
    path = tmp_path / "t.csv"
    df = pd.DataFrame({"x": ["a", "b"], "r": [-0.1607621265129444, 0.5], "n": [14, 14]})
    io.write_csv(df, path)
    before = path.read_bytes()
    noisy = df.assign(r=df["r"] * (1 + 3e-16))
    import os

    os.utime(path, ns=(1, 1))
    assert io.write_csv(noisy, path, keep_if_close=1e-12) is False
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns != 1  # rewritten with its own bytes: it counts as written by this run
    # a real change is written, and so is noise without the option
    assert io.write_csv(df.assign(r=[-0.2, 0.5]), path, keep_if_close=1e-12) is True
    assert pd.read_csv(path)["r"].tolist() == [-0.2, 0.5]
    io.write_csv(noisy, path)
    assert path.read_bytes() != before


def test_write_csv_rewrites_when_text_or_shape_changes(tmp_path):
    path = tmp_path / "t.csv"
    df = pd.DataFrame({"x": ["a", "b"], "r": [0.1, 0.2]})
    io.write_csv(df, path)
    io.write_csv(df.assign(x=["a", "c"]), path, keep_if_close=1e-12)
    assert pd.read_csv(path)["x"].tolist() == ["a", "c"]
    io.write_csv(pd.concat([df, df]), path, keep_if_close=1e-12)
    assert len(pd.read_csv(path)) == 4


def test_savefig_keeps_an_existing_png_only_when_asked(tmp_path):
    import types

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import utils as U

    cfg = types.SimpleNamespace(figures=tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    U.savefig(fig, cfg, "line")
    first = (tmp_path / "line.png").read_bytes()
    ax.plot([0, 1], [1, 0])
    U.savefig(fig, cfg, "line", keep_existing=True)
    assert (tmp_path / "line.png").read_bytes() == first
    U.savefig(fig, cfg, "line")
    assert (tmp_path / "line.png").read_bytes() != first
    plt.close(fig)
