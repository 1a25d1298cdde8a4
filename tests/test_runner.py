"""The runner validates everything before running anything."""

from __future__ import annotations

import pytest

from xldrift import params, runner


@pytest.fixture
def out(tmp_path, monkeypatch):
    monkeypatch.setenv("XLDRIFT_OUT", str(tmp_path / "out"))
    return tmp_path / "out"


def _run(capsys, *argv):
    code = runner.main(list(argv) + ["--check"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--profile", "nosuch"], "unknown profile 'nosuch'; available: default"),
        (["--profile", "smoke", "--set", "epoch=2"], "unknown parameter 'epoch'; did you mean 'epochs'?"),
        (["--profile", "smoke", "--set", "epochs=two"], "epochs='two' has type str"),
        (["--profile", "smoke", "--set", "epochs=0"], "epochs=0 is out of range; expected an integer in [1, 100]"),
        (["--profile", "smoke", "--set", "n_eval=-5"], "n_eval=-5 is out of range"),
        (["--profile", "smoke", "--set", "learning_rate=3"], "learning_rate=3.0 is out of range"),
        (["--profile", "smoke", "--set", "seeds=[]"], "seeds=[] is out of range"),
        (["--profile", "smoke", "--set", "seeds=[1, 1]"], "seeds=[1, 1] is out of range"),
        (["--profile", "smoke", "--set", "force=yes please"], "force='yes please' has type str"),
        (["--profile", "smoke", "--set", "target_languages=[en, xx]"], "unknown xnli language(s) 'xx'; valid: ar, bg"),
        (["--profile", "smoke", "--set", "source_languages=[fr]"], "must also be in target_languages"),
        (["--profile", "smoke", "--set", "metrics=[cka]"], "metrics=['cka'] is out of range"),
        (["--profile", "smoke", "--only", "09"], "--only: unknown notebook(s) ['09']"),
        (["--profile", "smoke", "--set", "noequals"], "--set expects key=value"),
        (["--profile", "smoke", "--set", "model=/no/such/model"], "/no/such/model"),
    ],
)
def test_bad_input_exits_2_with_one_clear_message_and_writes_nothing(capsys, out, argv, message):
    code, err = _run(capsys, *argv)
    assert code == 2
    assert message in err, err
    assert err.count("error:") == 1
    assert not out.exists()


def test_missing_data_folder(capsys, out, monkeypatch, tmp_path):
    monkeypatch.setenv("XLDRIFT_DATA", str(tmp_path / "nowhere"))
    code, err = _run(capsys, "--profile", "smoke")
    assert code == 2 and "XLDRIFT_DATA" in err and not out.exists()


def test_an_altered_data_file_stops_check_naming_it_and_both_digests(capsys, out, monkeypatch, tmp_path):
    import shutil

    from xldrift import data

    monkeypatch.delenv("XLDRIFT_DATA", raising=False)
    root = tmp_path / "data"
    shutil.copytree(data.SHIPPED / "xnli", root / "xnli")
    entries = {rel: d for rel, d in data.read_manifest().items() if rel.startswith("xnli/")}
    (root / data.MANIFEST.name).write_text("".join(f"{d}  {rel}\n" for rel, d in entries.items()))
    f = root / "xnli" / "test-de.tsv.gz"
    blob = bytearray(f.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    f.write_bytes(bytes(blob))
    monkeypatch.setattr(data, "SHIPPED", root)
    data.verify_manifest.cache_clear()
    try:
        code, err = _run(capsys, "--profile", "smoke")
    finally:
        data.verify_manifest.cache_clear()
    assert code == 2 and err.count("error:") == 1, err
    assert f"data/xnli/test-de.tsv.gz has been altered: SHA-256 expected {entries['xnli/test-de.tsv.gz']}, found " in err
    assert not out.exists()


def test_valid_profiles_pass_validation(capsys, out):
    for profile in ("smoke", "default", "setups", "full", "sib200", "sib200-lite"):
        assert runner.main(["--profile", profile, "--check"]) == 0, capsys.readouterr().err
    assert not out.exists()


def test_every_notebook_parameter_is_in_the_schema_and_defaults_agree():
    seen: dict[str, object] = {}
    for nb in runner.notebook_paths():
        for k, v in runner.notebook_parameters(nb).items():
            assert k in params.SCHEMA, f"{nb.name}: {k} not in params.SCHEMA"
            params.check_value(k, params.coerce(k, v))
            if k in seen:
                assert seen[k] == v, f"{nb.name}: default of {k} differs from another notebook"
            seen[k] = v


def test_profile_keys_are_declared_by_some_notebook():
    declared = {k for nb in runner.notebook_paths() for k in runner.notebook_parameters(nb)}
    for profile in runner.available_profiles():
        assert set(runner.load_profile(profile)) <= declared, profile


def test_profiles_may_name_their_notebooks():
    assert runner.profile_notebooks("setups") == ["01", "02"]
    assert runner.profile_notebooks("default") == [nb.name[:2] for nb in runner.notebook_paths()]
    values, nbs = runner.plan("setups", {}, None, check_model=False)
    assert [nb.name[:2] for nb in nbs] == ["01", "02"] and values["compare_setups"] is True
    with pytest.raises(params.ParamError, match="runs notebooks 01, 02 only"):
        runner.plan("setups", {}, ["05"], check_model=False)


# ---------------------------------------------------------------- staleness, per notebook
def _write(out, rel: str, text: str) -> str:
    f = out / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)
    return runner._digest(rel)


def _smoke_plan():
    values, nbs = runner.plan("smoke", {}, None, check_model=False)
    return values, nbs, {nb.name: runner.nb_parameters(nb, values) for nb in nbs}


def _stamp(out, nb, nb_params, modules, reads, written) -> None:
    """An executed copy of ``nb`` whose record says it imported ``modules``, read ``reads`` and wrote ``written``."""
    import json

    from xldrift import provenance

    rec = provenance.record(nb, nb_params, modules, [str(out / r) for r in reads], written, "smoke")
    d = out / "notebooks" / "executed" / "smoke"
    d.mkdir(parents=True, exist_ok=True)
    (d / nb.name).write_text(json.dumps({"cells": [], "metadata": {"xldrift": {"commit": "abc1234def", **rec}}}))


def test_a_copy_is_stale_for_its_own_reasons_only(out, monkeypatch):
    from xldrift import provenance

    values, nbs, per = _smoke_plan()
    first, fifth, sixth = nbs[0], nbs[4], nbs[5]
    _write(out, "results/smoke/items.csv", "x\n1\n")
    _stamp(out, first, per[first.name], ["utils", "xldrift.data"], [], ["results/smoke/items.csv"])
    _write(out, "results/smoke/correlations.csv", "r\n0.5\n")
    _write(out, "results/smoke/claims.csv", "c\na\n")
    _stamp(out, fifth, per[fifth.name], ["utils", "xldrift.stats"], ["results/smoke/items.csv"],
           ["results/smoke/correlations.csv", "results/smoke/claims.csv"])
    _stamp(out, sixth, per[sixth.name], ["utils", "xldrift.intervention"], ["results/smoke/correlations.csv"], [])
    assert [runner.staleness("smoke", nb, per[nb.name]) for nb in (first, fifth, sixth)] == [None, None, None]
    assert runner.staleness("smoke", nbs[2], per[nbs[2].name]) == "no executed copy"

    # parameters: only the notebook that declares the changed one
    assert runner.staleness("smoke", first, {**per[first.name], "n_eval": 7}) == "parameters changed: n_eval"

    # code: a module the notebook imported, named by its file; a module it never imported changes nothing
    real = provenance.module_fingerprint
    monkeypatch.setattr(provenance, "module_fingerprint", lambda m: "edited" if m == "xldrift.stats" else real(m))
    assert runner.staleness("smoke", fifth, per[fifth.name]) == "code changed: xldrift/stats.py"
    assert runner.staleness("smoke", first, per[first.name]) is None
    assert runner.staleness("smoke", sixth, per[sixth.name]) is None
    monkeypatch.setattr(provenance, "module_fingerprint", real)

    # the notebook's own source: 05 changed re-runs 05, not 06
    real_nb = provenance.notebook_fingerprint
    monkeypatch.setattr(provenance, "notebook_fingerprint",
                        lambda p: "edited" if p.name == fifth.name else real_nb(p))
    assert runner.staleness("smoke", fifth, per[fifth.name]) == f"notebooks/{fifth.name} changed"
    assert runner.staleness("smoke", sixth, per[sixth.name]) is None
    monkeypatch.setattr(provenance, "notebook_fingerprint", real_nb)

    # files: an input that changed, an output edited or removed since the run
    _write(out, "results/smoke/correlations.csv", "r\n0.6\n")
    assert runner.staleness("smoke", sixth, per[sixth.name]) == "input results/smoke/correlations.csv changed"
    assert runner.staleness("smoke", fifth, per[fifth.name]) == "output results/smoke/correlations.csv changed since the run"
    (out / "results/smoke/claims.csv").unlink()
    _write(out, "results/smoke/correlations.csv", "r\n0.5\n")
    assert runner.staleness("smoke", fifth, per[fifth.name]) == "output results/smoke/claims.csv missing"
    assert runner.staleness("smoke", sixth, per[sixth.name]) is None  # 06 never read claims.csv


def test_a_docstring_edit_keeps_the_fingerprint_and_a_code_edit_does_not(tmp_path, monkeypatch):
    from xldrift import paths, provenance

    pkg = tmp_path / "xldrift"
    pkg.mkdir()
    (pkg / "toy.py").write_text('"""Old words."""\n\ndef f(x):\n    """Old."""\n    return x + 1  # why\n')
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    before = provenance.module_fingerprint("xldrift.toy")
    (pkg / "toy.py").write_text('"""New words, longer."""\n\n\ndef f(x):\n    """New."""\n    return x + 1\n')
    assert provenance.module_fingerprint("xldrift.toy") == before
    (pkg / "toy.py").write_text('"""New words."""\n\ndef f(x):\n    return x + 2\n')
    assert provenance.module_fingerprint("xldrift.toy") != before
    (pkg / "toy.py").unlink()
    assert provenance.module_fingerprint("xldrift.toy") is None


def test_code_text_drops_prose_and_keeps_code():
    from xldrift import provenance

    src = ('"""Module."""\n\nimport os  # why\n\n\ndef f(x):\n    """Doc,\n    two lines."""\n'
           '    s = "# kept: inside a string"\n    return x + 1  # comment\n\n\ndef g():\n    """Only a docstring."""\n')
    assert provenance.code_text(src).splitlines() == [
        "import os", "def f(x):", '    s = "# kept: inside a string"', "    return x + 1", "def g():",
        '    """Only a docstring."""']  # a body of one docstring stays: removing it would leave no body


def test_copies_from_the_earlier_runner_are_reported_stale_with_their_commit(out):
    import json

    values, nbs, per = _smoke_plan()
    d = out / "notebooks" / "executed" / "smoke"
    d.mkdir(parents=True)
    (d / nbs[0].name).write_text(json.dumps({"cells": [], "metadata": {"xldrift": {
        "source_hash": "0" * 16, "commit": "bd27a4a84fea54186963fd5f223ff8d6a7cf950b+dirty"}}}))
    assert runner.staleness("smoke", nbs[0], per[nbs[0].name]) == \
        "recorded before per-notebook tracking (ran at bd27a4a+dirty)"
    rows = runner.status(["smoke"])
    assert [(r["notebook"], r["state"], r["commit"]) for r in rows[:2]] == [("01", "stale", "bd27a4a+dirty"),
                                                                           ("02", "stale", "unknown")]
    assert rows[1]["reason"] == "no executed copy"


def test_execute_judges_each_notebook_when_its_turn_comes(out, monkeypatch, capsys):
    """05 re-runs and rewrites its outputs with the same bytes: 06, which reads them, stays current."""
    values, nbs, per = _smoke_plan()
    for i, nb in enumerate(nbs):
        _write(out, f"results/smoke/t{i}.csv", f"{i}\n")
        _stamp(out, nb, per[nb.name], ["utils"], [f"results/smoke/t{i - 1}.csv"] if i else [], [f"results/smoke/t{i}.csv"])
    ran: list[str] = []
    new_bytes: dict[str, str] = {}

    infos: list[dict] = []

    def fake_execute(profile, v, todo, run_info=None):
        infos.append(run_info)
        for nb in todo:
            ran.append(nb.name)
            i = nbs.index(nb)
            _write(out, f"results/smoke/t{i}.csv", new_bytes.get(nb.name, f"{i}\n"))
            _stamp(out, nb, per[nb.name], ["utils"], [f"results/smoke/t{i - 1}.csv"] if i else [],
                   [f"results/smoke/t{i}.csv"])
        return 0

    monkeypatch.setattr(runner, "_execute", fake_execute)
    assert runner.execute("smoke", values, nbs) == 0
    assert ran == [] and f"all {len(nbs)} notebooks are current (made at commit abc1234)" in capsys.readouterr().out

    (out / "results/smoke/t3.csv").write_text("edited by hand\n")  # 04's output: 04 re-runs (same bytes), 05 not
    assert runner.execute("smoke", values, nbs) == 0
    assert ran == [nbs[3].name]
    printed = capsys.readouterr().out
    assert "04_drift.ipynb: to run (output results/smoke/t3.csv changed since the run)" in printed
    assert "05_correlation.ipynb: current, skipped" in printed

    # 02's output edited: 02 re-runs and, as if its code had changed, writes new bytes; 03 reads them and
    # re-runs, writing the bytes it wrote before, so 04 onwards stay current
    (out / "results/smoke/t1.csv").write_text("edited\n")
    new_bytes[nbs[1].name] = "new\n"
    ran.clear()
    assert runner.execute("smoke", values, nbs) == 0
    assert ran == [nbs[1].name, nbs[2].name]
    assert "03_extract.ipynb: to run (input results/smoke/t1.csv changed)" in capsys.readouterr().out

    ran.clear()
    infos.clear()
    assert runner.execute("smoke", values, nbs, rerun=True) == 0
    assert ran == [nb.name for nb in nbs]
    # one run, one record: every notebook of it carries the same commit, start time and cache state
    assert len(infos) == len(nbs) and all(i is infos[0] for i in infos) and {"commit", "started", "cold_cache"} <= set(infos[0])
