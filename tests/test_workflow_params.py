"""The workflow's parameters: one schema with defaults, validated before any job runs; `snakemake --lint` clean."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import BIN, REPO, snakemake

from tmf import config
from tmf.cli import main


def test_defaults_fill_every_section():
    params = config.validate({})
    for section in ("data", "subsample", "appearance", "pretrain", "evaluate", "report", "tracking"):
        assert section in params
    assert params["data"]["source"] == "synthetic"
    assert params["subsample"]["n_subtiles"] == 3500  # the thesis' tinyMiniFrance


@pytest.mark.parametrize("name", ["default.yaml", "minifrance.yaml", "dfc2022.yaml", "hyperbolic.yaml",
                                  "semisup.yaml"])
def test_params_files_are_valid(name):
    config.load_params(REPO / "params" / name)


def leaves(d: dict, prefix: str = "") -> dict[str, object]:
    """Every parameter of a nested dict, by dotted name (lists and empty sections are values)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


STUDY_FILES = sorted(p.name for p in (REPO / "params").glob("*.yaml")
                     if (yaml.safe_load(p.read_text()) or {}).get("base") == "study")


def test_minifrance_and_dfc2022_are_real_study_files():
    assert {"minifrance.yaml", "dfc2022.yaml"} <= set(STUDY_FILES)


@pytest.mark.parametrize("name", STUDY_FILES)
def test_real_study_files_are_the_real_study(name):
    """Every value a `base: study` file (params/minifrance.yaml, ...) does not set is the schema's default (the
    real study), none the embedded default's: as tmf.config resolves it, and as the workflow's jobs receive it."""
    import json
    import re

    from tmf.plan import Plan

    given = yaml.safe_load((REPO / "params" / name).read_text())
    if not given["data"].get("url"):
        given = config.overlay(given, {"data": {"url": "/data/archive.zip"}})
    resolved = config.workflow_config(given, REPO / "params/default.yaml")
    effective, defaults, set_here = leaves(resolved), leaves(config.validate({})), leaves(given)
    assert set(effective) == set(defaults)
    for key, value in effective.items():
        if key != "pretrain.methods" or "all" not in set_here.get(key, []):
            assert value == set_here.get(key, defaults[key]), key
    # the workflow's own resolution: a pretraining job's --cfg as the dry run prints it
    method, seed = resolved["pretrain"]["methods"][0], resolved["pretrain"]["seeds"][0]
    proc = snakemake(REPO, "-n", "-p", "--configfile", f"params/{name}", "--config",
                     f"data={json.dumps({'url': given['data']['url']})}")
    found = re.search(rf"tmf pretrain --method {method} --seed {seed} .*--cfg '([^']+)'", proc.stdout)
    assert found, proc.stdout[-3000:]
    assert json.loads(found.group(1)) == Plan(resolved).job("pretrain", {"method": method, "seed": seed}).cfg
    if "pretrain.crop_size" not in set_here:
        assert json.loads(found.group(1))["crop_size"] == defaults["pretrain.crop_size"] == 224


def test_overlays_keep_overlaying_the_embedded_default():
    embedded = leaves(config.workflow_config({}, REPO / "params/default.yaml"))
    for name in ("tests/configs/tiny.yaml", "params/hyperbolic.yaml", "params/semisup.yaml", "tests/slurm/tiny.yaml"):
        given = yaml.safe_load((REPO / name).read_text())
        assert "base" not in given, name
        effective = leaves(config.workflow_config(given, REPO / "params/default.yaml"))
        set_here = leaves(given)
        for key, value in effective.items():
            if key not in set_here and not any(key.startswith(k + ".") for k in set_here):
                assert value == embedded[key], (name, key)


def test_every_bad_configuration_stops_the_dry_run_before_any_job():
    """Each bad parameter of tests/test_plan.py's list, given as `--config`, stops `snakemake -n` at the
    configuration, with the parameter named."""
    import json
    import re
    from concurrent.futures import ThreadPoolExecutor

    from test_plan import BAD

    def dry(given: dict) -> str:
        args = [f"{section}={json.dumps(value)}" for section, value in given.items()]
        proc = snakemake(REPO, "-n", "--config", *args, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(dry, [given for given, _ in BAD]))
    failures = []
    for (given, message), (rc, text) in zip(BAD, results, strict=True):
        if rc == 0 or "ParamsError" not in text or not re.search(message, text) or "Job stats" in text:
            failures.append((given, rc, text[-600:]))
    assert not failures, failures


def test_invalid_parameter_is_named():
    with pytest.raises(config.ParamsError, match=r"subsample\.size"):
        config.validate({"subsample": {"size": 2}})
    with pytest.raises(config.ParamsError, match=r"data\.source"):
        config.validate({"data": {"source": "landsat"}})


def test_unknown_parameter_is_named():
    with pytest.raises(config.ParamsError, match="subsampel"):
        config.validate({"subsampel": {}})


def test_cli_help_lists_stages(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for stage in ("generate", "subsample", "pretrain", "evaluate", "report-notebook"):
        assert stage in out


def test_workflow_rejects_invalid_parameter_before_any_job():
    proc = snakemake(REPO, "-n", "--config", "subsample={'size': 2}", check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "size" in text and "minimum" in text
    assert "rule generate" not in text


def test_real_study_without_data_url_stops_before_any_job():
    proc = snakemake(REPO, "-n", "--configfile", "params/minifrance.yaml", check=False)
    text = proc.stdout + proc.stderr
    assert yaml.safe_load((REPO / "params/minifrance.yaml").read_text())["data"]["url"] == ""
    assert proc.returncode != 0 and "data.url is empty" in text, text[-2000:]
    assert "rule fetch" not in text and "Job stats" not in text


def test_workflow_schema_is_the_package_schema():
    """One source of truth: workflow/schemas/params.schema.yaml is the file tmf validates with."""
    wf = yaml.safe_load((REPO / "workflow/schemas/params.schema.yaml").read_text())
    assert wf == config.schema()


def test_snakemake_lint_is_clean():
    proc = snakemake(REPO, "--lint", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "Lints for" not in text, text


def test_cli_bad_params_file_names_it(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("subsample: {size: -3}\n")
    proc = subprocess.run([str(BIN / "tmf"), "subsample", "--params", str(bad), "--tiles", "x", "--root", "y", "--out", "z"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "subsample.size" in proc.stderr and str(bad) in proc.stderr


def test_broken_input_file_stops_the_run_before_training(tmp_path):
    """Real-data source pointing at a folder with one corrupt tile: the run stops at the tile check, naming the
    file, and no pretraining or evaluation job starts."""
    import numpy as np
    import rasterio
    from conftest import copy_repo
    from rasterio.transform import from_origin

    data = tmp_path / "MiniFrance"
    for split, city in (("labeled", "Nice"), ("test", "Cherbourg")):
        folder = data / split / city / "BDORTHO"
        folder.mkdir(parents=True)
        (data / split / city / "UrbanAtlas").mkdir()
        stem = "06-2014-1040-6300-LA93-0M50-E080" if city == "Nice" else "50-2013-0365-6965-LA93-0M50-E080"
        profile = dict(driver="GTiff", height=64, width=64, crs="EPSG:2154", transform=from_origin(0, 64, 0.5, 0.5))
        with rasterio.open(folder / f"{stem}.tif", "w", count=3, dtype="uint8", **profile) as f:
            f.write(np.zeros((3, 64, 64), np.uint8))
        with rasterio.open(data / split / city / "UrbanAtlas" / f"{stem}_UA2012.tif", "w", count=1, dtype="uint8",
                           **profile) as f:
            f.write(np.ones((1, 64, 64), np.uint8))
    bad = data / "test" / "Cherbourg" / "BDORTHO" / "50-2013-0365-6965-LA93-0M50-E080.tif"
    bad.write_bytes(b"not a tiff at all")
    repo = copy_repo(tmp_path / "repo")
    proc = snakemake(repo, "--cores", "1", "--config", f"data={{'source': 'minifrance', 'url': '{data}'}}",
                     "tracking={enabled: false}", check=False)
    assert proc.returncode != 0
    log = (repo / "logs/data/index_tiles.log").read_text()
    assert bad.name in log, log
    assert not (repo / "results/pretrain").exists()
    assert not (repo / "data/tinyminifrance").exists()


def test_command_line_overrides_get_schema_types():
    """`snakemake --config report='{dpi: 150}'` hands nested values over as strings."""
    raw = {"report": {"dpi": "150"}, "tracking": {"enabled": "false"}, "evaluate": {"seeds": ["0", "1"],
           "fractions": ["0.01", "1"]}, "appearance": {"svm": {"gamma": "scale"}}, "pretrain": {"methods": ["all"]}}
    params = config.validate(config.coerce_strings(raw))
    assert params["report"]["dpi"] == 150 and params["tracking"]["enabled"] is False
    assert params["evaluate"]["seeds"] == [0, 1] and params["evaluate"]["fractions"] == [0.01, 1]
    assert params["appearance"]["svm"]["gamma"] == "scale" and params["pretrain"]["methods"] == ["all"]
    with pytest.raises(config.ParamsError, match="report.dpi"):
        config.validate(config.coerce_strings({"report": {"dpi": "many"}}))


@pytest.mark.parametrize("name", STUDY_FILES)
def test_real_study_files_run_on_public_data(name):
    """What the public releases can run: test set auto (the held-out tiles without test labels), no oracle (no
    labels for the unlabeled cities)."""
    from tmf.plan import Plan

    given = config.overlay(yaml.safe_load((REPO / "params" / name).read_text()), {"data": {"url": "/data/a.zip"}})
    plan = Plan(config.workflow_config(given, REPO / "params/default.yaml"))
    methods = {j.wildcards["method"] for j in plan.jobs("evaluate")}
    assert "oracle" not in methods and {"random", "supervised", "berundanet_l1", "berundanet_kmeans"} <= methods
    assert {j.cfg["test_set"] for j in plan.jobs("evaluate")} == {"auto"}


def test_dfc2022_draw_is_one_sub_tile_per_tile():
    """params/dfc2022.yaml's tinyMiniFrance draw on DFC2022's 3,981 georeferenced tiles of ~2,000 px: every tile
    gives exactly one 1,000 px sub-tile (seed 004 §2.3.2 rules 1 and 2)."""
    import numpy as np
    import pandas as pd

    from tmf.data.minifrance import CITIES
    from tmf.data.subsample import select_subtiles

    sub = yaml.safe_load((REPO / "params/dfc2022.yaml").read_text())["subsample"]
    train = [c for c in CITIES if c.split != "test"]
    val = [c for c in CITIES if c.split == "test"]
    rows = []
    for cities, total in ((train, 1915), (val, 2066)):  # SPEC.md §7; the split among cities is ours
        per = np.diff(np.round(np.linspace(0, total, len(cities) + 1))).astype(int)
        for city, n in zip(cities, per, strict=True):
            side = 2000 - (n % 3)  # ~2,000 px
            rows += [{"city": city.name, "split": city.split, "tile": f"{city.dept}-{k}", "height": side,
                      "width": side, "image": f"{city.name}/{k}.tif", "label": ""} for k in range(n)]
    tiles = pd.DataFrame(rows)
    assert len(tiles) == sub["n_subtiles"] == 3981
    drawn = select_subtiles(tiles, sub["n_subtiles"], sub["size"], sub["seed"])
    assert drawn.groupby(["city", "tile"]).size().eq(1).all() and len(drawn) == 3981
