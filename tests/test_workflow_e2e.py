"""End to end: the whole workflow on a tiny embedded configuration, as a user runs it from a fresh clone.

One run is shared by the tests of this module (it takes a few minutes on 2 cores). They check the outputs, that
a second run does nothing, that the same parameters give a byte-identical manifest and identical metrics, and
that a parameter change re-runs exactly what depends on it (issue: reports regenerated exactly when parameters
change).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from browser import check_site, require_chromium
from conftest import TINY, copy_repo, copy_run, snakemake

from tmf.plan.items import item

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tiny_run: Path) -> Path:
    return tiny_run


def planned_rules(repo: Path, *extra: str) -> set[str]:
    """Rules a dry run would execute (empty when there is nothing to do)."""
    proc = snakemake(repo, "-n", "--cores", "2", *TINY, *extra)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return set()
    m = re.search(r"Job stats:\n(.*?)\n\s*total", text, re.S)
    assert m, text
    rules = set()
    for line in m.group(1).splitlines()[2:]:
        parts = line.split()
        if parts:
            rules.add(parts[0])
    rules.discard("all")
    return rules


def test_outputs_exist(run: Path):
    manifest = pd.read_csv(run / "data/tinyminifrance/manifest.csv")
    assert set(manifest["split"]) == {"labeled", "unlabeled", "test"}
    assert manifest["city"].nunique() == 16
    index = (run / "reports/index.html").read_text()
    for page in re.findall(r'href="([^"#]+)', index):
        assert (run / "reports" / page).exists(), page
    assert "embedded synthetic" in index


def test_maps_lie_on_their_tiles_grids(run: Path):
    """Every tile of the test cities has a map with its input's CRS, transform and shape, and every city a
    preview; the evaluation notebook shows them."""
    import rasterio

    tiles = pd.read_csv(run / "data/tiles.csv", keep_default_na=False)
    maps = pd.read_csv(run / "results/maps/test/maps.csv", keep_default_na=False)
    assert sorted(maps["image"]) == sorted(tiles.loc[tiles["split"] == "test", "image"])
    for r in maps.itertuples():
        with rasterio.open(run / "data/raw/synthetic" / r.image) as src, \
                rasterio.open(run / "results/maps/test" / r.map) as m:
            assert (m.crs, m.transform, m.shape, m.count, m.dtypes[0]) == (src.crs, src.transform, src.shape, 1,
                                                                           "uint8"), r.image
    assert {p.stem for p in (run / "results/maps/test/previews").glob("*.png")} == set(maps["city"])
    notebook = (run / "reports/notebooks/evaluation.html").read_text()
    section = notebook[notebook.index('id="maps_per_city-test"'):notebook.index('id="evaluation_runs"')]
    assert "<h3>split test</h3>" in notebook and item("map_previews").title in section
    for city, n in maps.groupby("city").size().items():  # the table: city, the model, its tiles, ...
        assert re.search(rf"<td>{city}</td>\s*<td>[^<]*</td>\s*<td[^>]*>{n}</td>", section), city
    assert section.count("<img") == maps["city"].nunique()  # one preview per city


def test_report_opens_in_a_browser(run: Path):
    """reports/index.html and every notebook it links load in headless Chromium, and every image resolves."""
    require_chromium()
    result = check_site(run)
    pages = result["pages"]
    notebooks = [p for p in pages if p.startswith("reports/notebooks/")]
    assert len(notebooks) == 4, pages
    for page, rec in pages.items():
        assert rec["ok"], (page, rec)
        assert rec["broken"] == [], (page, rec["broken"])
    assert all(pages[p]["images"] > 0 for p in notebooks), {p: pages[p]["images"] for p in notebooks}
    for page in pages:  # nothing fetched from outside (nbconvert's default template loads CDN scripts)
        outside = re.findall(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]*)"', (run / page).read_text())
        assert outside == [], (page, outside)


def test_index_shows_comparison_tables(run: Path):
    index = (run / "reports/index.html").read_text()
    for heading in ("Table 2.7", "Table 3.1", "Tables 2.5 and 2.6"):
        assert heading in index


def visible_text(html: str) -> str:
    """A page without its inline images (base64 can spell anything) and style sheets."""
    html = re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", html)
    return re.sub(r"<style[^>]*>.*?</style>", "", html, flags=re.S)


def report_pages(run: Path) -> list[str]:
    return ["reports/index.html", *(f"reports/notebooks/{n}.html" for n in ("data", "appearance", "pretraining",
                                                                            "evaluation"))]


def test_report_reads_like_a_results_section(run: Path):
    """The index opens with the findings, each linking to an item of a notebook; no page shows None, NaN, a
    source text's seed number or a code cell; the notebooks ran without kernel errors."""
    index = (run / "reports/index.html").read_text()
    assert index.index("What this run found") < index.index("<h2>Notebooks</h2>")
    found = re.search(r'<ul class="findings">(.*?)</ul>', index, re.S).group(1)
    sentences = re.findall(r"<li>(.*?)</li>", found, re.S)
    assert len(sentences) >= 4, sentences  # pretrained vs random per fraction, trend, strongest/weakest, coverage
    assert any("random initialisation" in s for s in sentences) and any("IoT" in s for s in sentences)
    for sentence in sentences:
        (target,) = re.findall(r'href="([^"]+)"', sentence)
        page, anchor = target.split("#")
        assert f'id="{anchor}"' in (run / "reports" / page).read_text(), target
    for page in report_pages(run):
        text = visible_text((run / page).read_text())
        assert not re.search(r"\bNone\b", text), page
        assert not re.search(r"\bnan\b", text, re.I), page
        assert not re.search(r"seed 00\d", text), page
        assert "hl-ipython3" not in text, page  # nbconvert's markup of a code cell's input
    for log in sorted((run / "logs/report").glob("*.log")):
        assert not re.search(r"\[IPKernelApp\]|KeyboardInterrupt|Traceback", log.read_text()), log


def test_screenshots_of_the_report_show_pages_without_load_errors(run: Path, tmp_path: Path):
    """Headless Chromium renders the index and every notebook: a non-blank first screen, no console error."""
    import numpy as np
    from browser import screenshot
    from PIL import Image

    require_chromium()
    for page in report_pages(run):
        shot = screenshot(run, page, tmp_path / (Path(page).stem + ".png"))
        assert shot["console"] == [], (page, shot["console"])
        pixels = np.asarray(Image.open(shot["png"]).convert("L"), dtype=float)
        assert pixels.shape == (2400, 1280)
        assert (pixels < 200).mean() > 0.005 and pixels.std() > 10, (page, "blank screenshot")


def test_snakemake_report_zip(run: Path):
    """snakemake --report holds every figure and table the notebooks show (and the notebooks), in the items'
    categories."""
    import collections
    import zipfile

    import yaml

    from tmf.config import workflow_config
    from tmf.plan import Plan
    from tmf.report.items import ITEMS

    snakemake(run, "--cores", "1", *TINY, "--report", "report.zip")
    with zipfile.ZipFile(run / "report.zip") as z:
        names = z.namelist()
        html = z.read(next(n for n in names if n.endswith("report.html"))).decode()
    plan = Plan(workflow_config(yaml.safe_load((run / "tests/configs/tiny.yaml").read_text()),
                                run / "params/default.yaml"))
    expected = collections.Counter()
    for part in ("data", "appearance", "pretraining", "evaluation"):
        shown = json.loads(plan.jobs(f"report_{part}")[0].params["nb"])["items"]
        assert shown
        expected.update(Path(path).name for _, _, path in shown if not (run / path).is_dir())
        expected[f"{part}.html"] += 1  # the notebook itself
    held = collections.Counter(Path(n).name for n in names if "/data/raw/" in n)
    missing = {name: k - held[name] for name, k in expected.items() if held[name] < k}
    assert not missing, missing
    for category in {i.category for i in ITEMS} | {"Notebooks", "Confusion matrices", "Per-class IoU"}:
        assert category in html, category
    assert any(n.endswith("/Rennes.png") for n in names) and any(n.endswith("/maps.csv") for n in names)


def test_second_run_does_nothing_quickly(run: Path):
    t0 = time.monotonic()
    proc = snakemake(run, "--cores", "2", *TINY)
    elapsed = time.monotonic() - t0
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert elapsed < 10, f"an up-to-date workflow took {elapsed:.1f} s to say so"


def test_same_parameters_same_manifest(run: Path, tmp_path: Path):
    """A second fresh copy regenerates the data: byte-identical manifest and crops."""
    other = copy_repo(tmp_path / "again")
    snakemake(other, "data/tinyminifrance/manifest.csv", "--cores", "2", *TINY)
    a = run / "data/tinyminifrance/manifest.csv"
    b = other / "data/tinyminifrance/manifest.csv"
    assert a.read_bytes() == b.read_bytes()


def test_rerun_gives_identical_metrics(run: Path, tmp_path: Path):
    """On the CPU, training is deterministic: forcing the pretraining and evaluation again reproduces the
    scores exactly (throughput and timing fields aside). In a copy of the run, and only up to the metrics and
    maps (`--until`: not the appearance and report jobs downstream of the encoder), so that the shared run stays
    complete for the tests after this one."""
    repo = copy_run(run, tmp_path / "copy")
    evals = sorted((repo / "results/evaluate").rglob("metrics.json"))
    assert evals
    before = {p: json.loads(p.read_text()) for p in evals}
    evaluated = {p: p.stat().st_mtime_ns for p in evals}
    pre = sorted((repo / "results/pretrain").rglob("encoder.pt"))
    before_w = {p: p.read_bytes() for p in pre}
    import rasterio

    maps = sorted((repo / "results/maps").rglob("*.tif"))
    before_maps, written = {}, {p: p.stat().st_mtime_ns for p in maps}
    for p in maps:
        with rasterio.open(p) as m:
            before_maps[p] = m.read()
    snakemake(repo, "--cores", "2", *TINY, "--forcerun", "pretrain", "evaluate", "--until", "collect_evaluation",
              "predict")
    assert all(p.stat().st_mtime_ns > evaluated[p] for p in evals)  # every evaluation ran again
    for p, old in before.items():
        new = json.loads(p.read_text())
        for key in ("oa", "miou", "kappa", "per_class_iou", "confusion"):
            assert new[key] == old[key], (p, key)
    assert maps and all(p.stat().st_mtime_ns > written[p] for p in maps)
    for p in maps:  # re-predicted by the re-trained model: the same maps
        with rasterio.open(p) as m:
            assert (m.read() == before_maps[p]).all(), p
    import torch

    for p in pre:
        a = torch.load(p, map_location="cpu", weights_only=True)["state_dict"]
        b_path = p.with_suffix(".before")
        b_path.write_bytes(before_w[p])
        b = torch.load(b_path, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a), p


def test_nothing_changed_reruns_nothing(run: Path):
    assert planned_rules(run) == set()


def test_report_parameter_reruns_only_reports(run: Path):
    """The figure resolution re-draws every figure and notebook (and re-versions the reports), nothing else."""
    rules = planned_rules(run, "--config", "report={'dpi': 72}")
    items = {f"report_items_{p}" for p in ("data", "appearance", "pretraining", "evaluation")}
    assert rules == {"appearance_figures", "class_representativeness", "map_previews", "report_data",
                     "report_appearance", "report_pretraining", "report_evaluation", "report_index", "dvc_track",
                     *items}, rules


def test_naming_another_model_reruns_only_that_evaluation(run: Path):
    """predict.seed names another evaluation job: that job runs again to save its model (the one named before
    does not), then the maps and what shows them."""
    out = snakemake(run, "-n", "--cores", "2", *TINY, "--config", "predict={'seed': 1}")
    text = out.stdout + out.stderr
    assert planned_rules(run, "--config", "predict={'seed': 1}") == {
        "evaluate_model", "collect_evaluation", "predict", "map_previews", "report_items_evaluation",
        "report_evaluation", "report_index", "dvc_track"}
    assert len(re.findall(r"rule evaluate_model:", text)) == 1 and "rule evaluate:" not in text
    assert "seed=1" in text.split("rule evaluate_model:")[1].split("rule ")[0]


def test_pretrain_parameter_reruns_that_method_and_downstream(run: Path):
    import yaml

    cfg = yaml.safe_load((run / "tests/configs/tiny.yaml").read_text())
    method = cfg["pretrain"]["methods"][0]
    out = snakemake(run, "-n", "--cores", "2", *TINY, "--config",
                    f"pretrain={{'method_params': {{'{method}': {{'temperature': 0.3}}}}}}", check=False)
    text = out.stdout + out.stderr
    rules = planned_rules(run, "--config",
                          f"pretrain={{'method_params': {{'{method}': {{'temperature': 0.3}}}}}}")
    assert "pretrain" in rules, text
    assert not rules & {"generate", "index_tiles", "subsample", "pack"}, rules
    # only the changed method's pretraining job
    assert len(re.findall(r"rule pretrain:", text)) == 1, text
    assert f"wildcards: method={method}" in text


# README "What a change re-runs": `snakemake --list-changes params` lists every job's last output whatever changed
# (Snakemake 9.27: ParamsChange.__or__ keeps the files of an empty change), so the README lists the outputs whose
# status in `snakemake --summary` is "params changed".
LIST_PARAMS_CHANGES = "snakemake --summary {args} | awk -F '\\t' '$5 == \"params changed\" {{print $1}}'"


def params_changed(repo: Path, *extra: str) -> list[str]:
    """The README's command, run as a user types it (with the tiny configuration)."""
    import os
    import shlex
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert LIST_PARAMS_CHANGES.format(args="").replace("  ", " ") in readme
    command = LIST_PARAMS_CHANGES.format(args=shlex.join([*TINY, *extra]))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


def test_listed_params_changes_are_exactly_the_changed_ones(run: Path):
    """No change lists nothing; a report-only change lists only the figures (and the tables drawn with them)."""
    assert params_changed(run) == []
    listed = params_changed(run, "--config", "report={'dpi': 72}")
    assert listed, "a changed figure resolution lists no output"
    figures = re.compile(r"^(results/appearance/[^/]+/figures/|results/classes/|reports/(data|appearance|pretraining|"
                         r"evaluation)/|results/maps/[^/]+/previews$)")
    assert all(figures.match(p) for p in listed), listed
    assert "reports/evaluation/scores_vs_fraction.png" in listed and "results/classes/figures/colour_histograms.png" in listed


def test_failed_notebook_leaves_no_report(run: Path, tmp_path: Path):
    """A notebook that raises fails its rule and leaves nothing at the output paths."""
    from tmf.report.notebook import execute_notebook

    nb = run / "workflow/notebooks/data.ipynb"
    broken = tmp_path / "broken.ipynb"
    text = nb.read_text().replace('items = []', 'items = []\\nraise RuntimeError(\\"boom\\")')
    assert text != nb.read_text()
    broken.write_text(text)
    html, ipynb = tmp_path / "out.html", tmp_path / "out.ipynb"
    with pytest.raises(Exception, match="boom"):
        execute_notebook(broken, html, ipynb, {}, cwd=run)
    assert not html.exists() and not ipynb.exists()
    assert not list(tmp_path.glob(".out*"))


def _checksums(root: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_copied_project_tracks_into_itself(run: Path, tmp_path: Path):
    """cp -a of the finished project and a job run again in the copy: every file of the original stays
    byte-identical (MLflow keeps absolute artifact locations; they follow the copy's store)."""
    from mlflow.tracking import MlflowClient

    copy = copy_run(run, tmp_path / "copy")
    before = _checksums(run)
    snakemake(copy, "--cores", "2", *TINY, "--forcerun", "report_index")
    assert _checksums(run) == before
    client = MlflowClient(f"sqlite:///{copy}/results/mlflow/mlflow.db")
    (job,) = client.search_runs([client.get_experiment_by_name("tmf").experiment_id],
                                "attributes.run_name LIKE 'report-index%'", order_by=["attributes.start_time DESC"],
                                max_results=1)
    assert job.info.artifact_uri.startswith((copy / "results/mlflow/artifacts").as_uri())
    assert {a.path for a in client.list_artifacts(job.info.run_id)} == {"index.html"}
