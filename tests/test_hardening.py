"""Adversarial input: hostile names in generated files, damaged predictor artifacts, evaluation
writes that fail half-way, and bad input that must give one line, exit 2 and write nothing."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from markdown_it import MarkdownIt

from latency_models import LatencyPredictor, PredictorError
from latency_models.defaults import DEFAULT_PREDICTOR_PATH
from nas.cli import main
from nas.search import StudySpec, export_trial, load_study, run_study
from nas.search.escaping import markdown_text
from nas.storage import open_storage
from nas.storage.models import CandidateRow, EvaluationRow
from search_spaces import get_preset

optuna.logging.set_verbosity(optuna.logging.WARNING)

MARKER = "swiftnas_pwned_marker"
HOSTILE = [
    'x"""; import os; os.system("touch {m}"); """',
    "x'''; import os; os.system('touch {m}'); '''",
    'a\nimport os\nos.system("touch {m}")\n#',
    "$(touch {m}) `touch {m}` ; touch {m}",
    "[click](http://evil.example/{m}) ![img](http://evil.example/{m}.png) <img src=x>",
    "oops[/bold] {{m}} \\ ${{m}}",
]


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err.strip()


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 0, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def hostile_studies() -> Iterator[tuple[str, Path, list[str]]]:
    """One 1-trial study per hostile name in one storage (the cache makes all but one
    instant)."""
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        url = f"sqlite:///{base}/h.db"
        names = [n.format(m=base / MARKER) for n in HOSTILE]
        for name in names:
            run_study(StudySpec(name=name, latency_budget_ms=1.2), url, 1)
        yield url, base, names


def _markdown_tokens(text: str) -> list:
    md = MarkdownIt("commonmark").enable("table")
    flat = []
    for tok in md.parse(text):
        flat.append(tok)
        flat.extend(tok.children or [])
    return flat


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_export_files_stay_valid_and_inert_for_hostile_study_names(hostile_studies, index):
    url, base, names = hostile_studies
    name = names[index]
    out = base / f"export{index}"
    result = export_trial(load_study(url, name), 0, out)
    model_py = (out / "model.py").read_text()
    tree = ast.parse(model_py)  # valid Python
    # the name is data: it appears only inside the ORIGIN string literal, never as code
    origin = [n for n in tree.body if isinstance(n, ast.Assign)
              and getattr(n.targets[0], "id", "") == "ORIGIN"]
    assert len(origin) == 1 and repr(name) in ast.literal_eval(origin[0].value)
    assert name not in (ast.get_docstring(tree) or "")
    calls = {getattr(n.func, "attr", getattr(n.func, "id", "")) for n in ast.walk(tree)
             if isinstance(n, ast.Call)}
    assert "system" not in calls
    # importing it registers the model and runs nothing else
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import model, timm; "
            f"assert {result.model_name!r} in timm.list_models('swiftnas_*')")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                          text=True, cwd=base, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # train.sh parses as bash; running it without arguments stops at its usage check
    assert subprocess.run(["bash", "-n", str(out / "train.sh")], check=False).returncode == 0
    subprocess.run(["bash", str(out / "train.sh")], capture_output=True, cwd=base,
                   env={**os.environ, "TIMM_TRAIN": "/nonexistent/train.py"}, check=False)
    assert not (base / MARKER).exists()
    assert not list(base.glob(f"*{MARKER}*"))
    # MODEL_CARD.md: no link, image or HTML from the name, and the name shows as its text
    card = (out / "MODEL_CARD.md").read_text()
    tokens = _markdown_tokens(card)
    kinds = {t.type for t in tokens}
    assert not kinds & {"link_open", "image", "html_inline", "html_block"}
    text = "".join(t.content for t in tokens if t.type == "text")
    assert " ".join(repr(name).split()) in text


def test_markdown_text_renders_as_itself() -> None:
    for raw in [*HOSTILE, "a_b*c*", "# title", "1. item", "| x |", "&amp; &lt;", ":red[x]"]:
        tokens = _markdown_tokens(markdown_text(raw))
        assert {t.type for t in tokens} <= {"paragraph_open", "inline", "text", "paragraph_close"}
        assert "".join(t.content for t in tokens if t.type == "text") == " ".join(raw.split())


def test_model_name_must_be_an_identifier(hostile_studies, tmp_path) -> None:
    from nas.search.export import export_candidate
    from nas.search.pareto import from_summary

    url, _, names = hostile_studies
    trial = load_study(url, names[0]).study.trials[0]
    cand = from_summary("t", trial.user_attrs["swiftnas"], 1.2, 0)
    with pytest.raises(ValueError, match="not a Python identifier"):
        export_candidate(cand, out_dir=tmp_path / "o", model_name='x"); import os #',
                         origin="o", device="iPhone 14", predictor="p")


# ---------------------------------------------------------------------- predictor artifacts
def _damaged(tmp_path: Path, change) -> Path:
    data = json.loads(DEFAULT_PREDICTOR_PATH.read_text())
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))  # json writes NaN as NaN, as a damaged file would hold
    return path


def _set_nan(d: dict) -> None:
    d["weights"]["ane"][0] = math.nan


DAMAGE = {
    "nan weight": (_set_nan, "NaN"),
    "short weights": (lambda d: d["weights"]["ane"].pop(), "values, the feature set has"),
    "no groups": (lambda d: d.update(groups={}), "no calibration groups"),
    "unknown feature": (lambda d: d["feature_names"].__setitem__(0, "bogus"), "feature_names"),
    "format": (lambda d: d.update(format=99), "format 99"),
    "negative scale": (lambda d: next(iter(d["groups"].values())).update(scale=-1.0), "scale"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_predictor_is_refused_in_one_line(tmp_path, capsys, case) -> None:
    change, needle = DAMAGE[case]
    path = _damaged(tmp_path, change)
    with pytest.raises(PredictorError, match=needle):
        LatencyPredictor.load(path)
    code, err = _run(["latency", "predict", "--arch", "xs", "--device", "iPhone 14",
                      "--predictor", str(path)], capsys)
    _one_line_error(code, err, needle)
    db = tmp_path / "s.db"
    code, err = _run(["search", "--study", "s", "--storage", f"sqlite:///{db}",
                      "--latency-budget-ms", "1", "--trials", "1", "--predictor", str(path)],
                     capsys)
    _one_line_error(code, err, needle)
    assert not db.exists()


def test_shipped_predictor_validates() -> None:
    LatencyPredictor.load(DEFAULT_PREDICTOR_PATH).validate()


# ---------------------------------------------------------------------- atomic evaluation writes
def test_failed_evaluation_write_stores_nothing_on_sqlite(tmp_path, monkeypatch) -> None:
    """An error between the rows of one evaluation leaves no row of it (SQLite's savepoint
    release used to commit the candidate and proxy rows)."""
    from nas.search import cache
    from nas.search.evaluation import EvaluationSettings, evaluate_arch
    from nas.search.study import prepare_settings

    url = f"sqlite:///{tmp_path}/a.db"
    store = open_storage(url)
    spec = StudySpec(name="a", latency_budget_ms=1.2)
    settings: EvaluationSettings = prepare_settings(spec)
    ev = evaluate_arch(get_preset("xs"), settings)
    real = cache._get_or_add

    def failing(session, model, unique, values):
        if unique.get("evaluator_key", "").startswith("latency:"):  # the last write
            raise OSError("disk full (injected)")
        return real(session, model, unique, values)

    monkeypatch.setattr(cache, "_get_or_add", failing)
    with pytest.raises(OSError, match="injected"):
        cache.save_evaluation(store, ev, settings)
    with store.session() as s:
        for row in (CandidateRow, EvaluationRow):
            assert s.scalar(sa.select(sa.func.count()).select_from(row)) == 0, row
    monkeypatch.setattr(cache, "_get_or_add", real)
    cache.save_evaluation(store, ev, settings)
    assert cache.cached_evaluation(store, ev.arch, settings) is not None


def test_cached_scores_of_another_score_definition_are_not_reused(tmp_path) -> None:
    """The evaluation cache outlives studies: a default score computed under other weights (an
    older swiftnas) must be recomputed, not served to a new study."""
    from nas.search import cache
    from nas.search.evaluation import evaluate_arch
    from nas.search.study import prepare_settings

    store = open_storage(f"sqlite:///{tmp_path}/a.db")
    settings = prepare_settings(StudySpec(name="a", latency_budget_ms=1.2))
    ev = evaluate_arch(get_preset("xs"), settings)
    cache.save_evaluation(store, ev, settings)
    hit = cache.cached_evaluation(store, ev.arch, settings)
    assert hit == dataclasses.replace(ev, cached=True, worker="")  # every stored field
    other = dataclasses.replace(settings, score_weights={"swap": 1.0})  # another definition
    assert cache.cached_evaluation(store, ev.arch, other) is None
    elsewhere = dataclasses.replace(settings, device="iPhone 12")  # another device
    assert cache.cached_evaluation(store, ev.arch, elsewhere) is None


# ---------------------------------------------------------------------- bad input, one line
@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "never.db"


def _search(db: Path, *extra: str) -> list[str]:
    return ["search", "--study", "x", "--storage", f"sqlite:///{db}", "--latency-budget-ms",
            "1", "--trials", "2", *extra]


def test_config_value_of_wrong_type(tmp_path, db, capsys) -> None:
    cfg = tmp_path / "study.toml"
    cfg.write_text('study = "x"\nlatency_budget_ms = 1.2\ntrials = "ten"\n')
    code, err = _run(["search", "--config", str(cfg), "--storage", f"sqlite:///{db}"], capsys)
    _one_line_error(code, err, "trials must be a whole number", "but got a str")
    assert "ten" not in err  # file contents are not echoed
    assert not db.exists()


@pytest.mark.parametrize("extra, needle", [
    (["--heartbeat-interval", "0"], "--heartbeat-interval must be"),
    (["--heartbeat-interval", "-5"], "--heartbeat-interval must be"),
    (["--study", "n" * 513], "allows 512"),
    (["--workers", "1", "--ray-address", "127.0.0.1:1"], "cannot reach Ray"),
    (["--workers", "1", "--ray-address", "nonsense"], "is not HOST:PORT"),
])
def test_bad_search_options_write_nothing(db, capsys, extra, needle) -> None:
    code, err = _run(_search(db, *extra), capsys)
    _one_line_error(code, err, needle)
    assert not db.exists()


def test_non_numeric_port_and_non_database_file(tmp_path, capsys) -> None:
    code, err = _run(["studies", "--storage", "postgresql+psycopg://u@localhost:abc/db"], capsys)
    _one_line_error(code, err, "malformed storage URL")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, and it is long enough to be read as one" * 20)
    before = junk.read_bytes()
    for args in (["studies", "--storage", f"sqlite:///{junk}"],
                 ["pareto", "--study", "x", "--storage", f"sqlite:///{junk}"],
                 _search(junk)):
        code, err = _run(args, capsys)
        _one_line_error(code, err, "file is not a database")
    assert junk.read_bytes() == before


@pytest.mark.parametrize("command", [["studies"], ["pareto", "--study", "x"],
                                     ["export", "--study", "x", "--trial", "0", "--out", "o"]])
def test_readers_on_a_missing_sqlite_file_create_nothing(tmp_path, capsys, command) -> None:
    missing = tmp_path / "missing.db"
    code, err = _run([*command, "--storage", f"sqlite:///{missing}"], capsys)
    _one_line_error(code, err, "no such storage")
    assert not missing.exists()


def test_dashboard_on_a_missing_sqlite_file_creates_nothing(tmp_path) -> None:
    from dashboard import data

    missing = tmp_path / "missing.db"
    with pytest.raises(Exception, match="no such storage"):
        data.study_names(f"sqlite:///{missing}")
    assert not missing.exists()


@pytest.mark.parametrize("command", [
    ["latency", "import", "{csv}", "--storage", "sqlite:///{db}"],
    ["latency", "evaluate", "--measurements", "{csv}"],
    ["latency", "fit", "--measurements", "{csv}", "--out", "{tmp}/p.json", "--no-cv"],
    ["latency", "predict", "--measurements", "{csv}", "--out", "{tmp}/o.csv"],
])
def test_binary_measurement_csv_is_one_line(tmp_path, db, capsys, command) -> None:
    csv = tmp_path / "garbage.csv"
    csv.write_bytes(bytes(range(256)) * 10)
    args = [a.format(csv=csv, db=db, tmp=tmp_path) for a in command]
    code, err = _run(args, capsys)
    _one_line_error(code, err, "not a UTF-8 text CSV")
    assert not db.exists() and not (tmp_path / "p.json").exists()


def test_import_checks_timm_names(tmp_path, db, capsys) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("model,device,latency_ms,timm_name\nok,iPhone 14,1.0,resnet18\n"
                   "bad,iPhone 14,1.0,not_a_timm_model\n")
    code, err = _run(["latency", "import", str(csv), "--storage", f"sqlite:///{db}"], capsys)
    _one_line_error(code, err, "unknown timm model 'not_a_timm_model'", "m.csv:3")
    assert not db.exists()


def test_arch_column_never_echoes_the_file_it_names(tmp_path, capsys) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:TOPSECRET:/root:/bin/bash\n")
    csv = tmp_path / "m.csv"
    csv.write_text(f"model,device,latency_ms,arch\nm,iPhone 14,1.0,{secret}\n")
    code, err = _run(["latency", "evaluate", "--measurements", str(csv)], capsys)
    _one_line_error(code, err, "not an ArchConfig JSON")
    assert "TOPSECRET" not in err and "root:x" not in err
    from dashboard import data
    from latency_models import MeasurementError

    with pytest.raises(MeasurementError, match="inline ArchConfig JSON") as info:
        data.check_measurements_csv(csv.read_bytes())  # an upload never reads a path
    assert "TOPSECRET" not in str(info.value)


@pytest.mark.parametrize("content, needle", [
    ("[" * 30_000 + "]" * 30_000, "deeply nested"),
    (json.dumps({"stages": [{"depth": 3, "width": 48, "mlp_ratio": 4,
                             "attn": list(range(2_000_000))}] * 4}), "not an ArchConfig JSON"),
    (json.dumps({"stages": [{"depth": 2_000_000, "width": 48, "mlp_ratio": 4, "attn": []}] * 4}),
     "depth` must be an integer in 1..64"),
    (json.dumps({"stages": [{"depth": 2, "width": 10**9, "mlp_ratio": 4, "attn": []}] * 4}),
     "width` must be an integer in 2..4096"),
    (json.dumps({"resolution": 2**40, "stages": [get_preset("xs").to_dict()["stages"][0]] * 4}),
     "at most 2048"),
])
def test_huge_or_deep_arch_json_is_bounded(tmp_path, capsys, content, needle) -> None:
    path = tmp_path / "a.json"
    path.write_text(content)
    code, err = _run(["space", "show", str(path)], capsys)
    _one_line_error(code, err, needle)
    assert len(err) < 400


@pytest.mark.parametrize("kind", ["dir", "file", "under_file", "read_only"])
def test_bad_out_paths_are_one_line(tmp_path, capsys, kind) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    csv = tmp_path / "m.csv"
    csv.write_text("model,device,timm_name\nm,iPhone 14,resnet18\n")
    predict_out = {"dir": tmp_path, "file": None, "under_file": f / "o.csv",
                   "read_only": ro / "o.csv"}[kind]
    export_out = {"dir": None, "file": f, "under_file": f / "e", "read_only": ro / "e"}[kind]
    try:
        if kind == "read_only" and os.access(ro, os.W_OK):
            pytest.skip("running as a user who may write anywhere (root without CAP check)")
        if predict_out is not None:
            code, err = _run(["latency", "predict", "--measurements", str(csv), "--out",
                              str(predict_out)], capsys)
            _one_line_error(code, err, "--out")
        if export_out is not None:
            code, err = _run(["latency", "export-coreml", "--arch", "xs", "--out",
                              str(export_out)], capsys)
            _one_line_error(code, err, "--out")
    finally:
        ro.chmod(0o700)
    assert f.read_text() == "x"


def test_rich_markup_in_a_study_name_prints_as_text(hostile_studies, capsys) -> None:
    url, _, names = hostile_studies
    code = main(["studies", "--storage", url, "--format", "table"])
    out = capsys.readouterr().out
    assert code == 0
    assert "oops[/bold]" in out.replace("\n", "").replace("│", "").replace(" ", "") or \
        "oops[" in out
    code = main(["pareto", "--study", names[-1], "--storage", url])
    assert code == 0


def test_read_only_database_mid_run_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "ro.db"
    url = f"sqlite:///{path}"
    assert main([*_search(path)[:-2], "--trials", "1"]) == 0
    capsys.readouterr()
    ro_url = f"sqlite:///file:{path}?mode=ro&uri=true"
    code, err = _run(["search", "--study", "x", "--storage", ro_url, "--latency-budget-ms", "1",
                      "--trials", "3"], capsys)
    _one_line_error(code, err, "readonly")
    assert load_study(url, "x").study.trials[0].state.name == "COMPLETE"  # kept


def test_screen_text_defuses_autolinks_and_reads_the_same() -> None:
    from nas.search.escaping import WORD_JOINER, screen_text

    raw = "see http://evil.example/x www.evil.org a@evil.net"
    shown = screen_text(raw)
    tokens = _markdown_tokens(shown)
    assert {t.type for t in tokens} <= {"paragraph_open", "inline", "text", "paragraph_close"}
    text = "".join(t.content for t in tokens if t.type == "text")
    assert text.replace(WORD_JOINER, "") == raw
    for pattern in ("http://", "www.", "@e"):
        assert pattern not in text
