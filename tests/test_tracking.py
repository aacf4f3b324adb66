"""MLflow tracking (tmf.tracking, tmf track-start / track-end): runs, nesting, failure, concurrency, switch-off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tmf import tracking
from tmf.cli import main

ON = {"enabled": True, "uri": "", "experiment": "tmf-test"}
OFF = {"enabled": False, "uri": "", "experiment": "tmf-test"}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database, created once: MLflow's schema migrations take seconds, a copy does not."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def workdir(tmp_path, monkeypatch, empty_store):
    """A fresh working directory with an empty default store; no tracking URI or parent run inherited from the
    environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.delenv(tracking.CFG_ENV, raising=False)
    (tmp_path / "results/mlflow").mkdir(parents=True)
    shutil.copy(empty_store, tmp_path / tracking.DEFAULT_DB)
    return tmp_path


def _client(cfg=ON):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking.tracking_uri(cfg))


def test_uri_resolution(workdir, monkeypatch):
    assert tracking.tracking_uri({}) == f"sqlite:///{workdir.resolve()}/results/mlflow/mlflow.db"
    assert tracking.tracking_uri({"uri": "sqlite:///x.db"}) == "sqlite:///x.db"
    assert tracking.sqlite_path("sqlite:///x.db") == workdir / "x.db"
    assert tracking.sqlite_path("sqlite:////abs/m.db?timeout=30") == Path("/abs/m.db")
    assert tracking.sqlite_path("http://127.0.0.1:5000") is None
    assert tracking.artifact_location("sqlite:////abs/m.db") == "file:///abs/artifacts"
    assert tracking.artifact_location("http://127.0.0.1:5000") is None
    with pytest.raises(ValueError, match="in-memory"):
        tracking.sqlite_path("sqlite:///:memory:")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri({"uri": "sqlite:///x.db"}) == "http://127.0.0.1:5000"


def test_flatten_params_and_hash():
    flat = tracking.flatten_params({"a": 1, "b": {"c": [1, 2], "d": {"e": "x"}}, "long": "y" * 7000, "k@": None})
    assert flat == {"a": "1", "b.c": "[1, 2]", "b.d.e": "x", "long": "y" * 5997 + "...", "k_": "None"}
    assert tracking.params_hash({"a": 1, "b": 2}) == tracking.params_hash({"b": 2, "a": 1})
    assert tracking.params_hash({"a": 1}) != tracking.params_hash({"a": 2})


def test_disabled_is_a_no_op(workdir):
    tracking.run_record_path("job").parent.mkdir(parents=True)
    tracking.run_record_path("job").write_text('{"name": "job", "run_id": "old"}')
    with tracking.job_run("job", {"a": 1}, OFF) as run:
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_params({"b": 2})
        assert run.run_id is None
        with pytest.raises(ValueError, match="loss"):
            run.log_metrics({"loss": "abc"})
    assert tracking.run_record("job") is None  # stale link removed
    assert not (workdir / "results/mlflow/mlflow.db.lock").exists()  # the store was never opened
    assert tracking.start_parent(OFF, {"a": 1}) is None
    assert main(["track-start", "--cfg", json.dumps(OFF)]) == 0
    assert main(["track-end", "--cfg", json.dumps(OFF)]) == 0
    assert not (workdir / "results/mlflow").joinpath("parent_run_id").exists()


def test_standalone_run_logs_params_metrics_artifacts(workdir):
    (workdir / "metrics.json").write_text('{"miou": 0.5}')
    with tracking.job_run("evaluate[method=simclr]", {"lr": 0.1, "opt": {"name": "sgd"}}, ON) as run:
        for step in range(30):
            run.log_metrics({"loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
        run.log_params({"extra": "yes"})
        run.log_artifact(workdir / "metrics.json")
        with pytest.raises(FileNotFoundError):
            run.log_artifact(workdir / "missing.json")
    client = _client()
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "evaluate[method=simclr]"
    assert "mlflow.parentRunId" not in got.data.tags
    assert got.data.params == {"lr": "0.1", "opt.name": "sgd", "extra": "yes"}
    hist = client.get_metric_history(run.run_id, "loss")
    assert sorted((m.step, m.value) for m in hist) == [(s, 1.0 / (s + 1)) for s in range(30)]
    assert [a.path for a in client.list_artifacts(run.run_id)] == ["metrics.json"]
    assert got.info.artifact_uri.startswith((workdir / "results/mlflow/artifacts").resolve().as_uri())
    rec = tracking.run_record("evaluate[method=simclr]")
    assert rec["run_id"] == run.run_id and rec["status"] == "FINISHED" and rec["parent_run_id"] is None
    assert tracking.run_records() == {"evaluate[method=simclr]": rec}
    assert tracking.run_url(rec["run_id"], rec["experiment_id"], "http://127.0.0.1:5000/") == \
        f"http://127.0.0.1:5000/#/experiments/{got.info.experiment_id}/runs/{run.run_id}"


def test_failure_marks_run_failed_and_keeps_metrics(workdir):
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.job_run("pretrain[seed=0]", {}, ON) as run:
            run.log_metrics({"loss": 2.5}, step=7)
            raise RuntimeError("boom")
    client = _client()
    assert client.get_run(run.run_id).info.status == "FAILED"
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "loss")] == [(7, 2.5)]
    assert tracking.run_record("pretrain[seed=0]")["status"] == "FAILED"


def test_children_nest_under_the_parent_run(workdir):
    params_file = workdir / "config.yaml"
    params_file.write_text("tracking:\n  experiment: tmf-test\nseed: 3\n")
    (workdir / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data\n")
    assert main(["track-start", "--cfg", json.dumps(ON), "--params-file", str(params_file)]) == 0
    parent = (workdir / "results/mlflow/parent_run_id").read_text().strip()
    names = ["data", "pretrain[method=simclr,seed=0]"]
    ids = []
    for name in names:
        with tracking.job_run(name, {"n": 1}, ON) as run:
            run.log_metrics({"x": 1.0})
        ids.append(run.run_id)
    assert main(["track-end", "--cfg", json.dumps(ON), "--status", "FINISHED"]) == 0

    client = _client()
    p = client.get_run(parent)
    assert p.info.status == "FINISHED"
    assert p.data.tags["tmf.data_version"] == "0123456789abcdef0123456789abcdef.dir"
    assert p.data.tags["tmf.params_hash"] == tracking.params_hash({"tracking": {"experiment": "tmf-test"}, "seed": 3})
    assert "tmf.git_commit" in p.data.tags and "mlflow.source.git.commit" in p.data.tags
    assert p.data.params == {"tracking.experiment": "tmf-test", "seed": "3"}
    assert [a.path for a in client.list_artifacts(parent)] == ["config.yaml"]
    children = client.search_runs([p.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.info.run_id for r in children) == sorted(ids)
    assert sorted(r.info.run_name for r in children) == sorted(names)

    # The parent is finished: a later hand-run command gets a standalone run, not a child of a closed parent.
    with tracking.job_run("by-hand", {}, ON) as run:
        pass
    assert "mlflow.parentRunId" not in client.get_run(run.run_id).data.tags


def test_track_end_failed_and_env_parent(workdir, monkeypatch):
    run_id = tracking.start_parent(ON, {"a": 1})
    (workdir / "results/mlflow/parent_run_id").unlink()
    monkeypatch.setenv(tracking.PARENT_ENV, run_id)  # the environment variable alone finds it
    with tracking.job_run("child", {}, ON) as child:
        pass
    assert main(["track-end", "--cfg", json.dumps(ON), "--status", "FAILED"]) == 0
    client = _client()
    assert client.get_run(run_id).info.status == "FAILED"
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == run_id


def test_command_run_names():
    from argparse import Namespace

    assert tracking.command_run_name("pretrain", Namespace(seed=0, method="simclr", out="results/p", cfg="{}")) \
        == "pretrain[method=simclr,seed=0]"
    assert tracking.command_run_name("evaluate", Namespace(protocol="linear", method="random", fraction=1.0, seed=0,
                                                           encoder="results/pretrain/x/encoder.pt")) \
        == "evaluate[protocol=linear,method=random,fraction=1.0,seed=0]"
    assert tracking.command_run_name("report-notebook", Namespace(template="t.ipynb", html="reports/n/data.html")) \
        == "report-notebook[reports/n/data.html]"
    assert tracking.command_run_name("report-index", Namespace()) == "report-index"
    # two encoders' embedding jobs of the same seed must not share a name
    a = tracking.command_run_name("appearance-embed", Namespace(seed=0, out="results/appearance/a/embedding_seed0.npy"))
    b = tracking.command_run_name("appearance-embed", Namespace(seed=0, out="results/appearance/b/embedding_seed0.npy"))
    assert a != b and a.startswith("appearance-embed[seed=0,")


def test_workflow_job_is_one_child_run(workdir, monkeypatch):
    """Under a tracked workflow, a tmf command is one child run: its --cfg as parameters, a stage's own job_run
    joins it (renamed), the numbers of its metrics.json become metrics and its small outputs artifacts."""
    from argparse import Namespace

    parent = tracking.start_parent(ON, {"a": 1})
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    monkeypatch.setenv(tracking.CFG_ENV, json.dumps(ON))
    out = workdir / "results/evaluate/x"

    def handler(args):
        with tracking.job_run("evaluate[custom]", {"inner": 1}, None) as run:
            run.log_metrics({"loss": 0.5}, step=3)
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({"oa": 0.75, "per_city": {"Nice": {"miou": 0.5}},
                                                      "confusion": [[1, 2]], "method": "x"}))
        (out / "predictions.png").write_bytes(b"\x89PNG")
        (out / "big.npy").write_bytes(b"0")
        return 0

    args = Namespace(method="simclr", seed=1, out=str(out), cfg=json.dumps({"steps": 2, "linear": {"lr": 0.1}}))
    assert tracking.command_run("evaluate", handler, args) == 0
    client = _client()
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent}'")
    assert len(children) == 1
    run = children[0]
    assert run.info.run_name == "evaluate[custom]" and run.info.status == "FINISHED"
    assert run.data.params == {"cfg.steps": "2", "cfg.linear.lr": "0.1", "inner": "1"}
    assert run.data.metrics["oa"] == 0.75 and run.data.metrics["per_city.Nice.miou"] == 0.5
    assert "job.duration_s" in run.data.metrics and "confusion" not in run.data.metrics
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [(3, 0.5)]
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["metrics.json", "predictions.png"]
    assert tracking.run_record("evaluate[custom]")["run_id"] == run.info.run_id
    assert tracking.run_record("evaluate[method=simclr,seed=1]") is None  # renamed, one record

    # through the CLI: a command that fails is a FAILED child run and keeps its exit status
    assert main(["dvc-track", "--root", str(workdir / "nowhere")]) == 2
    failed = client.search_runs([run.info.experiment_id], "attributes.run_name = 'dvc-track'")
    assert len(failed) == 1 and failed[0].info.status == "FAILED"
    assert failed[0].data.tags["mlflow.parentRunId"] == parent

    monkeypatch.setenv(tracking.CFG_ENV, json.dumps(OFF))  # tracking off: the handler alone
    assert tracking.command_run("evaluate", lambda a: 0, args) == 0
    assert len(client.search_runs([run.info.experiment_id])) == 3


def test_worker_processes_log_into_their_jobs_run(workdir, monkeypatch):
    """A job that starts worker processes (data-parallel pretraining: ``tmf pretrain`` re-launched under torchrun)
    is still one child run: the workers' ``tmf`` command and its ``job_run`` log into the launcher's run."""
    import subprocess
    import sys
    from argparse import Namespace

    parent = tracking.start_parent(ON, {"a": 1})
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    monkeypatch.setenv(tracking.CFG_ENV, json.dumps(ON))
    worker = ("from argparse import Namespace; from tmf import tracking\n"
              "def h(a):\n"
              "    with tracking.job_run('pretrain[method=toy,seed=0]', {'steps': 3}, None) as run:\n"
              "        run.log_metrics({'loss': 0.25}, step=3)\n"
              "    return 0\n"
              "raise SystemExit(tracking.command_run('pretrain', h, Namespace(method='toy', seed=0)))")

    def launcher(args):
        return subprocess.call([sys.executable, "-c", worker], env=tracking.worker_env())

    assert tracking.command_run("pretrain", launcher, Namespace(method="toy", seed=0)) == 0
    client = _client()
    runs = client.search_runs([client.get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.params == {"steps": "3"}
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [(3, 0.25)]
    assert tracking.JOB_RUN_ENV not in tracking.worker_env()  # no job open any more


def test_track_start_errors(workdir, capsys):
    assert main(["track-start", "--cfg", json.dumps(ON), "--params-file", "nope.yaml"]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert main(["track-start", "--cfg", '{"enabled": "yes"}']) == 2
    assert "enabled" in capsys.readouterr().err


def _worker(k: int, n_steps: int, barrier) -> str:
    barrier.wait()  # start together, so that the first creation of the database races too
    with tracking.job_run(f"job[k={k}]", {"k": k}, ON) as run:
        for step in range(n_steps):
            run.log_metrics({"loss": k + step / 1000.0, "acc": (k * step) % 97}, step=step)
            if step % 20 == 19:
                run.flush()  # many small write transactions: the worst case for SQLite
    return run.run_id


def test_concurrent_jobs_lose_nothing(workdir):
    """8 processes log 300 steps x 2 metrics each into one new SQLite store at once (they also race to create
    it); every value reads back."""
    (workdir / tracking.DEFAULT_DB).unlink()
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import mlflow  # noqa: F401  (imported once here; the forked workers share it)

    n_jobs, n_steps = 8, 300
    ctx = mp.get_context("fork")
    barrier = ctx.Manager().Barrier(n_jobs)
    with ProcessPoolExecutor(n_jobs, mp_context=ctx) as pool:
        futures = [pool.submit(_worker, k, n_steps, barrier) for k in range(n_jobs)]
        run_ids = [f.result(timeout=300) for f in futures]

    client = _client()
    for k, run_id in enumerate(run_ids):
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.info.run_name == f"job[k={k}]"
        loss = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
        acc = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "acc"))
        assert loss == [(s, k + s / 1000.0) for s in range(n_steps)]
        assert acc == [(s, float((k * s) % 97)) for s in range(n_steps)]
