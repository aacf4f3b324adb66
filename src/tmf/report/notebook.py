"""Execute a papermill notebook and render it to self-contained HTML, atomically.

A notebook that raises fails the rule (papermill raises ``PapermillExecutionError``) and nothing is left at the
output paths: the executed notebook and its HTML are written to temporary files and renamed only on success.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tmf.io import atomic_path

log = logging.getLogger(__name__)

# nbconvert's "lab" template with the blocks that load scripts from a public CDN left empty (require.js for
# widgets, MathJax, Mermaid): the report notebooks use none of them, and the pages must open offline, e.g. on a
# cluster's login node, without fetching anything (figures are inline data: URIs already).
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def execute_notebook(template: str | Path, html_out: str | Path, ipynb_out: str | Path,
                     parameters: dict, cwd: str | Path = ".") -> None:
    import jinja2
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    template = Path(template)
    if not template.exists():
        raise FileNotFoundError(f"notebook template not found: {template}")
    with atomic_path(ipynb_out, suffix=".ipynb") as tmp_nb:
        pm.execute_notebook(
            str(template), str(tmp_nb), parameters=parameters, cwd=str(cwd),
            kernel_name="python3", progress_bar=False, log_output=False,
            request_save_on_cell_execute=False,
        )
        nb = nbformat.read(str(tmp_nb), as_version=4)
        exporter = HTMLExporter(template_name="lab", template_file="tmf_offline.html.j2",
                                extra_loaders=[jinja2.DictLoader({"tmf_offline.html.j2": OFFLINE_TEMPLATE})])
        exporter.exclude_input_prompt = True
        exporter.exclude_output_prompt = True
        body, _ = exporter.from_notebook_node(nb)
        with atomic_path(html_out, suffix=".html") as tmp_html:
            tmp_html.write_text(body)
    log.info("rendered %s -> %s", template, html_out)


def parse_parameters(text: str) -> dict:
    try:
        params = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--parameters: not valid JSON: {e}") from None
    if not isinstance(params, dict):
        raise ValueError("--parameters: expected a JSON object")
    return params
