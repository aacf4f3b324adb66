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


def execute_notebook(template: str | Path, html_out: str | Path, ipynb_out: str | Path,
                     parameters: dict, cwd: str | Path = ".") -> None:
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
        exporter = HTMLExporter(template_name="lab")
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
