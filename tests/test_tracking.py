"""MLflow tracking (tmf.tracking, tmf track-start / track-end): where runs go, which run a command gets, nesting,
failure, workers, the runs of real stages filtered by their params and tags, the report's links, runs of killed
processes, a copied project that leaves the original untouched, concurrency."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pandas as pd
import pytest
from pretrain_toy import make_packed, toy_cfg
from test_evaluate import make_tiny, tiny_cfg

from tmf import tracking
from tmf.cli import build_parser, main, run_command
from tmf.tracking import command, provenance, runs, store

ON = {"enabled": True, "uri": "", "experiment": "tmf-test", "dvc": True, "ui": "http://127.0.0.1:5000"}
OFF = {**ON, "enabled": False}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database, created once: MLflow's schema migrations take seconds, a copy does not."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def workdir(tmp_path, monkeypatch, empty_store):
    """A fresh working directory with an empty default store; no tracking URI, section or parent run inherited
    from the environment."""
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", tracking.PARENT_ENV, tracking.CFG_ENV, tracking.JOB_RUN_ENV, "RANK"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "results/mlflow").mkdir(parents=True)
    shutil.copy(empty_store, tmp_path / tracking.DEFAULT_DB)
    return tmp_path


def _client(cfg=ON):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking.tracking_uri(cfg))


def _job(handler, command_name="job", **fields) -> int:
    """Run ``handler`` as the subcommand ``command_name`` with these arguments, as ``tmf.cli.main`` does."""
    return run_command(Namespace(command=command_name, func=handler, **fields))


def _children(parent: str):
    client = _client()
    return client.search_runs([client.get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")


def test_uri_resolution(workdir, monkeypatch):
    assert tracking.tracking_uri({}) == f"sqlite:///{workdir.resolve()}/results/mlflow/mlflow.db"
    assert tracking.tracking_uri({"uri": "sqlite:///x.db"}) == "sqlite:///x.db"
    assert store.sqlite_path("sqlite:///x.db") == workdir / "x.db"
    assert store.sqlite_path("sqlite:////abs/m.db?timeout=30") == Path("/abs/m.db")
    assert store.sqlite_path("http://127.0.0.1:5000") is None
    assert store.artifact_location("sqlite:////abs/m.db") == "file:///abs/artifacts"
    assert store.artifact_location("http://127.0.0.1:5000") is None
    with pytest.raises(ValueError, match="in-memory"):
        store.sqlite_path("sqlite:///:memory:")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri({"uri": "sqlite:///x.db"}) == "http://127.0.0.1:5000"


def test_flatten_and_hash():
    flat = runs.flatten_params({"a": 1, "b": {"c": [1, 2], "d": {"e": "x"}}, "long": "y" * 7000, "k@": None})
    assert flat == {"a": "1", "b.c": "[1, 2]", "b.d.e": "x", "long": "y" * 5997 + "...", "k_": "None"}
    nums = runs.flatten_numbers({"oa": 0.5, "ok": True, "miou": None, "cm": [[1]], "city": {"Nice": {"oa": 1}}})
    assert nums == {"oa": 0.5, "city.Nice.oa": 1.0}
    assert provenance.params_hash({"a": 1, "b": 2}) == provenance.params_hash({"b": 2, "a": 1})
    assert provenance.params_hash({"a": 1}) != provenance.params_hash({"a": 2})


def test_job_names_of_real_command_lines():
    """One job_name for the writer (from a command line) and for the report (from a table row)."""
    import pandas as pd

    parse = build_parser().parse_args
    ev = parse(["evaluate", "--protocol", "linear", "--method", "random", "--fraction", "1", "--seed", "0",
                "--encoder", "none", "--out", "results/evaluate/linear/random/frac1.0/seed0"])
    assert command.command_job_name(ev) == "evaluate[protocol=linear,method=random,fraction=1.0,seed=0]"
    row = pd.DataFrame({"protocol": ["linear"], "method": ["random"], "fraction": [1.0], "seed": [0]}).iloc[0]
    assert tracking.job_name("evaluate", {k: row[k] for k in command.NAME_FIELDS}) == command.command_job_name(ev)
    pre = parse(["pretrain", "--method", "simclr", "--seed", "3", "--manifest", "m", "--packed", "p", "--out", "o"])
    assert command.command_job_name(pre) == "pretrain[method=simclr,seed=3]"
    nb = parse(["report-notebook", "--template", "t.ipynb", "--html", "reports/n/data.html", "--ipynb", "x"])
    assert command.command_job_name(nb) == "report-notebook[reports/n/data.html]"
    fig = parse(["appearance-figures", "--manifest", "m", "--dir", "results/appearance/random-resnet18"])
    assert command.command_job_name(fig) == "appearance-figures[results/appearance/random-resnet18]"
    # two encoders' embedding jobs of the same seed must not share a name
    a, b = (parse(["appearance-embed", "--features", "f", "--seed", "0", "--out", f"results/appearance/{e}/emb.npy"])
            for e in ("a", "b"))
    assert command.command_job_name(a) != command.command_job_name(b)
    assert command.command_job_name(a).startswith("appearance-embed[seed=0,")


def test_untracked_by_hand_and_switched_off(workdir):
    """By hand without a tracking section: no run, no store. Tracking switched off: no run, and no stale record
    linking the job to an earlier run."""
    (workdir / tracking.DEFAULT_DB).unlink()

    def handler(args):
        assert args.run.run_id is None
        args.run.log_metrics({"loss": 1.0}, step=0)
        with pytest.raises(ValueError, match="loss"):
            args.run.log_metrics({"loss": "abc"})
        return 0

    assert _job(handler, method="m") == 0
    runs.RUNS_DIR.mkdir(parents=True)
    runs.run_record_path("job[method=m]").write_text('{"name": "job[method=m]", "run_id": "old"}')
    os.environ[tracking.CFG_ENV] = json.dumps(OFF)
    try:
        assert _job(handler, method="m") == 0
    finally:
        del os.environ[tracking.CFG_ENV]
    assert tracking.run_record("job[method=m]") is None
    assert not (workdir / "results/mlflow/mlflow.db").exists() and not list(workdir.rglob("*.lock"))
    assert tracking.start_parent(OFF, {"a": 1}) is None
    assert main(["track-start", "--cfg", json.dumps(OFF)]) == 0
    assert main(["track-end", "--cfg", json.dumps(OFF)]) == 0
    assert not (workdir / "results/mlflow/parent_run_id").exists()


def test_standalone_run_by_hand(workdir, monkeypatch):
    """Given a tracking section, a command run by hand is one standalone run: identity as params and tags, its
    --cfg as cfg.*, metrics with their steps, its output's small files as artifacts, a record."""
    monkeypatch.setenv(tracking.CFG_ENV, json.dumps(ON))
    out = workdir / "out"

    def handler(args):
        for step in range(30):
            args.run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        out.mkdir()
        (out / "metrics.json").write_text('{"miou": 0.5}')
        (out / "weights.npy").write_bytes(b"0")
        return 0

    assert _job(handler, "evaluate", protocol="linear", method="simclr", fraction=0.5, seed=2, encoder="e.pt",
                out=str(out), cfg=json.dumps({"backbone": "resnet18", "linear": {"lr": 0.1}})) == 0
    name = "evaluate[protocol=linear,method=simclr,fraction=0.5,seed=2]"
    rec = tracking.run_record(name)
    client = _client()
    got = client.get_run(rec["run_id"])
    assert got.info.status == "FINISHED" and got.info.run_name == name and rec["status"] == "FINISHED"
    assert "mlflow.parentRunId" not in got.data.tags and rec["parent_run_id"] is None
    ident = {"protocol": "linear", "method": "simclr", "fraction": "0.5", "seed": "2", "encoder": "e.pt",
             "backbone": "resnet18"}
    assert got.data.params == {**ident, "cfg.backbone": "resnet18", "cfg.linear.lr": "0.1"}
    assert {k: got.data.tags[k] for k in ident} == ident and got.data.tags["tmf.command"] == "evaluate"
    assert set(got.data.metrics) == {"loss", "job.duration_s"}
    hist = client.get_metric_history(got.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in hist) == [(s, 1.0 / (s + 1)) for s in range(30)]
    assert [a.path for a in client.list_artifacts(got.info.run_id)] == ["metrics.json"]
    assert got.info.artifact_uri.startswith((workdir / "results/mlflow/artifacts").resolve().as_uri())
    assert tracking.run_records() == {name: rec}
    assert tracking.run_url(rec, "http://localhost:5001/") == \
        f"http://localhost:5001/#/experiments/{got.info.experiment_id}/runs/{got.info.run_id}"
    assert tracking.run_url({**rec, "server": "https://mlflow.lab"}, "http://localhost:5001") \
        .startswith("https://mlflow.lab/#/experiments/")


def test_by_hand_from_a_params_file(workdir):
    """``--params FILE`` by hand: the file's tracking section decides; the file is the run's param and artifact."""
    params = workdir / "my.yaml"
    params.write_text("tracking: {experiment: tmf-test}\n")
    assert _job(lambda a: 0, "pretrain", method="simclr", seed=0, params=str(params), cfg=None) == 0
    run = _client().get_run(tracking.run_record("pretrain[method=simclr,seed=0]")["run_id"])
    assert run.data.params == {"method": "simclr", "seed": "0", "params_file": str(params)}
    assert [a.path for a in _client().list_artifacts(run.info.run_id)] == ["my.yaml"]
    params.write_text("tracking: {enabled: false}\n")
    assert _job(lambda a: 0, "pretrain", method="simclr", seed=0, params=str(params), cfg=None) == 0
    assert tracking.run_record("pretrain[method=simclr,seed=0]") is None


def test_failure_and_exit_status_mark_the_run_failed(workdir, monkeypatch):
    monkeypatch.setenv(tracking.CFG_ENV, json.dumps(ON))

    def boom(args):
        args.run.log_metrics({"loss": 2.5}, step=7)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _job(boom, "pretrain", seed=0)
    rec = tracking.run_record("pretrain[seed=0]")
    client = _client()
    assert client.get_run(rec["run_id"]).info.status == "FAILED" and rec["status"] == "FAILED"
    assert [(m.step, m.value) for m in client.get_metric_history(rec["run_id"], "loss")] == [(7, 2.5)]
    assert _job(lambda a: 3, "pretrain", seed=1) == 3
    assert client.get_run(tracking.run_record("pretrain[seed=1]")["run_id"]).info.status == "FAILED"
    # through the CLI: a command whose input is bad exits 2 with its run FAILED
    assert main(["dvc-track", "--root", str(workdir / "nowhere")]) == 2
    assert tracking.run_record("dvc-track")["status"] == "FAILED"


def test_children_nest_under_the_parent_run(workdir, monkeypatch):
    params_file = workdir / "config.yaml"
    params_file.write_text("tracking:\n  experiment: tmf-test\ndata:\n  source: synthetic\n")
    (workdir / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data\n")
    assert main(["track-start", "--cfg", json.dumps(ON), "--params-file", str(params_file)]) == 0
    parent = (workdir / "results/mlflow/parent_run_id").read_text().strip()
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    monkeypatch.setenv(tracking.CFG_ENV, json.dumps(ON))
    assert _job(lambda a: 0, "index", out="data/tiles.csv") == 0
    assert _job(lambda a: 0, "pretrain", method="simclr", seed=0) == 0
    assert main(["track-end", "--cfg", json.dumps(ON), "--status", "FINISHED"]) == 0

    client = _client()
    p = client.get_run(parent)
    assert p.info.status == "FINISHED"
    assert p.data.tags["tmf.data_version"] == "0123456789abcdef0123456789abcdef.dir"
    assert p.data.tags["tmf.params_hash"] == provenance.params_hash(
        {"tracking": {"experiment": "tmf-test"}, "data": {"source": "synthetic"}})
    assert "tmf.git_commit" in p.data.tags and "mlflow.source.git.commit" in p.data.tags
    assert p.data.params == {"tracking.experiment": "tmf-test", "data.source": "synthetic"}
    assert [a.path for a in client.list_artifacts(parent)] == ["config.yaml"]
    children = _children(parent)
    assert sorted(r.info.run_name for r in children) == ["index[data/tiles.csv]", "pretrain[method=simclr,seed=0]"]
    assert all(r.data.params["source"] == r.data.tags["source"] == "synthetic" for r in children)  # from the parent

    # The parent is finished: a later command gets a standalone run, not a child of a closed parent.
    assert _job(lambda a: 0, "pretrain", method="byol", seed=0) == 0
    by_hand = client.get_run(tracking.run_record("pretrain[method=byol,seed=0]")["run_id"])
    assert "mlflow.parentRunId" not in by_hand.data.tags


def test_track_end_failed_and_env_parent(workdir, monkeypatch):
    run_id = tracking.start_parent(ON, {"a": 1})
    (workdir / "results/mlflow/parent_run_id").unlink()
    monkeypatch.setenv(tracking.PARENT_ENV, run_id)  # the environment variable alone finds it
    monkeypatch.setenv(tracking.CFG_ENV, json.dumps(ON))
    assert _job(lambda a: 0, "child") == 0
    assert main(["track-end", "--cfg", json.dumps(ON), "--status", "FAILED"]) == 0
    client = _client()
    assert client.get_run(run_id).info.status == "FAILED"
    assert client.get_run(tracking.run_record("child")["run_id"]).data.tags["mlflow.parentRunId"] == run_id


def test_worker_processes_log_into_their_jobs_run(workdir, monkeypatch):
    """A job that starts worker processes (data-parallel pretraining: ``tmf pretrain`` re-launched under torchrun)
    is still one child run: rank 0's command logs into the launcher's run, the other ranks log nowhere."""
    parent = tracking.start_parent(ON, {"a": 1})
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    monkeypatch.setenv(tracking.CFG_ENV, json.dumps(ON))
    worker = ("import os; from argparse import Namespace; from tmf.cli import run_command\n"
              "def h(a):\n"
              "    a.run.log_metrics({'loss': 0.25 + int(os.environ['RANK'])}, step=3)\n"
              "    return 0\n"
              "raise SystemExit(run_command(Namespace(command='pretrain', func=h, method='toy', seed=0)))")

    def launcher(args):
        return sum(subprocess.call([sys.executable, "-c", worker], env={**tracking.worker_env(args.run),
                                                                        "RANK": str(rank)}) for rank in (0, 1))

    assert _job(launcher, "pretrain", method="toy", seed=0) == 0
    (run,) = _children(parent)
    assert run.info.status == "FINISHED" and run.data.params == {"method": "toy", "seed": "0"}
    assert [(m.step, m.value) for m in _client().get_metric_history(run.info.run_id, "loss")] == [(3, 0.25)]
    assert tracking.JOB_RUN_ENV not in tracking.worker_env(runs.NoRun())


def test_track_start_errors(workdir, capsys):
    assert main(["track-start", "--cfg", json.dumps(ON), "--params-file", "nope.yaml"]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert main(["track-start", "--cfg", '{"enabled": "yes"}']) == 2
    assert "enabled" in capsys.readouterr().err
    os.environ[tracking.CFG_ENV] = "{not json"
    try:
        assert main(["index", "--root", "r", "--out", "o"]) == 2
    finally:
        del os.environ[tracking.CFG_ENV]
    assert tracking.CFG_ENV in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# Runs of real stage commands, found through the MLflow API as a researcher filters them; the report's links


def _search(filter_string: str):
    import mlflow

    return mlflow.search_runs(experiment_names=[ON["experiment"]], filter_string=filter_string,
                              output_format="list")


@pytest.fixture
def workflow(workdir, monkeypatch) -> tuple[str, Path]:
    """A running parent run of a tracked workflow on the synthetic data, as every job sees it: (its id, the
    working directory)."""
    parent = tracking.start_parent(ON, {"data": {"source": "synthetic"}, "tracking": ON})
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    monkeypatch.setenv(tracking.CFG_ENV, json.dumps(ON))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.tracking_uri(ON))  # for mlflow.search_runs
    return parent, workdir


def _evaluation_cfg(protocol: str) -> str:
    """What the workflow passes an evaluation job: the shared settings and its own protocol's section."""
    ev = tiny_cfg()
    return json.dumps({**{k: ev[k] for k in ("backbone", "examples", "eval_batch")}, protocol: ev[protocol]})


def test_evaluation_runs_filter_by_identity_and_link_from_the_report(workflow, monkeypatch):
    parent, workdir = workflow
    manifest, packed = make_tiny(workdir / "data")
    outs = []
    for protocol in ("linear", "logreg"):
        out = workdir / f"results/evaluate/{protocol}/random/frac1.0/seed0"
        assert main(["evaluate", "--protocol", protocol, "--method", "random", "--fraction", "1.0", "--seed", "0",
                     "--manifest", str(manifest), "--packed", str(packed), "--encoder", "none", "--out", str(out),
                     "--device", "cpu", "--threads", "1", "--cfg", _evaluation_cfg(protocol)]) == 0
        outs.append(out / "metrics.json")

    found = _search("params.method = 'random' and tags.protocol = 'linear' and params.fraction = '1.0' "
                    "and tags.seed = '0' and params.source = 'synthetic' and tags.encoder = 'none' "
                    "and params.backbone = 'resnet18'")
    assert len(found) == 1
    run = found[0]
    assert run.info.run_name == "evaluate[protocol=linear,method=random,fraction=1.0,seed=0]"
    assert run.data.tags["mlflow.parentRunId"] == parent
    metrics = json.loads(outs[0].read_text())
    # metrics: the measured numbers only
    assert run.data.metrics["oa"] == pytest.approx(metrics["oa"])
    assert run.data.metrics["miou"] == pytest.approx(metrics["miou"])
    assert {"kappa", "per_city.Rennes.oa", "per_class_iou.1", "train.final_loss", "job.duration_s"} <= \
        set(run.data.metrics)
    assert not {k for k in run.data.metrics if k.split(".")[0] in ("seed", "fraction", "head_dim", "params",
                                                                  "finetune", "logreg", "linear", "n_train")}
    # params: the identity and exactly the sections the protocol reads
    assert {k.split(".")[1] for k in run.data.params if k.startswith("cfg.")} == \
        {"backbone", "examples", "eval_batch", "linear"}
    (scene,) = _search("params.method = 'random' and params.protocol = 'logreg'")
    assert "cfg.logreg.C" in scene.data.params and not any(k.startswith("logreg") for k in scene.data.metrics)
    assert len(_search("tags.method = 'random'")) == 2

    # the report links each row to its run, through the UI of the store in use
    assert main(["collect", "--inputs", *map(str, outs), "--out", str(workdir / "results/evaluate/summary.csv")]) == 0
    from tmf.report.tables import mlflow_links

    summary = pd.read_csv(workdir / "results/evaluate/summary.csv")
    monkeypatch.setenv(tracking.CFG_ENV, json.dumps({**ON, "ui": "http://mlflow.lab:8080"}))
    links = dict(zip(summary["protocol"], mlflow_links("evaluate", summary), strict=True))
    assert links["linear"].startswith('<a href="http://mlflow.lab:8080/#/experiments/') and \
        f"/runs/{run.info.run_id}" in links["linear"]
    assert f"/runs/{scene.info.run_id}" in links["logreg"]
    shutil.rmtree(runs.RUNS_DIR)
    assert mlflow_links("evaluate", summary) == ["—", "—"]  # not tracked: no link


def test_pretraining_run_has_its_identity_and_live_curve(workflow):
    _, workdir = workflow
    manifest, packed, _ = make_packed(workdir / "data")
    cfg = {k: v for k, v in toy_cfg(steps=3, batch_size=8, log_every=1).items() if k not in ("methods", "seeds")}
    cfg["method_params"] = {"simclr": {"hidden_dim": 32, "proj_dim": 16}}
    out = workdir / "results/pretrain/simclr/seed3"
    assert main(["pretrain", "--method", "simclr", "--seed", "3", "--manifest", str(manifest), "--packed",
                 str(packed), "--out", str(out), "--device", "cpu", "--threads", "1", "--cfg", json.dumps(cfg)]) == 0
    (run,) = _search("params.method = 'simclr' and tags.seed = '3' and tags.backbone = 'resnet18' "
                     "and params.source = 'synthetic'")
    assert run.info.run_name == "pretrain[method=simclr,seed=3]" and run.info.status == "FINISHED"
    assert run.data.params["cfg.lr"] == str(cfg["lr"]) and "lr" not in run.data.params
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.tracking_uri(ON))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert {"final_loss", "images_per_s_mean", "job.duration_s"} <= set(run.data.metrics)
    assert "seed" not in run.data.metrics and "steps" not in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"metrics.json", "history.csv"}
    assert tracking.run_record("pretrain[method=simclr,seed=3]")["run_id"] == run.info.run_id
    assert Path(out / "encoder.pt").is_file()


# ------------------------------------------------------------------------------------------------------------
# Killed invocations and jobs


#: a tmf job (argv: a file it creates once its run is open, its method) that runs until it is killed
KILLED_JOB = ("import sys, time; from argparse import Namespace; from tmf.cli import run_command\n"
              "def h(a):\n"
              "    open(sys.argv[1], 'w').close(); time.sleep(600)\n"
              "run_command(Namespace(command='pretrain', func=h, method=sys.argv[2], seed=0))")


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import time

    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.1)


def test_runs_of_a_killed_invocation_are_failed_at_the_next_start(workdir, monkeypatch):
    """kill -9 of a tmf job and of the invocation around it (nobody closes their runs); by-hand commands, one
    killed and one still running. The next invocation's start marks FAILED exactly the runs of dead processes."""
    import signal

    killed_parent = tracking.start_parent(ON, {"a": 1})
    env = {**os.environ, tracking.CFG_ENV: json.dumps(ON), "OMP_NUM_THREADS": "1"}
    procs = {}
    for method, parent in (("killed_job", killed_parent), ("killed_by_hand", None), ("alive_by_hand", None)):
        e = {**env, tracking.PARENT_ENV: parent} if parent else env
        procs[method] = subprocess.Popen([sys.executable, "-c", KILLED_JOB, str(workdir / method), method], env=e)
    try:
        for method, proc in procs.items():
            _wait_for(workdir / method, proc)
        for method in ("killed_job", "killed_by_hand"):
            procs[method].send_signal(signal.SIGKILL)
            procs[method].wait()
        ids = {m: tracking.run_record(f"pretrain[method={m},seed=0]")["run_id"] for m in procs}
        client = _client()
        assert {m: client.get_run(i).info.status for m, i in ids.items()} == dict.fromkeys(procs, "RUNNING")

        new_parent = tracking.start_parent(ON, {"a": 2})  # the next invocation
        status = {m: client.get_run(i).info.status for m, i in ids.items()}
        assert status == {"killed_job": "FAILED", "killed_by_hand": "FAILED", "alive_by_hand": "RUNNING"}
        assert client.get_run(killed_parent).info.status == "FAILED"
        assert client.get_run(new_parent).info.status == "RUNNING"
        assert tracking.run_record("pretrain[method=killed_job,seed=0]")["status"] == "FAILED"
        assert tracking.run_record("pretrain[method=alive_by_hand,seed=0]")["status"] == "RUNNING"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_jobs_left_running_are_failed_when_the_invocation_ends(workdir):
    """A job killed (kill -9) while the workflow went on: its run is FAILED once the invocation ends."""
    import signal

    parent = tracking.start_parent(ON, {"a": 1})
    env = {**os.environ, tracking.CFG_ENV: json.dumps(ON), tracking.PARENT_ENV: parent, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_JOB, str(workdir / "started"), "m"], env=env)
    try:
        _wait_for(workdir / "started", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (child,) = _children(parent)
    assert child.info.status == "RUNNING"
    assert tracking.end_parent(ON, "FINISHED") == parent
    assert _client().get_run(child.info.run_id).info.status == "FAILED"
    assert _client().get_run(parent).info.status == "FINISHED"


# ------------------------------------------------------------------------------------------------------------
# A project copied elsewhere


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


#: one workflow invocation in the working directory (argv: the job's output): a parent run, one job whose output
#: becomes an artifact, the end
INVOCATION = """
import json, os, sys
from argparse import Namespace
from pathlib import Path
from tmf import tracking
from tmf.cli import run_command

cfg = json.loads(os.environ[tracking.CFG_ENV])
os.environ[tracking.PARENT_ENV] = tracking.start_parent(cfg, {"a": 1})

def handler(args):
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("<html>" + Path.cwd().name + "</html>")
    return 0

assert run_command(Namespace(command="report-index", func=handler, out=sys.argv[1])) == 0
tracking.end_parent(cfg, "FINISHED")
"""


def test_a_copied_project_leaves_the_original_untouched(workdir, tmp_path, monkeypatch):
    """cp -a of a finished project, a job run in the copy: every file of the original is byte-identical, and
    the copy's runs (old and new) keep their artifacts in the copy."""
    env = {**os.environ, tracking.CFG_ENV: json.dumps(ON), "OMP_NUM_THREADS": "1"}
    original = workdir
    subprocess.run([sys.executable, "-c", INVOCATION, "reports/index.html"], cwd=original, env=env, check=True)
    copy = tmp_path.parent / (tmp_path.name + "-copy")
    subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
    before = _checksums(original)
    subprocess.run([sys.executable, "-c", INVOCATION, "reports/other.html"], cwd=copy, env=env, check=True)
    assert _checksums(original) == before

    monkeypatch.chdir(copy)
    client = _client()
    exp = client.get_experiment_by_name(ON["experiment"])
    assert exp.artifact_location == (copy / "results/mlflow/artifacts").resolve().as_uri()
    every = client.search_runs([exp.experiment_id])
    assert len(every) == 4  # two invocations, one job each
    assert all(r.info.artifact_uri.startswith(exp.artifact_location + "/") for r in every)
    for name in ("index.html", "other.html"):
        (job,) = [r for r in every if r.info.run_name.startswith("report-index") and name in r.info.run_name]
        assert (Path(job.info.artifact_uri.removeprefix("file://")) / name).read_text() in (
            f"<html>{original.name}</html>", f"<html>{copy.name}</html>")
    assert not (original / "results/mlflow/artifacts").joinpath(job.info.run_id).exists()


# ------------------------------------------------------------------------------------------------------------
# Many jobs at once


def _worker(k: int, n_steps: int, barrier) -> str:
    barrier.wait()  # start together, so that the first creation of the database races too

    def handler(args):
        for step in range(n_steps):
            args.run.log_metrics({"loss": k + step / 1000.0, "acc": (k * step) % 97}, step=step)
            if step % 20 == 19:
                args.run.flush()  # many small write transactions: the worst case for SQLite
        return 0

    _job(handler, "job", seed=k)
    return tracking.run_record(f"job[seed={k}]")["run_id"]


def test_concurrent_jobs_lose_nothing(workdir, monkeypatch):
    """8 processes log 300 steps x 2 metrics each into one new SQLite store at once (they also race to create
    it); every value reads back."""
    (workdir / tracking.DEFAULT_DB).unlink()
    monkeypatch.setenv(tracking.CFG_ENV, json.dumps(ON))
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
        assert run.info.status == "FINISHED" and run.info.run_name == f"job[seed={k}]"
        loss = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
        acc = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "acc"))
        assert loss == [(s, k + s / 1000.0) for s in range(n_steps)]
        assert acc == [(s, float((k * s) % 97)) for s in range(n_steps)]
