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
