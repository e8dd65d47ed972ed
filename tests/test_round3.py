"""Round 3 of hostile input and a newcomer's first run: each test here failed on the code
before it (a server that never answers, device typos, files left by refusals, copy-paste hints,
progress markup in logs, message slips, stale trials, presets in a new study, machine paths)."""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.storages._rdb import models

from latency_models.devices import canonical_device, near_miss
from nas.cli import main
from nas.search import StudySpec, list_studies, load_study, run_study
from nas.search.study import optuna_storage
from nas.storage import open_storage
from search_spaces import PRESETS, ArchConfig, RandomSuggester
from search_spaces.space import SwiftFormerSpace
from search_spaces.text import command_hint, masked_url

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("search_spaces", "latency_models", "nas", "dashboard")


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 0, err
    for needle in needles:
        assert needle in err, err


# ----------------------------------------------------------------- 1. a silent server
@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback socket that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.slow
def test_a_server_that_never_answers_fails_in_one_line_within_30_s(silent_server, capsys):
    url = f"postgresql+psycopg://u@127.0.0.1:{silent_server}/db"
    t0 = time.monotonic()
    code = main(["studies", "--storage", url])
    elapsed = time.monotonic() - t0
    _one_line_error(code, capsys.readouterr().err.strip(), f"127.0.0.1:{silent_server}",
                    "connect_timeout")
    assert elapsed < 30, elapsed


def test_the_connect_timeout_is_the_urls_when_it_names_one(silent_server, capsys):
    url = f"postgresql+psycopg://u@127.0.0.1:{silent_server}/db?connect_timeout=2"
    t0 = time.monotonic()
    code = main(["pareto", "--study", "s", "--storage", url])
    assert time.monotonic() - t0 < 8
    _one_line_error(code, capsys.readouterr().err.strip(), "timeout")


# ----------------------------------------------------------------- 2. device names
def test_device_names_match_known_phones_and_typos_are_refused():
    known = ["iPhone 14", "iPhone 14 Pro", "iPhone 12", "iPhone 13 Mini"]
    assert canonical_device("iphone 14 ", known) == ("iPhone 14", False)
    assert canonical_device("  IPHONE   13   mini", known) == ("iPhone 13 Mini", False)
    assert canonical_device("iPhone14", known) == ("iPhone 14", False)
    assert near_miss("iPhnoe 14", known) == "iPhone 14"
    assert near_miss("iPhone 14 Pr", known) == "iPhone 14 Pro"
    # other model numbers, or a word more, are another phone
    assert near_miss("iPhone 15", known) is None
    assert near_miss("iPhone 14 Plus", known) is None
    assert canonical_device("iPhone 17", known) == ("iPhone 17", True)
    assert canonical_device("iPad Pro", known) == ("iPad Pro", True)
    assert canonical_device("iPhnoe 14", known, new_devices=["iphnoe 14"]) == ("iPhnoe 14", True)


def _csv(path: Path, *devices: str) -> Path:
    path.write_text("model,device,latency_ms,timm_name\n" + "".join(
        f"m{i},{d},{1 + i / 10},resnet18\n" for i, d in enumerate(devices)))
    return path


def test_latency_import_stores_the_known_spelling_and_refuses_a_near_miss(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/m.db"
    assert main(["latency", "import", str(_csv(tmp_path / "a.csv", "iphone 14 ")),
                 "--storage", url]) == 0
    typo = _csv(tmp_path / "b.csv", "iPhone 12", "iPhnoe 14")
    capsys.readouterr()
    code = main(["latency", "import", str(typo), "--storage", url])
    _one_line_error(code, capsys.readouterr().err.strip(), "b.csv:3",
                    "did you mean 'iPhone 14'?", "--new-device")
    assert main(["latency", "import", str(_csv(tmp_path / "c.csv", "iPhone 17", "iphone 17")),
                 "--storage", url]) == 0
    err = capsys.readouterr().err
    assert err.count("new device 'iPhone 17' (known: ") == 1, err
    assert main(["latency", "import", str(typo), "--storage", url,
                 "--new-device", "iPhnoe 14"]) == 0
    devices = [m.device for m in open_storage(url).measurements()]
    assert devices == ["iPhone 14", "iPhone 17", "iPhone 17", "iPhone 12", "iPhnoe 14"]


def test_a_near_miss_of_a_phone_only_the_storage_knows_is_refused(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/m.db"
    assert main(["latency", "import", str(_csv(tmp_path / "a.csv", "Pixel 9")),
                 "--storage", url]) == 0
    capsys.readouterr()
    code = main(["latency", "import", str(_csv(tmp_path / "b.csv", "Pixle 9")), "--storage", url])
    _one_line_error(code, capsys.readouterr().err.strip(), "did you mean 'Pixel 9'?")
    assert [m.device for m in open_storage(url).measurements()] == ["Pixel 9"]


# ----------------------------------------------------------------- 3. refusals create nothing
def _refusals(tmp: Path, *, write: bool = True) -> dict[str, list[str]]:
    bad_acc, bad_lat = tmp / "acc.csv", tmp / "lat.csv"
    if write:
        bad_acc.write_text("dataset,recipe,top1,arch\nfmnist,r,101,xs\n")
        bad_lat.write_text("model,device,latency_ms,timm_name\nm,iPhone 14,-1,resnet18\n")
    return {
        "accuracy import (bad row)": ["accuracy", "import", str(bad_acc)],
        "accuracy import (not a CSV)": ["accuracy", "import", str(tmp)],
        "train --data cifar-100": ["train", "--arch", "xs", "--data", "cifar-100", "--epochs",
                                   "1", "--out", str(tmp / "run")],
        "train-batch --data cifar-100": ["train-batch", "--study", "s", "--top", "1", "--data",
                                         "cifar-100", "--epochs", "1", "--out", str(tmp / "b")],
        "train-batch (no such study)": ["train-batch", "--study", "s", "--top", "1", "--data",
                                        "fashion-mnist", "--epochs", "1", "--out", str(tmp / "b")],
        "latency import (bad row)": ["latency", "import", str(bad_lat)],
        "search (bad budget)": ["search", "--study", "s", "--latency-budget-ms", "-1"],
        "pareto": ["pareto", "--study", "s"],
        "studies": ["studies"],
        "export": ["export", "--study", "s", "--trial", "0", "--out", str(tmp / "e")],
        "accuracy list": ["accuracy", "list"],
        "accuracy fit": ["accuracy", "fit", "--out", str(tmp / "s.json")],
        "db current": ["db", "current"],
    }


@pytest.mark.parametrize("case", sorted(_refusals(Path("."), write=False)))
def test_a_refused_command_leaves_no_database(tmp_path, capsys, case):
    db = tmp_path / "new.db"
    args = _refusals(tmp_path)[case]
    code = main([*args, "--storage", f"sqlite:///{db}"])
    _one_line_error(code, capsys.readouterr().err.strip())
    assert not db.exists(), case


# ----------------------------------------------------------------- 4. commands to copy
HOSTILE = ["$(touch {m}) `touch {m}`; touch {m}", 'a\nimport os\nos.system("touch {m}")\n#']


@pytest.mark.parametrize("name", HOSTILE)
def test_a_printed_command_is_one_line_and_pastes_as_the_same_words(tmp_path, name):
    name = name.format(m=tmp_path / "pwned")
    line = command_hint("pareto", "--study", name, storage="postgresql+psycopg://u:pw@h/db")
    assert "\n" not in line and "pw" not in line.replace("pwned", "")
    # bash reads the line back as exactly these words, and runs nothing
    out = subprocess.run(["bash", "-c", "printf '%s\\0' " + line.removeprefix("swiftnas ")],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out.split("\0")[:-1] == ["pareto", "--study", name, "--storage",
                                    "postgresql+psycopg://u:***@h/db"]
    assert not (tmp_path / "pwned").exists()
    assert masked_url("sqlite:///a.db") == "sqlite:///a.db"


@pytest.mark.parametrize("name", HOSTILE)
def test_the_export_hint_for_a_hostile_study_is_one_quoted_line(tmp_path, capsys, name):
    name = name.format(m=tmp_path / "pwned")
    url = f"sqlite:///{tmp_path}/h.db"
    run_study(StudySpec(name=name, latency_budget_ms=1.2, start_from_presets=False), url, 1)
    code = main(["export", "--study", name, "--storage", url, "--trial", "999", "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    _one_line_error(code, err, command_hint("pareto", "--study", name, storage=url))
    assert "--storage" in err and "'" in err


# ----------------------------------------------------------------- 5. progress in a log
def test_search_progress_to_a_pipe_is_plain_lines(tmp_path, capsys):
    code = main(["search", "--study", "s", "--storage", f"sqlite:///{tmp_path}/p.db",
                 "--latency-budget-ms", "1.2", "--trials", "3", "--no-presets"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "[progress." not in err and "\x1b[" not in err
    lines = [ln for ln in err.splitlines() if "trials, best feasible score" in ln]
    assert lines and lines[-1].startswith("study s: 3/3 trials") and "ETA" in lines[-1]


# ----------------------------------------------------------------- 6. message slips
def _predictor_file(tmp: Path, change) -> Path:
    from latency_models.defaults import DEFAULT_PREDICTOR_PATH

    data = json.loads(Path(DEFAULT_PREDICTOR_PATH).read_text())
    path = tmp / "p.json"
    path.write_text(json.dumps(change(data)))
    return path


def _config(tmp: Path) -> Path:
    path = tmp / "study.toml"
    path.write_text('study = "s"\nlatency_budget_ms = 1.2\ndevice = 14\n')
    return path


# (arguments, what the one-line error must say, what it must not)
MESSAGES = {
    "config value of the wrong type": (
        lambda t: ["search", "--config", str(_config(t))],
        'device must be a string, but got a whole number; e.g. device = "iPhone 14"',
        "trials = 100"),
    "latency fit --out a folder": (
        lambda t: ["latency", "fit", "--out", str(t)], "such as '" + "{t}/predictor.json'",
        ".csv"),
    "space show a folder": (
        lambda t: ["space", "show", str(t)], "is a folder", "does not exist"),
    "proxy score --images missing": (
        lambda t: ["proxy", "score", "--arch", "xs", "--images", str(t / "nope")],
        "does not exist", "has 0 images"),
    "predictor weights a string": (
        lambda t: ["latency", "predict", "--arch", "xs", "--device", "iPhone 14", "--predictor",
                   str(_predictor_file(t, lambda d: {**d, "weights": "x"}))],
        "field 'weights' has the wrong shape (a string)", "AttributeError"),
    "predictor top level a list": (
        lambda t: ["latency", "predict", "--arch", "xs", "--device", "iPhone 14", "--predictor",
                   str(_predictor_file(t, lambda d: [d]))],
        "top level is a list", "AttributeError"),
}


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_message_wording(tmp_path, capsys, case):
    args, wanted, unwanted = MESSAGES[case]
    code = main(args(tmp_path))
    err = capsys.readouterr().err.strip()
    _one_line_error(code, err, wanted.replace("{t}", str(tmp_path)))
    assert unwanted not in err


@pytest.fixture
def read_only_dir(tmp_path) -> Iterator[Path]:
    """A folder on a read-only filesystem: a fresh read-only tmpfs (needs root), or skip."""
    where = tmp_path / "ro"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_export_to_a_read_only_filesystem_says_so(tmp_path, read_only_dir, capsys):
    url = f"sqlite:///{tmp_path}/r.db"
    run_study(StudySpec(name="r", latency_budget_ms=1.2, start_from_presets=False), url, 1)
    code = main(["export", "--study", "r", "--storage", url, "--trial", "0", "--out",
                 str(read_only_dir / "out")])
    err = capsys.readouterr().err.strip()
    _one_line_error(code, err, "read-only filesystem")
    assert "permission denied" not in err


def _add_orphan(url: str, study: str, silent_min: float) -> None:
    """A RUNNING trial whose driver was SIGKILLed ``silent_min`` minutes ago."""
    ostore = optuna_storage(url, create=False)
    trial_id = ostore.create_new_trial(ostore.get_study_id_from_name(study))
    started = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=silent_min)
    with ostore.engine.begin() as conn:
        conn.execute(sa.update(models.TrialModel.__table__)
                     .where(models.TrialModel.__table__.c.trial_id == trial_id)
                     .values(datetime_start=started))


def test_a_resumed_search_counts_the_killed_trial_in_the_study(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/k.db"
    run_study(StudySpec(name="k", latency_budget_ms=1.2, start_from_presets=False), url, 1)
    _add_orphan(url, "k", silent_min=5)
    code = main(["search", "--study", "k", "--storage", url, "--latency-budget-ms", "1.2",
                 "--trials", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "0 failed in this run (1 in the study)" in err


# ----------------------------------------------------------------- 7. stale trials
def test_studies_marks_an_orphaned_running_trial_stale(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/st.db"
    run_study(StudySpec(name="st", latency_budget_ms=1.2, start_from_presets=False), url, 1)
    _add_orphan(url, "st", silent_min=7)
    _add_orphan(url, "st", silent_min=0)  # just asked: alive
    (row,) = list_studies(url)
    assert (row["running"], row["stale"], row["stale_minutes"]) == (1, 1, 7.0)
    assert main(["studies", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "stale (no heartbeat for 7 min; the next search fails it)" in out


# ----------------------------------------------------------------- 8. a newcomer's front
def test_space_params_of_replays_to_the_same_architecture():
    space = SwiftFormerSpace()
    archs = [*PRESETS.values(), *space.sample_random(200, seed=3)]
    for arch in archs:
        params = space.params_of(arch)
        assert params is not None

        class Replay(RandomSuggester):
            def suggest_categorical(self, name, choices, params=params):
                assert params[name] in choices
                return params[name]

        assert space.sample(Replay()) == arch
    narrow = SwiftFormerSpace(resolutions=(192,))
    assert narrow.params_of(PRESETS["xs"]) is None


def test_a_new_study_starts_from_the_presets_and_its_front_beats_or_holds_them(tmp_path):
    url = f"sqlite:///{tmp_path}/d.db"
    run_study(StudySpec(name="d", latency_budget_ms=1.2), url, 6)
    loaded = load_study(url, "d")
    first = [ArchConfig.from_dict(t.user_attrs["swiftnas"]["arch"]).key()
             for t in loaded.study.get_trials()[:4]]
    assert first == [PRESETS[n].key() for n in ("xs", "s", "l1", "l3")]
    from nas.search import reference_candidates, study_candidates
    from nas.search.pareto import dominates, pareto_front

    front = pareto_front(study_candidates(loaded.study),
                         references=reference_candidates(loaded, save=False))
    for ref in reference_candidates(loaded, save=False):
        if ref.latency_ms <= 1.2:
            assert any(c.arch == ref.arch or dominates(c.point, ref.point) for c in front), \
                ref.name
    # opting out (benchmarks comparing samplers) starts from the sampler alone
    run_study(StudySpec(name="plain", latency_budget_ms=1.2, start_from_presets=False), url, 2)
    plain = load_study(url, "plain").study.trials
    assert not any(ArchConfig.from_dict(t.user_attrs["swiftnas"]["arch"]) in PRESETS.values()
                   for t in plain)
    # a short study queues no more presets than it runs: none is left waiting
    run_study(StudySpec(name="short", latency_budget_ms=1.2), url, 1)
    assert [t.state.name for t in load_study(url, "short").study.trials] == ["COMPLETE"]


def test_the_search_summary_names_the_presets_it_beats_or_the_usual_trials(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/sum.db"
    assert main(["search", "--study", "d", "--storage", url, "--latency-budget-ms", "1.2",
                 "--trials", "4"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "within 1.2 ms" in ln)
    assert re.search(r"the front dominates|no preset within 1\.2 ms is dominated yet", line)
    assert "XS" in line and "S" in line


# ----------------------------------------------------------------- 9. machine paths
# Debian's packages install data here (dataset-fashion-mnist); the system's, not a machine's
SYSTEM_PREFIXES = ("/usr/", "/dev/", "/proc/", "/etc/", "/sys/")
WHOLE_PATH = re.compile(r"/(?:[\w.-]+/)+[\w.-]*")  # a string that is nothing but a path
# where checkouts and shared folders live on some machine, anywhere in a string
MACHINE_DIRS = re.compile(r"(?<![\w.])/(?:work|home|root|Users|mnt|srv|opt|shared)/")


def test_no_module_names_an_absolute_path_outside_the_package():
    found = []
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                    continue
                text = node.value
                whole = WHOLE_PATH.fullmatch(text) and text.count("/") > 2
                if (whole and not text.startswith(SYSTEM_PREFIXES)) or MACHINE_DIRS.search(text):
                    found.append(f"{path.relative_to(REPO)}: {text[:80]!r}")
    assert not found, found
    # the check itself sees the old fallback
    assert MACHINE_DIRS.search("/work/shared/data")
    assert not (REPO / "search_spaces" / "_paths.py").exists()


def test_the_candidate_page_shows_how_many_attention_blocks_and_where():
    from dashboard.data import stages_table
    from search_spaces import ArchConfig

    arch = ArchConfig.from_lists(depths=[2, 3, 4, 2], widths=[48, 56, 112, 220],
                                 attn=[[], [0], [1, 3], []], resolution=224)
    table = stages_table(arch)
    assert list(table["attention"]) == ["0", "1 (block 0)", "2 (blocks 1, 3)", "0"]


@pytest.mark.slow
def test_a_refused_import_on_postgresql_creates_no_tables(tmp_path, capsys):
    """A server database gets swiftnas's tables only once an import's rows pass."""
    import tempfile

    from tests._search_helpers import postgres_server

    # not under tmp_path: the postgres user must reach the data folder
    with tempfile.TemporaryDirectory() as d, postgres_server(Path(d)) as url:
        typo = _csv(tmp_path / "b.csv", "iPhnoe 14")
        code = main(["latency", "import", str(typo), "--storage", url])
        _one_line_error(code, capsys.readouterr().err.strip(), "did you mean 'iPhone 14'?")
        engine = sa.create_engine(url)
        try:
            assert not [t for t in sa.inspect(engine).get_table_names()
                        if t.startswith("swiftnas")]
        finally:
            engine.dispose()
        assert main(["latency", "import", str(_csv(tmp_path / "a.csv", "iphone 14 ")),
                     "--storage", url]) == 0
        assert [m.device for m in open_storage(url).measurements()] == ["iPhone 14"]
