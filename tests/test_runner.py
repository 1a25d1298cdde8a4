"""The runner validates everything before running anything."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from xldrift.study import config as params, runner
from xldrift.study.config import StudyConfig


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

    from xldrift.data import tasks as data

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


# ---------------------------------------------------------------- one source of parameters
def test_the_notebooks_declare_only_the_profile_and_the_overrides():
    """Defaults live in StudyConfig alone: a parameters cell holds the profile name and an empty overrides dict."""
    for nb in runner.notebook_paths():
        assert runner.notebook_parameters(nb) == {"profile": "lab", "overrides": {}}, nb.name


def test_every_parameter_has_a_default_a_valid_range_and_help():
    assert params.SCHEMA == StudyConfig.specs() and len(params.SCHEMA) == 40
    for name, spec in params.SCHEMA.items():
        assert spec.help, f"{name} has no help line"
        if name != "profile":
            assert spec.valid, f"{name} does not say what is valid"
    defaults = StudyConfig.defaults()
    assert StudyConfig.validated({}) == StudyConfig() and StudyConfig().overrides() == {}
    assert (defaults["learning_rate"], defaults["epochs"], defaults["profile"]) == (1e-4, 2, "lab")
    # list defaults are fresh per instance: a frozen config shares no mutable state with another
    assert StudyConfig().seeds is not StudyConfig().seeds


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": 0}, "epochs=0 is out of range; expected an integer in [1, 100]"),
    ({"epoch": 2}, "unknown parameter 'epoch'. Did you mean 'epochs'?"),
    ({"learning_rate": "fast"}, "learning_rate='fast' has type str; expected a float in (0, 1), e.g. 2e-5"),
    ({"poolings": ["cls", "max"]}, "poolings=['cls', 'max'] is out of range; expected a non-empty subset of"),
    ({"freeze_distance": "lexical"}, "freeze_distance='lexical' is out of range; expected one of ('syntactic'"),
    ({"target_languages": ["en", "xx"]}, "target_languages: unknown xnli language(s) 'xx'; valid: ar, bg"),
])
def test_invalid_values_are_rejected_naming_the_key_the_value_and_what_is_valid(values, message):
    with pytest.raises(params.ParamError) as e:
        StudyConfig.validated(values)
    assert message in str(e.value)


def test_a_profile_overrides_the_defaults_and_set_overrides_the_profile():
    smoke = runner.load_profile("smoke")
    cfg, _ = runner.plan("smoke", {"epochs": 3}, None, check_model=False)
    assert cfg.profile == "smoke" and cfg.n_train == smoke["n_train"] == 96 and cfg.epochs == 3
    assert cfg.alpha == StudyConfig().alpha  # not in the profile: the default
    assert cfg.learning_rate == 1e-4 and isinstance(cfg.learning_rate, float)
    assert cfg.overrides() == {k: v for k, v in {**smoke, "epochs": 3}.items() if v != StudyConfig.defaults()[k]}
    for profile in runner.available_profiles():
        assert set(runner.load_profile(profile)) <= set(params.SCHEMA) - {"profile"}, profile
    with pytest.raises(params.ParamError, match="unknown parameter 'profile'"):
        runner.plan("smoke", {"profile": "default"}, None, check_model=False)


def test_a_notebook_rebuilds_the_runners_config_without_validating_again(monkeypatch, tmp_path):
    """What papermill injects (profile, overrides) gives back the validated config, as it is, in the kernel."""
    import utils as U

    monkeypatch.setenv("XLDRIFT_OUT", str(tmp_path))
    monkeypatch.setenv("XLDRIFT_RUNNER", "1")
    for profile in ("smoke", "grid", "sib200"):
        cfg, _ = runner.plan(profile, {}, None, check_model=False)
        injected = runner.papermill_parameters(cfg)
        assert set(injected) == {"profile", "overrides"} and "profile" not in injected["overrides"]
        assert StudyConfig(**{**injected["overrides"], "profile": injected["profile"]}) == cfg

    def refuse(*a, **k):
        raise AssertionError("validated a second time, or read the source notebook")

    monkeypatch.setattr(StudyConfig, "validated", classmethod(refuse))
    monkeypatch.setattr(params, "validate", refuse)
    monkeypatch.setattr(params, "notebook_parameters", refuse)
    monkeypatch.setattr(U, "_notebook_file", refuse)
    got = U.setup("04", "smoke", {"n_train": 96, "epochs": 1})
    assert got == StudyConfig(profile="smoke", n_train=96, epochs=1)
    recorded = json.loads((tmp_path / "results" / "smoke" / "config.json").read_text())["notebooks"]["04"]
    assert sorted(recorded) == sorted(params.NOTEBOOK_FIELDS["04"])


def test_an_interactive_run_validates_its_overrides_once_and_keeps_to_scratch_profiles(monkeypatch, tmp_path):
    import utils as U

    monkeypatch.setenv("XLDRIFT_OUT", str(tmp_path))
    monkeypatch.delenv("XLDRIFT_RUNNER", raising=False)
    calls = []
    real = StudyConfig.validated.__func__
    monkeypatch.setattr(StudyConfig, "validated", classmethod(lambda cls, v: calls.append(v) or real(cls, v)))
    cfg = U.setup("02", "lab", {"epochs": 1, "warmup_ratio": 0})
    assert calls == [{"epochs": 1, "warmup_ratio": 0, "profile": "lab"}]
    assert (cfg.epochs, cfg.warmup_ratio, cfg.results) == (1, 0.0, tmp_path / "results" / "lab")
    assert isinstance(cfg.warmup_ratio, float)  # YAML and hand-typed integers are widened, as the runner does
    with pytest.raises(params.ParamError, match="epochs=0 is out of range"):
        U.setup("02", "lab", {"epochs": 0})
    with pytest.raises(params.ParamError, match="profile 'smoke' is published"):
        U.setup("02", "smoke", {})
    table = U.config_table(cfg, "02")
    assert list(table["parameter"]) == list(params.NOTEBOOK_FIELDS["02"])
    by_name = table.set_index("parameter")
    assert by_name.loc["epochs", "set by"] == "profile" and by_name.loc["batch_size", "set by"] == "default"
    assert by_name.loc["epochs", "meaning"] == params.SCHEMA["epochs"].help


def test_each_notebook_lists_every_field_it_reads():
    """Staleness compares the fields NOTEBOOK_FIELDS lists: a notebook reading another one would escape it."""
    derived = {"targets", "results", "figures", "intervention_language"}
    assert sorted(params.NOTEBOOK_FIELDS) == [nb.name[:2] for nb in runner.notebook_paths()]
    assert set().union(*params.NOTEBOOK_FIELDS.values()) == set(params.SCHEMA)
    for nb in runner.notebook_paths():
        code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        read = set(re.findall(r"\bcfg\.(\w+)", code)) | set(re.findall(r"getattr\(cfg, (\w+)\)", code))
        listed = set(params.NOTEBOOK_FIELDS[nb.name[:2]])
        assert read - derived <= listed | {"k"}, f"{nb.name} reads {sorted(read - derived - listed)} unlisted"
        if "getattr(cfg, k)" in code:  # notebook 06 compares a few fields by name
            names = re.search(r'for k in \(([^)]*)\)\s+if hparams', code)
            assert names and set(re.findall(r'"(\w+)"', names.group(1))) <= listed
        if "FinetuneConfig.from_study(cfg" in code or "hyperparameters(cfg)" in code:
            assert {"model", "task", "epochs", "learning_rate", "batch_size", "max_length", "warmup_ratio",
                    "weight_decay", "head_pooling", "freeze_word_embeddings"} <= listed, nb.name
        if "intervention_language()" in code:
            assert {"task", "source_languages", "intervention_source"} <= listed, nb.name


def test_profiles_may_name_their_notebooks():
    assert runner.profile_notebooks("setups") == ["01", "02"]
    assert runner.profile_notebooks("default") == [nb.name[:2] for nb in runner.notebook_paths()]
    values, nbs = runner.plan("setups", {}, None, check_model=False)
    assert [nb.name[:2] for nb in nbs] == ["01", "02"] and values.compare_setups is True
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

    from xldrift.study import provenance

    rec = provenance.record(nb, nb_params, modules, [str(out / r) for r in reads], written, "smoke")
    d = out / "notebooks" / "executed" / "smoke"
    d.mkdir(parents=True, exist_ok=True)
    (d / nb.name).write_text(json.dumps({"cells": [], "metadata": {"xldrift": {"commit": "abc1234def", **rec}}}))


def test_a_copy_is_stale_for_its_own_reasons_only(out, monkeypatch):
    from xldrift.study import provenance

    values, nbs, per = _smoke_plan()
    first, fifth, sixth = nbs[0], nbs[4], nbs[5]
    _write(out, "results/smoke/items.csv", "x\n1\n")
    _stamp(out, first, per[first.name], ["utils", "xldrift.data.tasks"], [], ["results/smoke/items.csv"])
    _write(out, "results/smoke/correlations.csv", "r\n0.5\n")
    _write(out, "results/smoke/claims.csv", "c\na\n")
    _stamp(out, fifth, per[fifth.name], ["utils", "xldrift.analysis.stats"], ["results/smoke/items.csv"],
           ["results/smoke/correlations.csv", "results/smoke/claims.csv"])
    _stamp(out, sixth, per[sixth.name], ["utils", "xldrift.analysis.intervention"], ["results/smoke/correlations.csv"], [])
    assert [runner.staleness("smoke", nb, per[nb.name]) for nb in (first, fifth, sixth)] == [None, None, None]
    assert runner.staleness("smoke", nbs[2], per[nbs[2].name]) == "no executed copy"

    # parameters: only the notebook that declares the changed one
    assert runner.staleness("smoke", first, {**per[first.name], "n_eval": 7}) == "parameters changed: n_eval"
    # what a notebook records is the fields it uses: a change to another field leaves its copy current
    assert runner.nb_parameters(first, replace(values, alpha=0.01)) == per[first.name]
    assert runner.staleness("smoke", first, runner.nb_parameters(first, replace(values, alpha=0.01))) is None
    assert runner.staleness("smoke", fifth, runner.nb_parameters(fifth, replace(values, alpha=0.01))) == \
        "parameters changed: alpha"
    assert runner.staleness("smoke", first, runner.nb_parameters(first, replace(values, n_eval=7))) == \
        "parameters changed: n_eval"

    # code: a module the notebook imported, named by its file; a module it never imported changes nothing
    real = provenance.module_fingerprint
    monkeypatch.setattr(provenance, "module_fingerprint", lambda m: "edited" if m == "xldrift.analysis.stats" else real(m))
    assert runner.staleness("smoke", fifth, per[fifth.name]) == "code changed: xldrift/analysis/stats.py"
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


def test_a_copy_that_imported_a_module_since_moved_says_so(out):
    """A copy made before the package was grouped by stage recorded names like ``xldrift.stats``."""
    from xldrift.study import paths, provenance

    _, nbs, per = _smoke_plan()
    fifth = nbs[4]
    _stamp(out, fifth, per[fifth.name], ["utils", "xldrift.analysis.stats"], [], [])
    assert runner.staleness("smoke", fifth, per[fifth.name]) is None
    executed = out / "notebooks" / "executed" / "smoke" / fifth.name
    nb = json.loads(executed.read_text())
    modules = nb["metadata"]["xldrift"]["modules"]
    modules["xldrift.stats"] = modules.pop("xldrift.analysis.stats")
    executed.write_text(json.dumps(nb))
    assert runner.staleness("smoke", fifth, per[fifth.name]) == \
        "module xldrift.stats no longer exists (moved or removed since the run)"
    modules.update({"xldrift.io": "0", "xldrift.paths": "0", "xldrift.claims": "0", "xldrift.analysis.claims": "0"})
    executed.write_text(json.dumps(nb))
    assert runner.staleness("smoke", fifth, per[fifth.name]) == (
        "modules xldrift.stats, xldrift.io, xldrift.paths and 1 more no longer exist (moved or removed since the run); "
        "code changed: xldrift/analysis/claims.py")
    assert provenance.module_file("xldrift.stats") is None
    assert provenance.module_file("xldrift.analysis.stats") == paths.ROOT / "xldrift" / "analysis" / "stats.py"


def test_a_docstring_edit_keeps_the_fingerprint_and_a_code_edit_does_not(tmp_path, monkeypatch):
    from xldrift.study import paths, provenance

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
    from xldrift.study import provenance

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
