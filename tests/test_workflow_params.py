"""The workflow's parameters: one schema with defaults, validated before any job runs; `snakemake --lint` clean."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tmf import config
from tmf.cli import main

from conftest import BIN, REPO, snakemake


def test_defaults_fill_every_section():
    params = config.validate({})
    for section in ("data", "subsample", "appearance", "pretrain", "evaluate", "report", "tracking"):
        assert section in params
    assert params["data"]["source"] == "synthetic"
    assert params["subsample"]["n_subtiles"] == 3500  # the thesis' tinyMiniFrance


@pytest.mark.parametrize("name", ["default.yaml", "minifrance.yaml"])
def test_params_files_are_valid(name):
    config.load_params(REPO / "params" / name)


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
