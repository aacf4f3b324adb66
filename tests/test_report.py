"""The report's pieces on hand-made inputs: the findings (sentences from the numbers), the tables (missing values,
published columns only where comparable), the item registry (every item drawn by one function, captioned, cited by
author and year), the notebooks' display of items, the index page and the notebook execution (code hidden, a
clean log). The whole report of a real run is checked by tests/test_workflow_e2e.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tmf.report import findings as F
from tmf.report import items
from tmf.report import scores as T
from tmf.report.html import Html, render_table, table_fragment, write_table
from tmf.report.items import Context

REPO = Path(__file__).resolve().parents[1]


def agg_row(protocol, method, fraction, miou, std, n=3, oa=0.5):
    return {"protocol": protocol, "method": method, "test_set": "test_cities", "status": "ok", "reason": "",
            "fraction": fraction, "n_seeds": n, "n_train": 10,
            "miou_mean": miou, "miou_std": std, "oa_mean": oa, "oa_std": std, "kappa_mean": 0.1, "kappa_std": std}


# ---- findings
def test_pretrained_vs_random_says_more_than_the_spread_only_when_it_is():
    agg = pd.DataFrame([agg_row("finetune", "simclr", 0.01, 0.20, 0.02), agg_row("finetune", "ssw", 0.01, 0.12, 0.01),
                        agg_row("finetune", "random", 0.01, 0.10, 0.01),
                        agg_row("finetune", "simclr", 1.0, 0.30, 0.05), agg_row("finetune", "random", 1.0, 0.28, 0.04)])
    low, high = F.pretrained_vs_random(agg)
    assert low.item == "segmentation_vs_published"
    assert ("With 1 % of the labels, fine-tuning from the best pretrained encoder (simclr) reaches mIoU "
            "20.0 ± 2.0 % (n = 3) against 10.0 ± 1.0 % (n = 3) from random initialisation: +10.0 points, more than "
            "the spread (3.0, the two standard deviations added).") in low.text
    assert "1 of 2 pretrained encoders beat random initialisation by more than the spread" in low.text  # ssw: +2 < 2
    assert "+2.0 points, within the spread (9.0, the two standard deviations added): no clear difference" in high.text
    assert "pretrained encoders beat" not in high.text  # one pretrained encoder: no count


def test_a_single_seed_has_no_spread_to_compare_with():
    agg = pd.DataFrame([agg_row("linear", "simclr", 1.0, 0.2, np.nan, n=1),
                        agg_row("linear", "random", 1.0, 0.1, np.nan, n=1)])
    (f,) = F.pretrained_vs_random(agg)
    assert "mIoU 20.0 % (n = 1) against 10.0 % (n = 1)" in f.text and "one seed: no spread" in f.text
    assert "linear probe" in f.text
    agg = pd.DataFrame([agg_row("finetune", "simclr", 0.1, 0.2, np.nan, n=1),
                        agg_row("finetune", "simclr", 1.0, 0.1, np.nan, n=1)])
    (f,) = F.label_fraction_trend(agg)
    assert "has one seed, so no spread to judge a change by, for 1 of 1: simclr (20.0 % → 10.0 %)" in f.text


def test_label_fraction_trend_sorts_methods_by_what_the_spread_allows():
    agg = pd.DataFrame([agg_row("finetune", "simclr", 0.01, 0.10, 0.01), agg_row("finetune", "simclr", 1.0, 0.30, 0.01),
                        agg_row("finetune", "ssw", 0.01, 0.20, 0.01), agg_row("finetune", "ssw", 1.0, 0.10, 0.01),
                        agg_row("finetune", "random", 0.01, 0.10, 0.05), agg_row("finetune", "random", 1.0, 0.12, 0.05),
                        agg_row("linear", "simclr", 1.0, 0.1, 0.01)])
    (f,) = F.label_fraction_trend(agg)  # linear has one fraction: no trend
    assert f.item == "scores_vs_fraction"
    assert f.text == ("From 1 % to 100 % of the labels, the mIoU of fine-tuning rises for 1 of 3: simclr (10.0 ± 1.0 % "
                      "→ 30.0 ± 1.0 %); falls for 1 of 3: ssw (20.0 ± 1.0 % → 10.0 ± 1.0 %); changes by less than the "
                      "spread for 1 of 3: random (10.0 ± 5.0 % → 12.0 ± 5.0 %).")


def test_strongest_and_weakest_method_at_the_largest_fraction():
    agg = pd.DataFrame([agg_row("finetune", "simclr", 1.0, 0.30, 0.01), agg_row("finetune", "ssw", 1.0, 0.25, 0.01),
                        agg_row("finetune", "random", 1.0, 0.10, 0.01), agg_row("finetune", "random", 0.01, 0.9, 0.01)])
    (f,) = F.strongest_and_weakest(agg)
    assert ("the strongest method under fine-tuning is simclr (mIoU 30.0 ± 1.0 % (n = 3)) and the weakest random "
            "(10.0 ± 1.0 % (n = 3)), of 3 methods: +20.0 points, more than the spread") in f.text


def test_coverage_gap_against_the_spread_and_the_published_table():
    summaries = {"random-resnet34": {"status": "ok", "seeds": [0, 1, 2], "split_coverage": {
        "labeled_vs_test": {"iot": {"mean": 0.69, "std": 0.02}, "iou": {"mean": 0.5, "std": 0.1}},
        "unlabeled_vs_test": {"iot": {"mean": 0.76, "std": 0.03}, "iou": {"mean": 0.6, "std": 0.1}}}},
        "imagenet-vgg16": {"status": "skipped", "reason": "no weights"}}
    (f,) = F.coverage_gap(F.coverage_frame(summaries), {"labeled_vs_test": {"iot": 0.64},
                                                        "unlabeled_vs_test": {"iot": 0.93}})
    assert f.item == "coverage_vs_published"
    assert f.text == ("Appearance coverage (random-resnet34 features, 3 t-SNE seeds): the unlabeled cities cover the "
                      "test cities with IoT 0.76 ± 0.03 against 0.69 ± 0.02 for the labeled cities: a gap of +0.07, "
                      "more than the spread (0.05, the two standard deviations added). Castillo-Navarro 2022 "
                      "(Table 2.7) reports 0.93 against 0.64.")
    summaries["random-resnet34"]["split_coverage"]["unlabeled_vs_test"]["iot"]["mean"] = 0.72
    (f,) = F.coverage_gap(F.coverage_frame(summaries))
    assert "a gap of +0.03, within the spread (0.05, the two standard deviations added): no clear difference" in f.text


def test_no_results_no_findings():
    assert F.findings(None, None) == []
    assert F.findings(pd.DataFrame([agg_row("finetune", "simclr", 1.0, 0.3, 0.01)]), F.coverage_frame({})) == []


# ---- tables
def write_agg(tmp_path: Path, rows) -> Context:
    path = tmp_path / "summary_agg.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return Context({"aggregate": str(path)})


def test_published_columns_only_where_a_row_is_comparable(tmp_path):
    from tmf.report.scores import segmentation_vs_published

    ssl_only = write_agg(tmp_path, [agg_row("finetune", "simclr", 1.0, 0.3, 0.01),
                                    agg_row("knn", "simclr", 1.0, 0.3, 0.01)])
    df = segmentation_vs_published(ssl_only)
    assert not [c for c in df.columns if "Table 3.1" in str(c)]
    assert list(df["protocol"]) == ["finetune"]  # scene-level protocols are not segmentation
    both = write_agg(tmp_path, [agg_row("finetune", "simclr", 1.0, 0.3, 0.01),
                                agg_row("finetune", "supervised", 1.0, 0.2, 0.01),
                                agg_row("finetune", "supervised", 0.1, 0.1, 0.01)])
    df = segmentation_vs_published(both)
    assert [None if pd.isna(v) else v for v in df["mIoU, Table 3.1 (%)"]] == [None, 18.18, None]
    html = str(render_table(df, "Data: x"))
    assert "None" not in html and "nan" not in html.lower() and html.count("—") == 4
    assert "<caption>Data: x</caption>" in html and "data" not in list(df.columns)


def test_render_table_cells():
    df = pd.DataFrame({"a": [None, np.nan, "x<y"], Html("<b>h</b>"): [Html("<i>k</i>"), 1.23456, "3.0 ± 1.0"]})
    html = str(render_table(df))
    assert "<th><b>h</b></th>" in html and "<td><i>k</i></td>" in html and "x&lt;y" in html
    assert html.count("<td>—</td>") == 2 and '<td class="num">1.235</td>' in html
    assert '<td class="num">3.0 ± 1.0</td>' in html


def test_table_file_opens_alone_and_embeds(tmp_path):
    path = write_table(tmp_path / "t.html", "A title", render_table(pd.DataFrame({"a": [1]}), "Data: synthetic"))
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text and "<title>A title</title>" in text
    fragment = str(table_fragment(path))
    assert fragment.startswith("<style>") and "<table" in fragment and "<html" not in fragment
    (tmp_path / "other.html").write_text("<table></table>")
    with pytest.raises(ValueError, match="not a table written by tmf report-items"):
        table_fragment(tmp_path / "other.html")


def test_class_names_and_colours_head_the_per_class_table(tmp_path):
    from tmf.report.scores import per_class_iou

    row = agg_row("finetune", "simclr", 1.0, 0.3, 0.01)
    row.update({"iou_1_mean": 0.5, "iou_1_std": 0.1, "iou_2_mean": np.nan, "iou_2_std": np.nan})
    html = str(render_table(per_class_iou(write_agg(tmp_path, [row]))))
    assert "urban fabric" in html and "#DB5F57" in html and "50.0 ± 10.0" in html
    assert "industrial" not in html  # a class never scored in this run has no column


# ---- the registry of items
def test_every_item_is_drawn_by_its_function_and_has_a_caption_citing_by_author():
    from tmf.report import figures, scores, tables

    for item in items.ITEMS:
        if item.kind == "figure":
            assert callable(getattr(figures, item.name)), item.name
        elif item.kind == "table":  # the evaluation notebook's tables in scores.py, the others in tables.py
            assert callable(getattr(scores if item.part == "evaluation" else tables, item.name)), item.name
        caption = REPO / "workflow" / "report" / f"{item.part}_{item.name}.rst"
        assert caption.is_file(), caption
    for text in [p.read_text() for p in (REPO / "workflow" / "report").glob("*.rst")] + [
            i.title for i in items.ITEMS]:
        assert not re.search(r"seed 00\d", text), text
    with pytest.raises(ValueError, match="did you mean 'confusion'"):
        items.item("confusoin")


def test_anchors_and_output_keys_follow_the_items_keys():
    keys = {"seed": "0", "fraction": "0.1", "method": "simclr", "protocol": "finetune_euclidean_d3"}
    assert items.anchor("confusion", keys) == "confusion-finetune_euclidean_d3-simclr-0.1-0"
    assert items.output_key("confusion", keys) == "confusion__finetune_euclidean_d3__simclr__0_1__0"
    assert items.anchor("loss_curves") == "loss_curves"


def test_notebooks_show_their_items_and_no_others():
    import nbformat

    for part in {i.part for i in items.ITEMS}:
        nb = nbformat.read(REPO / "workflow" / "notebooks" / f"{part}.ipynb", as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        shown = set(re.findall(r'"([a-z_0-9]+)"', " ".join(re.findall(r"show\(([^)]*)\)", code))))
        assert shown == {i.name for i in items.items(part)}, part
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert not re.search(r"seed 00\d", text), part


# ---- display in a notebook
def test_items_display_with_anchor_title_and_caption(tmp_path):
    from tmf.report.display import Items

    (tmp_path / "workflow" / "report").mkdir(parents=True)
    for name in ("confusion", "predictions", "evaluation_runs"):
        (tmp_path / "workflow" / "report" / f"evaluation_{name}.rst").write_text(
            (REPO / "workflow" / "report" / f"evaluation_{name}.rst").read_text())
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG fake")
    table = write_table(tmp_path / "t.html", "t", render_table(pd.DataFrame({"a": [1]})))
    keys = {"fraction": "1", "method": "simclr", "protocol": "finetune", "seed": "0"}
    shown = Items([["confusion", keys, "a.png"], ["predictions", keys, "a.png"], ["evaluation_runs", {}, "t.html"]],
                  root=tmp_path)
    html = str(shown.html("confusion", "predictions"))
    assert html.startswith("<h3>finetune · simclr · 100 % of the labels · seed 0</h3>")
    assert '<section id="confusion-finetune-simclr-1-0"><h4>Confusion matrix</h4><img alt="Confusion matrix"' in html
    assert html.index("confusion-finetune") < html.index("predictions-finetune")
    assert "Scored sub-tiles of finetune / simclr, label fraction 1, seed 0" in html  # the caption's wildcards
    assert '<section id="evaluation_runs"><h3>Every evaluation run</h3><style>' in str(shown.html("evaluation_runs"))
    assert table.exists()
    with pytest.raises(ValueError, match="unknown report item 'confusoin'"):
        shown.html("confusoin")
    with pytest.raises(FileNotFoundError, match="b.png"):
        Items([["loss_curves", {}, "b.png"]], root=tmp_path).html("loss_curves")


# ---- the index page
def test_index_opens_with_the_findings_linked_to_their_items(tmp_path):
    from tmf.report.index import write_index

    table = write_table(tmp_path / "reports" / "evaluation" / "s.html", "s", render_table(pd.DataFrame({"a": [None]})))
    out = tmp_path / "reports" / "index.html"
    pages = [("evaluation", "Evaluation", str(tmp_path / "reports/notebooks/evaluation.html"), "scores"),
             ("appearance", "Appearance", str(tmp_path / "reports/notebooks/appearance.html"), "coverage")]
    heading = T.segmentation_heading(["labeled_holdout"])
    write_index(out, pages, [("segmentation_vs_published", str(table))], "synthetic",
                [F.Finding("A & B.", "segmentation_vs_published"), F.Finding("C.", "coverage_vs_published")],
                {"segmentation_vs_published": heading})
    html = out.read_text()
    assert html.index("What this run found") < html.index("Notebooks") < html.index("Ours vs published")
    link = (f'<a href="notebooks/evaluation.html#segmentation_vs_published">'
            f'{items.item("segmentation_vs_published").title}</a>')
    assert f"<li>A &amp; B. <small>(see {link})</small></li>" in html
    assert f'<h3 id="segmentation_vs_published">{heading} <small>({link})</small></h3>' in html
    assert heading == ("Segmentation on held-out tiles of the labeled cities (no published counterpart: Table 3.1 "
                       "scores the test cities)")
    assert T.segmentation_heading(["test_cities", "cross_city"]) == (
        "Segmentation on the test cities; on each labeled city, trained on the other(s) (vs Table 3.1, "
        "Castillo-Navarro 2022, on the test cities)")
    assert 'href="notebooks/appearance.html#coverage_vs_published"' in html
    assert "None" not in html and "<td>—</td>" in html and "embedded synthetic data" in html


# ---- notebooks: code hidden, a clean log
def test_a_finished_kernel_is_not_interrupted_at_shutdown(monkeypatch):
    import asyncio

    from jupyter_client.manager import AsyncKernelManager

    from tmf.report.notebook import QuietShutdownKernelManager

    calls = []

    async def interrupt(self):
        calls.append(self.shutting_down)

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", interrupt)
    km = QuietShutdownKernelManager()
    asyncio.run(km._async_interrupt_kernel())  # an interrupt asked for while running goes through
    km.shutting_down = True
    asyncio.run(km._async_interrupt_kernel())  # the one jupyter_client sends before a shutdown does not
    assert calls == [False]


def test_notebook_html_has_outputs_not_code_and_a_clean_log(tmp_path, capfd):
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from tmf.report.notebook import execute_notebook

    nb = new_notebook(cells=[new_markdown_cell("# Title"), new_code_cell("x = 6", metadata={"tags": ["parameters"]}),
                             new_code_cell("secret_variable_name = x * 7\nprint('answer', secret_variable_name)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "t.ipynb")
    execute_notebook(tmp_path / "t.ipynb", tmp_path / "t.html", tmp_path / "out.ipynb", {"x": 1}, cwd=tmp_path)
    html = (tmp_path / "t.html").read_text()
    assert "answer 7" in html and "Title" in html
    assert "secret_variable_name" not in html and "hl-ipython3" not in html  # no code cell input
    assert "secret_variable_name" in (tmp_path / "out.ipynb").read_text()  # the notebook keeps its code
    err = capfd.readouterr().err
    assert "[IPKernelApp]" not in err and "KeyboardInterrupt" not in err, err
    assert not list(tmp_path.glob("kernel*"))  # no IPC socket left in the working directory


def test_report_items_cli_refuses_an_item_outside_its_folder(tmp_path, capsys):
    from tmf.cli import main

    cfg = {"dpi": 50, "source": "synthetic", "inputs": {}, "items": [["loss_curves", {}, str(tmp_path / "x.png"), {}]]}
    assert main(["report-items", "--out-dir", str(tmp_path / "reports"), "--cfg", json.dumps(cfg)]) == 2
    assert "is not under --out-dir" in capsys.readouterr().err
