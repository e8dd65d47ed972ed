"""`swiftnas train` and `swiftnas accuracy`: real training on Fashion-MNIST (Debian's
dataset-fashion-mnist, installed by `make test`), stored results, resume after SIGKILL,
imports and bad input."""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from nas.cli import main
from nas.storage import open_storage
from nas.training import TrainRecipe, TrainTarget, evaluate_checkpoint
from nas.training.data import FASHION_MNIST_DIR, load_data
from nas.training.results import list_results
from search_spaces import get_preset

from ._search_helpers import swiftnas_exe, wait_for

pytestmark = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed: `apt-get install dataset-fashion-mnist` (make test does)")

SMALL = ["--data", "fashion-mnist", "--resolution", "32", "--train-subset", "256",
         "--val-subset", "256", "--batch-size", "64"]


def _one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit 2 and one `error:` line last (a progress line about the data may come before)."""
    assert code == 2, err
    assert "Traceback" not in err, err
    err = err.strip().splitlines()[-1]
    assert err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


def test_train_stores_metrics_checkpoint_and_result_then_hits_the_cache(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/t.db"
    out = tmp_path / "run"
    args = ["train", "--arch", "xs", *SMALL, "--epochs", "1", "--out", str(out),
            "--storage", url]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "top-1" in printed
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1"] and int(rows[0]["step"]) == 4  # 256 / 64
    assert float(rows[0]["train_loss"]) > 0 and float(rows[0]["seconds"]) > 0
    [stored] = list_results(open_storage(url, create=False))
    assert stored.arch_key == get_preset("xs").key() and stored.dataset == "fashion-mnist"
    assert stored.top1 == pytest.approx(float(rows[0]["val_top1"]), abs=1e-3)
    assert stored.source == "train" and stored.device == "cpu"
    # the checkpoint reloads and evaluates to the stored accuracy
    data = load_data("fashion-mnist", 32, train_subset=256, val_subset=256)
    top1, top5 = evaluate_checkpoint(TrainTarget(arch=get_preset("xs")), data, out)
    assert top1 == pytest.approx(stored.top1, abs=1e-6)
    assert top5 == pytest.approx(stored.top5, abs=1e-6)
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 4 and result["recipe"]["epochs"] == 1
    # the same command again: a cache hit, nothing retrained
    mtime = (out / "checkpoint.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert "cache hit" in capsys.readouterr().out
    assert (out / "checkpoint.safetensors").stat().st_mtime_ns == mtime
    assert len(list_results(open_storage(url, create=False))) == 1
    # another seed is another experiment
    assert main([*args[:-4], "--seed", "1", "--out", str(tmp_path / "run1"), "--storage",
                 url]) == 0
    assert len(list_results(open_storage(url, create=False))) == 2
    capsys.readouterr()
    assert main(["accuracy", "list", "--storage", url, "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(r["recipe_key"] for r in listed) == sorted(
        {r.recipe_key for r in list_results(open_storage(url, create=False))})


def _cmd(out: Path, url: str) -> list[str]:
    return [swiftnas_exe(), "train", "--arch", "xs", "--data", "fashion-mnist", "--resolution",
            "32", "--train-subset", "1024", "--val-subset", "256", "--batch-size", "64",
            "--epochs", "2", "--out", str(out), "--storage", url]


def test_resume_after_sigkill_mid_epoch_matches_an_uninterrupted_run(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same arithmetic in every run
    ref = subprocess.run(_cmd(tmp_path / "ref", f"sqlite:///{tmp_path}/ref.db"), env=env,
                         capture_output=True, text=True, check=False)
    assert ref.returncode == 0, ref.stderr
    out, url = tmp_path / "killed", f"sqlite:///{tmp_path}/killed.db"
    proc = subprocess.Popen(_cmd(out, url), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (out / "metrics.csv").exists(), timeout=300, interval=0.05)
        time.sleep(1.0)  # into the second epoch (16 steps of about 0.1 s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert len(list(csv.DictReader((out / "metrics.csv").open()))) == 1
    assert list_results(open_storage(url, create=False)) == []  # nothing stored half-way
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    again = subprocess.run(_cmd(out, url), env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    a = json.loads((tmp_path / "ref" / "result.json").read_text())
    b = json.loads((out / "result.json").read_text())
    assert a["steps"] == b["steps"] == 32
    assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-3)
    assert b["top1"] == pytest.approx(a["top1"], abs=0.5)


def test_a_kill_between_the_checkpoint_and_metrics_csv_loses_no_row(tmp_path, monkeypatch):
    """The checkpoint of epoch 1 is on disk, metrics.csv is not yet (a SIGKILL in between, as
    test_train_batch_on_two_ray_workers_survives_a_killed_worker once hit): the resumed run
    still reports every epoch."""
    from nas.training import trainer

    data = load_data("fashion-mnist", 32, train_subset=128, val_subset=64)
    recipe = TrainRecipe(epochs=2, resolution=32, batch_size=64, precise_bn_batches=1)
    target, out = TrainTarget(arch=get_preset("xs")), tmp_path / "run"
    real = trainer.write_metrics

    def killed(*args, **kwargs):  # the process dies before metrics.csv is written
        raise SystemExit("killed")

    monkeypatch.setattr(trainer, "write_metrics", killed)
    with pytest.raises(SystemExit):
        trainer.train(target, data, recipe, out)
    assert (out / "checkpoint.safetensors").is_file() and not (out / "metrics.csv").exists()
    monkeypatch.setattr(trainer, "write_metrics", real)
    result = trainer.train(target, data, recipe, out)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert [int(m["epoch"]) for m in result.metrics] == [1, 2] and result.steps == 4


def _image_folder(root: Path, *, classes: int = 2, per_class: int = 6) -> Path:
    """A small ImageFolder of real Fashion-MNIST images as PNG files."""
    from PIL import Image

    with gzip.open(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(images[c * 100 + i]).save(folder / f"{i}.png")
    return root


def test_train_on_an_image_folder(tmp_path, capsys) -> None:
    root = _image_folder(tmp_path / "imgs")
    url = f"sqlite:///{tmp_path}/f.db"
    assert main(["train", "--arch", "xs", "--data", str(root), "--resolution", "32",
                 "--batch-size", "4", "--epochs", "1", "--out", str(tmp_path / "o"),
                 "--storage", url]) == 0
    [stored] = list_results(open_storage(url, create=False))
    assert stored.dataset == "imgs" and len(stored.dataset_digest) == 64
    assert 0.0 <= stored.top1 <= 100.0


@pytest.mark.parametrize("case,needles", [
    ("missing", ["neither 'fashion-mnist' nor an existing folder"]),
    ("no_val", ["has no val/ folder"]),
    ("empty_class", ["holds no images"]),
    ("unreadable", ["cannot read image", "remove or replace"]),
    ("resolution", ["--resolution must be a multiple of 32", "got 48"]),
    ("epochs", ["--epochs must be a positive number", "got 0"]),
    ("cuda", ["no CUDA device is available"]),
    ("two_targets", ["exactly one thing to train"]),
    ("unknown_model", ["timm has no model"]),
])
def test_bad_training_input_is_one_line_and_stores_nothing(tmp_path, capsys, case, needles):
    root = _image_folder(tmp_path / "imgs", per_class=2)
    url = f"sqlite:///{tmp_path}/b.db"
    data, extra = str(root), ["--arch", "xs"]
    if case == "missing":
        data = str(tmp_path / "nope")
    elif case == "no_val":
        import shutil

        shutil.rmtree(root / "val")
    elif case == "empty_class":
        (root / "train" / "class9").mkdir()
        (root / "val" / "class9").mkdir()
    elif case == "unreadable":
        (root / "train" / "class0" / "0.png").write_bytes(b"not a png at all")
    elif case == "two_targets":
        extra = ["--arch", "xs", "--model", "resnet18"]
    elif case == "unknown_model":
        extra = ["--model", "resnet_does_not_exist"]
    args = ["train", *extra, "--data", data, "--epochs", "0" if case == "epochs" else "1",
            "--resolution", "48" if case == "resolution" else "32", "--batch-size", "2",
            "--out", str(tmp_path / "o"), "--storage", url]
    if case == "cuda":
        args += ["--device", "cuda"]
    code = main(args)
    _one_line_error(code, capsys.readouterr().err, *needles)
    if Path(f"{tmp_path}/b.db").exists():
        assert list_results(open_storage(url, create=False)) == []


def test_recipe_key_covers_every_setting() -> None:
    base = TrainRecipe(epochs=2)
    keys = {base.key(), TrainRecipe(epochs=3).key(), TrainRecipe(epochs=2, seed=1).key(),
            TrainRecipe(epochs=2, lr=2e-3).key(), TrainRecipe(epochs=2, resolution=96).key(),
            TrainRecipe(epochs=2, batch_size=64).key(), TrainRecipe(epochs=2, mixup=0.2).key(),
            TrainRecipe(epochs=2, train_subset=100).key()}
    assert len(keys) == 8
    assert TrainRecipe(epochs=2).key() == base.key()


# ------------------------------------------------------------------------------ import
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_accuracy_import_and_list(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path}/i.db"
    arch = tmp_path / "a.json"
    arch.write_text(get_preset("s").to_json())
    inline = get_preset("l1").to_json(indent=None).replace('"', '""')
    good = _write(tmp_path / "good.csv",
                  "arch,dataset,recipe,top1,top5\n"
                  "xs,imagenet-1k,300ep timm,75.7,92.6\n"
                  f"a.json,imagenet-1k,300ep timm,78.5,\n"
                  f'"{inline}",imagenet-1k,300ep timm,80.9,95.4\n')
    assert main(["accuracy", "import", str(good), "--storage", url]) == 0
    stored = {r.arch_key: r for r in list_results(open_storage(url, create=False))}
    assert stored[get_preset("s").key()].top1 == 78.5
    assert stored[get_preset("s").key()].top5 is None
    assert stored[get_preset("l1").key()].recipe_label == "300ep timm"
    capsys.readouterr()
    assert main(["accuracy", "list", "--storage", url, "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


@pytest.mark.parametrize("text,needles", [
    ("arch,dataset,recipe,top1\nxs,imagenet,r,0.757\nxs,imagenet,r2,75.7\n", []),  # fine
    ("arch,dataset,recipe,top1\nxs,imagenet,r,175\n", ["line 2", "top1 must be a percentage"]),
    ("arch,dataset,recipe,top1\nxs,imagenet,r,75\nzz,imagenet,r,75\n",
     ["line 3", "neither ArchConfig JSON, a preset"]),
    ("arch,dataset,recipe,top1\nxs,,r,75\n", ["line 2", "dataset is empty"]),
    ("arch,dataset,recipe,top1\nxs,imagenet,r,abc\n", ["line 2", "top1 must be a number"]),
    ("arch,dataset,top1\nxs,imagenet,75\n", ["lacks the column(s) recipe"]),
    ("arch,dataset,recipe,top1,colour\nxs,imagenet,r,75,red\n", ["unknown column(s) colour"]),
    ("arch,dataset,recipe,top1\nxs,imagenet,r,75\nxs,imagenet,r,76\n", ["line 3", "twice"]),
    ('arch,dataset,recipe,top1\n"{""stages"": 3}",imagenet,r,75\n', ["line 2"]),
])
def test_accuracy_import_validates_rows_and_stores_all_or_nothing(tmp_path, capsys, text,
                                                                   needles):
    url = f"sqlite:///{tmp_path}/v.db"
    path = _write(tmp_path / "acc.csv", text)
    code = main(["accuracy", "import", str(path), "--storage", url])
    if not needles:
        assert code == 0
        return
    _one_line_error(code, capsys.readouterr().err, *needles)
    assert not (tmp_path / "v.db").exists()  # validated before the storage is opened


def test_binary_accuracy_csv_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(bytes(range(256)) * 4)
    code = main(["accuracy", "import", str(path), "--storage", f"sqlite:///{tmp_path}/x.db"])
    _one_line_error(code, capsys.readouterr().err, "not a UTF-8 text CSV")


# ------------------------------------------------------------------------------ surrogate
def _generated(n: int, seed: int = 0):
    """Architectures whose 'accuracy' rises with log params, plus a little noise."""
    import math

    from latency_models import FeatureCache
    from nas.evaluators.surrogate import arch_features
    from search_spaces import SwiftFormerSpace

    cache = FeatureCache()
    rng = np.random.default_rng(seed)
    rows, ys, archs = [], [], []
    for arch in SwiftFormerSpace().sample_random(n, seed=seed):
        f = cache.get(arch)
        score = 0.1 * math.log(f.params)  # a stand-in proxy value (no network run)
        rows.append(arch_features(arch, f.params, int(f.total("macs")), {"score": score}))
        ys.append(60 + 4 * math.log(f.params / 1e6) + float(rng.normal(0, 0.3)))
        archs.append((arch, f.params, int(f.total("macs")), score))
    return rows, ys, archs


def test_surrogate_fit_save_load_and_monotone_sanity(tmp_path) -> None:
    from scipy.stats import spearmanr

    from nas.evaluators.surrogate import AccuracySurrogate, feature_names

    rows, ys, _ = _generated(30)
    sur = AccuracySurrogate.fit(rows, ys, names=feature_names(4), dataset="gen")
    assert sur.metrics["cv"][sur.kind]["spearman"] > 0.8  # out-of-fold, on held-out points
    path = tmp_path / "s.json"
    sur.save(path)
    again = AccuracySurrogate.load(path)
    test_rows, test_ys, test_archs = _generated(15, seed=1)
    m1, s1 = sur.predict_rows(test_rows)
    m2, s2 = again.predict_rows(test_rows)
    assert np.allclose(m1, m2) and np.allclose(s1, s2)  # the round trip predicts the same
    assert spearmanr(m1, test_ys)[0] > 0.8  # and ranks unseen architectures by size
    arch, params, macs, score = test_archs[0]
    mean, low, high = again.predict(arch, params, macs, {"score": score})
    assert low < mean < high


@pytest.mark.parametrize("change,needle", [
    (lambda d: d.update(version=99), "version 99 is not supported"),
    (lambda d: d.update(name="other"), "not a swiftnas accuracy surrogate"),
    (lambda d: d["X"][0].append(1.0), "is damaged"),
    (lambda d: d.update(x_mean=[0.0]), "shapes do not match"),
    (lambda d: d["y"].__setitem__(0, float("nan")), "non-finite"),
    (lambda d: d.update(score_weights="swap"), "field 'score_weights' is not a table"),
])
def test_damaged_surrogate_is_refused(tmp_path, change, needle) -> None:
    from nas.evaluators.surrogate import AccuracySurrogate, feature_names
    from nas.training import TrainingError

    rows, ys, _ = _generated(8)
    data = AccuracySurrogate.fit(rows, ys, names=feature_names(4), kind="bayes_ridge").to_dict()
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TrainingError, match=needle):
        AccuracySurrogate.load(path)


def test_search_with_a_fitted_surrogate(tmp_path, capsys) -> None:
    """import -> fit -> search --accuracy surrogate -> pareto shows predicted top-1 with its
    interval; resuming with another surrogate is refused. (The imported accuracies are made
    up from the parameter count: this checks the machinery, not the model's quality.)"""
    import math

    import optuna

    from latency_models import FeatureCache
    from search_spaces import SwiftFormerSpace

    url = f"sqlite:///{tmp_path}/s.db"
    cache = FeatureCache()
    lines = ["arch,dataset,recipe,top1"]
    for arch in SwiftFormerSpace().sample_random(8, seed=3):
        acc = 60 + 4 * math.log(cache.get(arch).params / 1e6)
        lines.append('"' + arch.to_json(indent=None).replace('"', '""') + f'",gen,r,{acc:.2f}')
    csv_path = _write(tmp_path / "acc.csv", "\n".join(lines) + "\n")
    assert main(["accuracy", "import", str(csv_path), "--storage", url]) == 0
    sur = tmp_path / "sur.json"
    assert main(["accuracy", "fit", "--storage", url, "--out", str(sur)]) == 0
    assert "CV" in capsys.readouterr().out
    search = ["search", "--study", "sur", "--storage", url, "--latency-budget-ms", "1.5",
              "--trials", "3", "--population-size", "4", "--accuracy", "surrogate",
              "--surrogate", str(sur)]
    assert main(search) == 0
    study = optuna.load_study(study_name="sur", storage=url)
    for t in study.trials:
        acc = t.user_attrs["swiftnas"]["accuracy"]
        assert t.values[0] == pytest.approx(acc["top1"]) and acc["low"] < acc["top1"] < acc["high"]
    # the same prediction from the CLI, for an architecture file and a preset
    from search_spaces import ArchConfig

    first = study.trials[0].user_attrs["swiftnas"]
    arch_file = tmp_path / "a.json"
    arch_file.write_text(ArchConfig.from_dict(first["arch"]).to_json())
    capsys.readouterr()
    assert main(["accuracy", "predict", "--surrogate", str(sur), "--arch", str(arch_file),
                 "--arch", "xs", "--format", "json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert [p["arch"] for p in predicted] == [str(arch_file), "xs"]
    assert predicted[0]["top1"] == pytest.approx(first["accuracy"]["top1"], rel=1e-9)
    assert predicted[0]["low"] == pytest.approx(first["accuracy"]["low"], rel=1e-9)
    assert predicted[1]["low"] < predicted[1]["top1"] < predicted[1]["high"]
    assert main(["accuracy", "predict", "--surrogate", str(sur), "--arch", "xs"]) == 0
    assert "Predicted top-1 on gen" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["pareto", "--study", "sur", "--storage", url, "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert all("accuracy_low" in r for r in shown["references"])  # presets scored the same way
    assert main(["pareto", "--study", "sur", "--storage", url]) == 0  # the table too
    assert "predicted top-1" in " ".join(capsys.readouterr().out.split())
    # another surrogate is another objective: resuming with it is refused
    other = tmp_path / "other.json"
    assert main(["accuracy", "fit", "--storage", url, "--out", str(other), "--model",
                 "bayes_ridge" if json.loads(sur.read_text())["kind"] == "gp" else "gp"]) == 0
    capsys.readouterr()
    code = main([*search[:-1], str(other), "--trials", "4"])
    _one_line_error(code, capsys.readouterr().err, "accuracy objective")
    code = main([*search[:-4]])  # the proxy objective on a surrogate study: refused too
    _one_line_error(code, capsys.readouterr().err, "accuracy objective")


# ------------------------------------------------------------------------------ train-batch
def _busy(title: bytes) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(title):
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_train_batch_on_two_ray_workers_survives_a_killed_worker(tmp_path, monkeypatch):
    import threading

    from nas.search import StudySpec, run_study

    base = "/dev/shm" if Path("/dev/shm").is_dir() else str(tmp_path)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_TMPDIR", base)
    url = f"sqlite:///{tmp_path}/b.db"
    run_study(StudySpec(name="b", latency_budget_ms=1.2, sampler="random", seed=2), url, 3)
    out = tmp_path / "batch"
    killed: list[int] = []

    def killer() -> None:  # once a checkpoint exists, kill a worker that is training
        if not wait_for(lambda: any(out.glob("*/checkpoint.safetensors")), 300, 0.05):
            return
        busy = _busy(b"ray::_train_task")
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    code = main(["train-batch", "--study", "b", "--trials", "0,1,2", "--data", "fashion-mnist",
                 "--epochs", "2", "--resolution", "32", "--train-subset", "512",
                 "--val-subset", "128", "--batch-size", "64", "--workers", "2", "--out",
                 str(out), "--storage", url])
    thread.join(timeout=10)
    assert code == 0
    assert killed, "the test did not kill a training worker"
    stored = list_results(open_storage(url, create=False))
    assert len({r.arch_key for r in stored}) == len(stored) == 3
    for r in stored:  # every run finished all its epochs, the killed one by resuming
        rows = list(csv.DictReader((Path(r.origin) / "metrics.csv").open()))
        assert [row["epoch"] for row in rows] == ["1", "2"]
    # run again: everything is a cache hit, nothing retrains
    assert main(["train-batch", "--study", "b", "--trials", "0,1,2", "--data", "fashion-mnist",
                 "--epochs", "2", "--resolution", "32", "--train-subset", "512",
                 "--val-subset", "128", "--batch-size", "64", "--workers", "2", "--out",
                 str(out), "--storage", url]) == 0
    assert len(list_results(open_storage(url, create=False))) == 3


def test_proxy_evaluate_on_stored_trained_accuracies(tmp_path, capsys) -> None:
    """The published ImageNet top-1 of SwiftFormer XS/S/L1/L3 (75.7, 78.5, 80.9, 83.0; Shaker
    et al. 2023) grow with size: the parameter count ranks them perfectly."""
    url = f"sqlite:///{tmp_path}/p.db"
    path = _write(tmp_path / "paper.csv", "arch,dataset,recipe,top1\nxs,imagenet-1k,paper,75.7\n"
                  "s,imagenet-1k,paper,78.5\nl1,imagenet-1k,paper,80.9\nl3,imagenet-1k,paper,83.0\n")
    assert main(["accuracy", "import", str(path), "--storage", url]) == 0
    capsys.readouterr()
    assert main(["proxy", "evaluate", "--benchmark", "trained", "--storage", url, "--proxy",
                 "params", "--proxy", "depth", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["networks"] == 4
    assert out["proxies"]["params"]["spearman"] == pytest.approx(1.0)
    # with two datasets stored, --dataset is required
    other = _write(tmp_path / "o.csv", "arch,dataset,recipe,top1\nxs,cifar,r,90\n")
    assert main(["accuracy", "import", str(other), "--storage", url]) == 0
    code = main(["proxy", "evaluate", "--benchmark", "trained", "--storage", url])
    _one_line_error(code, capsys.readouterr().err, "choose one with --dataset")
