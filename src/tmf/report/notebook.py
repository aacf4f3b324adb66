"""Execute a papermill notebook and render it to self-contained HTML, atomically.

A notebook that raises fails the rule (papermill raises ``PapermillExecutionError``) and nothing is left at the
output paths: the executed notebook and its HTML are written to temporary files and renamed only on success.
The HTML shows the notebook's markdown and outputs, not its code (the executed ``.ipynb`` keeps the code).

A clean log: jupyter_client (8.x) interrupts a kernel with SIGINT before it asks it to shut down; when the
signal lands while the kernel is still finishing its last message, ipykernel logs ``[IPKernelApp] ERROR |
KeyboardInterrupt caught in kernel`` in a notebook that ran fine. A finished notebook's kernel has nothing to
interrupt, so :class:`QuietShutdownKernelManager` skips that interrupt (the shutdown request, and a kill when it
is not answered, stay). The kernel runs over IPC sockets in a temporary folder, which ipykernel does not warn
about as it does for TCP without encryption.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

from tmf.io import atomic_path

log = logging.getLogger(__name__)


class QuietShutdownKernelManager(AsyncKernelManager):
    """A kernel manager that does not interrupt a kernel it is shutting down (see the module docstring)."""

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()

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
    from traitlets.config import Config

    template = Path(template)
    if not template.exists():
        raise FileNotFoundError(f"notebook template not found: {template}")
    with atomic_path(ipynb_out, suffix=".ipynb") as tmp_nb, tempfile.TemporaryDirectory(prefix="tmf-kernel-") as ipc:
        pm.execute_notebook(
            str(template), str(tmp_nb), parameters=parameters, cwd=str(cwd),
            kernel_name="python3", progress_bar=False, log_output=False,
            request_save_on_cell_execute=False, kernel_manager_class=QuietShutdownKernelManager,
            config=Config({"QuietShutdownKernelManager": {"transport": "ipc", "ip": str(Path(ipc) / "kernel")}}),
        )
        nb = nbformat.read(str(tmp_nb), as_version=4)
        exporter = HTMLExporter(template_name="lab", template_file="tmf_offline.html.j2",
                                extra_loaders=[jinja2.DictLoader({"tmf_offline.html.j2": OFFLINE_TEMPLATE})])
        exporter.exclude_input = True
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
