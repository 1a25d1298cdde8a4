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


def test_valid_profiles_pass_validation(capsys, out):
    for profile in ("smoke", "default", "full", "sib200", "sib200-lite"):
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


def test_source_hash_changes_with_the_profile(tmp_path):
    assert runner.source_hash("smoke") != runner.source_hash("default")
    assert runner.source_hash("smoke") == runner.source_hash("smoke")


# ---------------------------------------------------------------- skipping up-to-date notebooks
def _copy(out, profile: str, name: str, nb_params: dict, outputs: dict | None, inputs: dict | None) -> None:
    import json

    rec = {"source_hash": runner.source_hash(profile), "parameters": nb_params}
    if outputs is not None:
        rec["outputs"] = outputs
    if inputs is not None:
        rec["inputs"] = inputs
    d = out / "notebooks" / "executed" / profile
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(json.dumps({"cells": [], "metadata": {"xldrift": rec}}))


def _write(out, rel: str, text: str) -> str:
    f = out / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)
    return runner._digest(rel)


def _smoke_plan(out):
    values, nbs = runner.plan("smoke", {}, None)
    per_nb = {nb.name: {k: v for k, v in values.items() if k in runner.notebook_parameters(nb)} for nb in nbs}
    return values, nbs, per_nb


def test_up_to_date_copies_are_recognised_and_every_change_makes_them_stale(out):
    values, nbs, per = _smoke_plan(out)
    first, second = nbs[0], nbs[1]
    a = _write(out, "results/smoke/items.csv", "x\n1\n")
    _copy(out, "smoke", first.name, per[first.name], {"results/smoke/items.csv": a}, {})
    b = _write(out, "figures/smoke/loss.png", "png")
    _copy(out, "smoke", second.name, per[second.name], {"figures/smoke/loss.png": b}, {"results/smoke/items.csv": a})
    assert runner.staleness("smoke", first, per[first.name]) is None
    assert runner.staleness("smoke", second, per[second.name]) is None

    assert runner.staleness("smoke", first, {**per[first.name], "seeds": [7]}) == "parameters changed"
    (out / "results/smoke/items.csv").write_text("x\n2\n")  # an upstream output changed
    assert runner.staleness("smoke", first, per[first.name]) == "results/smoke/items.csv changed"
    assert runner.staleness("smoke", second, per[second.name]) == "results/smoke/items.csv changed"
    (out / "results/smoke/items.csv").write_text("x\n1\n")
    (out / "figures/smoke/loss.png").unlink()
    assert runner.staleness("smoke", second, per[second.name]) == "figures/smoke/loss.png missing"
    _copy(out, "smoke", second.name, per[second.name], None, None)  # made before files were recorded
    assert runner.staleness("smoke", second, per[second.name]) == "no record of its files"
    assert runner.staleness("smoke", nbs[2], per[nbs[2].name]) == "no executed copy"
    # a copy whose source hash is not the current one
    import json

    f = out / "notebooks/executed/smoke" / first.name
    nb = json.loads(f.read_text())
    nb["metadata"]["xldrift"]["source_hash"] = "0" * 16
    f.write_text(json.dumps(nb))
    assert runner.staleness("smoke", first, per[first.name]) == "sources changed"


def test_execute_skips_up_to_date_notebooks_and_runs_everything_after_a_stale_one(out, monkeypatch, capsys):
    values, nbs, per = _smoke_plan(out)
    for i, nb in enumerate(nbs):
        rel = f"results/smoke/t{i}.csv"
        digest = _write(out, rel, f"{i}\n")
        ups = {f"results/smoke/t{j}.csv": runner._digest(f"results/smoke/t{j}.csv") for j in range(i)}
        _copy(out, "smoke", nb.name, per[nb.name], {rel: digest}, ups)
    ran: list[list[str]] = []
    monkeypatch.setattr(runner, "_execute", lambda profile, v, todo: ran.append([n.name for n in todo]) or 0)

    assert runner.execute("smoke", values, nbs) == 0
    assert ran == [], "nothing changed, nothing runs"
    assert capsys.readouterr().out.count("up to date") == len(nbs)

    assert runner.execute("smoke", values, nbs, rerun=True) == 0
    assert ran[-1] == [nb.name for nb in nbs]

    (out / "results/smoke/t2.csv").write_text("changed\n")  # notebook 03's own output
    assert runner.execute("smoke", values, nbs) == 0
    assert ran[-1] == [nb.name for nb in nbs[2:]], "03 and everything after it"
