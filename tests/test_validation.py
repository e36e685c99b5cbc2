"""Bad input is one line, ``error: ...``, exit 2, before any data is loaded and with nothing written.

The found cases of issue 15 (items 3, 4, 5) are a table; then hypothesis throws generated bad values at
every setting field (top level, [baseline], [finetune], [prune]), every hyperparameter of every method
and the CLI options. Everything runs ``suite.cli.commands.main`` in-process, with ``load_data`` replaced by a
function that fails the test: validation must finish before a dataset is touched.
"""

import contextlib
import errno
import io
import json
import math
import tempfile
import tomllib
from pathlib import Path
from unittest import mock

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from methods import registry
from suite.cli.commands import main

TINY = Path(__file__).parent / "data" / "tiny-fmnist.toml"
BASE = tomllib.loads(TINY.read_text())
TRIED = {"n": 0}  # bad inputs thrown at the CLI, printed at the end of the module (pytest -s)


def _reached_data(*a, **k):
    raise AssertionError("bad input reached load_data: it must be refused before any data is loaded")


def cli(argv: list[str], cwd: Path) -> tuple[int, str]:
    """``suite ARGV`` in-process: (exit code, stderr). Any exception escaping is a test failure."""
    TRIED["n"] += 1
    err = io.StringIO()
    with (
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
        mock.patch("suite.running.runner.load_data", _reached_data),
        contextlib.chdir(cwd),
    ):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def assert_refused(argv_for, fragment: str | None = None, runs_dir: bool = True) -> str:
    """Run ``argv_for(tmpdir)`` (plus a --runs-dir that must stay absent) and check the contract;
    returns the error line."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        runs = d / "runs"
        argv = argv_for(d) + (["--runs-dir", str(runs)] if runs_dir else [])
        code, err = cli(argv, d)
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert "Traceback" not in err
        assert not runs.exists(), f"{argv} wrote {list(runs.rglob('*'))}"
        if fragment is not None:
            assert fragment in lines[0], lines[0]
        return lines[0]


def setting_file(d: Path, table: dict) -> str:
    path = d / "bad.toml"
    path.write_text(tomli_w.dumps(table))
    return str(path)


def with_field(section: str | None, key: str, value) -> dict:
    table = json.loads(json.dumps(BASE))  # a deep copy
    (table[section] if section else table)[key] = value
    return table


def run_setting(table: dict, *extra):
    return lambda d: ["run", "--setting", setting_file(d, table), "--dry-run", *extra]


# ---------------------------------------------------------------------------- the found cases
@pytest.mark.parametrize(
    "section,key,value,says",
    [
        ("finetune", "batch_size", 0, "[finetune] batch_size = 0: must be an integer >= 1"),
        ("finetune", "lr", {"x": 0.01}, "[finetune] lr = {'x': 0.01}: epoch 'x' is not an integer >= 0"),
        ("finetune", "lr", {"0": "fast"}, "[finetune] lr = {'0': 'fast'}: lr 'fast' of epoch 0 is not a finite number"),
        (None, "ratios", 0.5, "ratios = 0.5: must be a string"),
        ("finetune", "epochs", "ten", "[finetune] epochs = 'ten': must be an integer >= 1"),
        ("finetune", "epochs", -2, "[finetune] epochs = -2: must be an integer >= 1"),
        ("finetune", "momentum", "x", "[finetune] momentum = 'x': must be a number in [0, 1)"),
        ("finetune", "lr", {"0": -0.01}, "lr -0.01 of epoch 0 is not a finite number > 0"),
        (None, "train_limit", -5, "train_limit = -5: must be an integer >= 1"),
        (None, "train_limit", 0, "train_limit = 0: must be an integer >= 1"),
        (None, "test_limit", 0, "test_limit = 0: must be an integer >= 1"),
        (None, "test_limit", "all", "test_limit = 'all': must be an integer >= 1"),
        (None, "name", "../../escaped-from-out", "name = '../../escaped-from-out': must be"),
        # its runs would share the built-in's folder and page
        (None, "name", "fmnist-cnn4", "name = 'fmnist-cnn4' is a built-in setting's: give the file a name of its own"),
        (None, "root", 5, "root = 5: must be a folder path"),  # was a TypeError where a path met it
        (None, "name", ["x"], "name = ['x']: must be"),  # not a name to look up among the built-ins
    ],
)
@pytest.mark.parametrize("dry", [True, False])
def test_found_setting_values_are_refused_naming_file_field_value(section, key, value, says, dry):
    table = with_field(section, key, value)
    line = assert_refused(lambda d: ["run", "--setting", setting_file(d, table)] + (["--dry-run"] if dry else []), says)
    assert "setting file " in line and "bad.toml" in line


def test_a_file_whose_own_ratios_do_not_fit_runs_at_the_ratios_the_command_line_gives(tmp_path):
    """--ratios replaces a file's ratios before the file is checked: a user whose file names
    ratios its model cannot take (a ResNet stage list on a 4-conv net) runs it at ratios it can."""
    from argparse import Namespace

    from suite.cli.options import setting_of

    path = setting_file(tmp_path, with_field(None, "ratios", "[0,0.5,0.5,0.5,0]"))
    line = assert_refused(lambda d: ["run", "--setting", path, "--dry-run"], "ratios '[0,0.5,0.5,0.5,0]'")
    assert "bad.toml" in line
    s = setting_of(Namespace(setting=path, ratios="0.3"))
    assert s.ratios == "0.3" and s.layer_ratios(s.build_model()) == {
        name: 0.3 for name in setting_of(Namespace(setting=str(TINY), ratios="0.3")).layer_ratios(s.build_model())
    }
    # the override itself is still checked
    assert_refused(lambda d: ["run", "--setting", path, "--ratios", "1.5", "--dry-run"], "ratios '1.5'")


@pytest.mark.parametrize(
    "text",
    [
        '{"greg1": {"penalty_ceiling": NaN}}',
        '{"greg1": {"penalty_ceiling": Infinity}}',
        '{"greg1": {"penalty_increment": -Infinity}}',
    ],
)
@pytest.mark.parametrize("dry", [True, False])
def test_nan_and_infinite_hparams_are_refused(text, dry):
    def argv(d):
        (d / "hp.json").write_text(text)
        return ["run", "--setting", str(TINY), "--methods", "greg1", "--hparams", str(d / "hp.json")] + (
            ["--dry-run"] if dry else []
        )

    line = assert_refused(argv, "must be a finite number")
    assert "hp.json" in line and "penalty_" in line


def test_device_tpu_is_refused_before_torch_sees_it():
    assert_refused(
        lambda d: ["run", "--setting", str(TINY), "--device", "tpu", "--dry-run"],
        "--device 'tpu': must be auto, cpu, cuda or cuda:N",
    )


def test_leaderboard_out_a_file_or_read_only(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "out.html").write_text("mine")
    assert_refused(
        lambda d: ["leaderboard", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out.html")],
        "is a file, not a folder: pass --out DIR",
        runs_dir=False,
    )
    assert (tmp_path / "out.html").read_text() == "mine"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if _writable(ro):  # root ignores modes: make the probe write fail as a read-only filesystem would
            erofs = OSError(errno.EROFS, "Read-only file system")
            with mock.patch("pathlib.Path.write_text", side_effect=erofs):
                assert_refused(
                    lambda d: ["leaderboard", "--runs-dir", str(tmp_path / "runs"), "--out", str(ro / "lb")],
                    "(Read-only file system): pass --out DIR",
                    runs_dir=False,
                )
            return
        assert_refused(
            lambda d: ["leaderboard", "--runs-dir", str(tmp_path / "runs"), "--out", str(ro / "lb")],
            "is not writable",
            runs_dir=False,
        )
        assert not (ro / "lb").exists()
    finally:
        ro.chmod(0o700)


def _writable(folder: Path) -> bool:
    try:
        (folder / ".w").write_text("")
        (folder / ".w").unlink()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------- generated bad values
FUZZ = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
junk_float = st.floats(allow_nan=True, allow_infinity=True)
text = st.text(max_size=12)
letters = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10)
containers = st.one_of(st.lists(st.integers(), max_size=2), st.dictionaries(letters, st.integers(), max_size=2))
not_int = st.one_of(text, junk_float, st.booleans(), containers)
not_str = st.one_of(st.integers(), junk_float, st.booleans(), containers)
not_number = st.one_of(text, st.booleans(), containers)


def int_below(low):
    return st.one_of(st.integers(max_value=low - 1), not_int)


def float_where_bad(ok):
    return st.one_of(junk_float.filter(lambda x: not ok(x)), not_number)


positive = float_where_bad(lambda x: math.isfinite(x) and x > 0)
momentum = float_where_bad(lambda x: math.isfinite(x) and 0 <= x < 1)
non_negative = float_where_bad(lambda x: math.isfinite(x) and x >= 0)
digits = st.integers(min_value=0, max_value=500).map(str)
lr_table = st.one_of(
    junk_float,
    text,
    st.booleans(),
    st.lists(junk_float, max_size=2),
    st.just({}),
    st.builds(lambda k: {"0": 0.1, k: 0.01}, text.filter(lambda k: not (k.strip().isascii() and k.strip().isdigit()))),
    st.builds(lambda v: {"0": v}, positive),
    st.builds(lambda v: {"0": 0.1, "5": v}, positive),
    st.dictionaries(st.integers(1, 500).map(str), st.just(0.1), min_size=1, max_size=3),  # no epoch 0
)
hostile_name = st.one_of(
    st.sampled_from(
        ["", ".", "..", ".hidden", "-x", "a/b", "../../up", "javascript:alert(1)", 'x"y', "a b", "</script>", "x" * 101]
    ),
    st.builds(lambda a, c, b: a + c + b, text, st.sampled_from(list("/\\\n\t\x00 <>\"':?*")), text),
    not_str,
)

RECIPE_FIELDS = {
    "epochs": int_below(1),
    "batch_size": int_below(1),
    "lr": lr_table,
    "momentum": momentum,
    "weight_decay": non_negative,
}
PRUNE_FIELDS = {
    "lr": positive,
    "batch_size": int_below(1),
    "momentum": momentum,
    "weight_decay": non_negative,
    "max_iters": int_below(1),
}
TOP_FIELDS = {
    "name": hostile_name,
    "dataset": st.one_of(letters.filter(lambda s: s not in ("cifar", "imagenet")), not_str),
    "model": st.one_of(letters.map(lambda s: "zz" + s), not_str),
    "ratios": st.one_of(letters, not_str, st.floats(0, 0.99)),
    "skip": st.one_of(letters, not_str, st.just("[1.0]")),  # cnn4 is a plain net: no skip list
    "targets": st.one_of(text, st.lists(not_str, min_size=1, max_size=2), st.lists(letters, min_size=1, max_size=2)),
    "reduced": st.one_of(st.integers(), text, junk_float),
    "description": not_str,
    "val_size": int_below(1),
    "train_limit": int_below(1),
    "test_limit": int_below(1),
    "method_overrides": st.one_of(
        not_number.filter(lambda v: not isinstance(v, dict)),
        junk_float,
        st.dictionaries(letters.map(lambda s: "zz" + s), st.just({}), min_size=1, max_size=1),
        st.builds(lambda v: {"greg*": {"penalty_increment": v}}, positive),
        st.builds(lambda k: {"greg*": {"zz" + k: 1}}, letters),
    ),
    "baseline": st.one_of(not_str, text),
    "finetune": st.one_of(not_str, text),
    "prune": st.one_of(not_str, text),
}


@pytest.mark.parametrize("key", sorted(TOP_FIELDS))
@FUZZ
@given(data=st.data())
def test_fuzz_setting_top_level(key, data):
    value = data.draw(TOP_FIELDS[key])
    if key in ("baseline", "finetune", "prune") and isinstance(value, dict) and not value:
        value = {"zz": 1}  # an empty [prune] table is valid (all defaults)
    line = assert_refused(run_setting(with_field(None, key, value)))
    assert "bad.toml" in line


@pytest.mark.parametrize(
    "section,key",
    [(s, k) for s in ("baseline", "finetune") for k in RECIPE_FIELDS] + [("prune", k) for k in PRUNE_FIELDS],
)
@FUZZ
@given(data=st.data())
def test_fuzz_setting_recipes(section, key, data):
    value = data.draw((PRUNE_FIELDS if section == "prune" else RECIPE_FIELDS)[key])
    line = assert_refused(run_setting(with_field(section, key, value)))
    assert f"[{section}] " in line and "bad.toml" in line


@pytest.mark.parametrize("section", [None, "baseline", "finetune", "prune"])
@FUZZ
@given(extra=letters.map(lambda s: "zz" + s))
def test_fuzz_unknown_fields(section, extra):
    assert_refused(run_setting(with_field(section, extra, 1)), extra)


@pytest.mark.parametrize(
    "section,key",
    [(None, k) for k in ("name", "dataset", "model", "ratios", "baseline", "finetune")]
    + [(s, k) for s in ("baseline", "finetune") for k in ("epochs", "batch_size", "lr")],
)
def test_missing_required_fields(section, key):
    table = json.loads(json.dumps(BASE))
    del (table[section] if section else table)[key]
    assert_refused(run_setting(table), "missing fields" if section is None else "required: epochs, batch_size, lr")


HPARAM_FIELDS = [(m, f, type(v)) for m in registry.names() for f, v in registry.get(m).Hparams().to_dict().items()]


def bad_hparam(kind):
    wrong_type = st.one_of(text, st.booleans(), st.none(), containers)
    if kind is float:
        return st.one_of(wrong_type, st.sampled_from([math.nan, math.inf, -math.inf]))
    return st.one_of(wrong_type, st.floats(allow_nan=True, allow_infinity=True))


@pytest.mark.parametrize("method,field,kind", HPARAM_FIELDS, ids=[f"{m}.{f}" for m, f, _ in HPARAM_FIELDS])
@FUZZ
@given(data=st.data())
def test_fuzz_every_hparam(method, field, kind, data):
    value = data.draw(bad_hparam(kind))

    def argv(d):
        (d / "hp.json").write_text(json.dumps({method: {field: value}}))
        return ["run", "--setting", str(TINY), "--methods", method, "--hparams", str(d / "hp.json")]

    line = assert_refused(argv)
    assert "hp.json" in line and field in line


# every CLI option that takes a value, with generated bad values (argparse's own errors included)
seed_text = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**31)).map(str) | letters
CLI_OPTIONS = {
    ("run", "--seeds"): st.one_of(st.integers(max_value=0), st.integers(min_value=1001)).map(str) | letters,
    ("run", "--seed-list"): st.one_of(
        seed_text, st.lists(seed_text, min_size=1, max_size=3).map(",".join), st.just(","), st.just("1,1")
    ),
    ("run", "--baseline-seed"): seed_text,
    ("run", "--device"): st.one_of(
        letters.filter(lambda s: s not in ("auto", "cpu", "cuda")),
        st.sampled_from(["tpu", "cuda:x", "cpu:0", "CUDA", "", "mps"]),
    ),
    ("run", "--ratios"): st.one_of(letters, st.sampled_from(["1.0", "-0.5", "[0,0.5]", "[1-99:0.5]", "nan", "inf"])),
    ("run", "--skip"): st.one_of(letters, st.just("[1.0]")),
    ("run", "--methods"): letters.map(lambda s: "zz" + s),
    ("run", "--budget"): letters.filter(lambda s: s not in ("paper", "total")),
    ("run", "--hparams"): letters.map(lambda s: "missing-" + s + ".json"),
    ("run", "--setting"): st.one_of(letters.map(lambda s: "zz" + s), letters.map(lambda s: s + ".toml")),
    ("baseline", "--seed"): seed_text,
    ("baseline", "--device"): st.sampled_from(["tpu", "gpu", "cuda:-1"]),
    ("search", "--trials"): st.integers(max_value=0).map(str) | letters,
    ("search", "--timeout"): st.one_of(st.floats(max_value=0), st.sampled_from([math.nan, math.inf])).map(str),
    ("search", "--seed"): seed_text,
    ("search", "--sampler"): letters.filter(lambda s: s not in ("tpe", "random", "grid")),
    ("search", "--method"): letters.map(lambda s: "zz" + s),
}


@pytest.mark.parametrize("command,option", sorted(CLI_OPTIONS), ids=[" ".join(k) for k in sorted(CLI_OPTIONS)])
@FUZZ
@given(data=st.data())
def test_fuzz_cli_options(command, option, data):
    value = data.draw(CLI_OPTIONS[(command, option)])
    base = {
        "run": ["--setting", str(TINY)],
        "baseline": ["--setting", str(TINY)],
        "search": ["--setting", str(TINY), "--method", "l1"],
    }[command]
    assert_refused(lambda d: [command, *base, f"{option}={value}"])


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print(f"\n{TRIED['n']} bad inputs tried: every one exit 2, one 'error:' line, no traceback, nothing written")
