"""Generate the reference pages at build time, from the code itself (mkdocs-gen-files runs this file).

Nothing here is copied by hand: the CLI page comes from the Typer apps, the HTTP page from the FastAPI
app's OpenAPI document, the settings and flags from ``Settings`` and ``Flag`` (with their ``#:``
comments), the error codes from ``jobforge.errors``' registry, the metrics from ``shared.metrics``. A
setting, flag or metric without a description fails the build, so the reference stays complete. No
part of it needs a running stack.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import inspect
import io
import json
import re
import sys
import tokenize
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ReferenceIncomplete(Exception):
    """The code lacks what a reference page needs (a description): the build fails naming it."""


def cell(text: object) -> str:
    """``text`` safe inside a Markdown table cell."""
    text = re.sub(r"``([^`]+)``", r"`\1`", str(text))  # reST literals (docstrings, comments) as Markdown code
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: object) -> str:
    """``text`` as inline code that is safe in a table cell: HTML, so a ``|`` cannot split the cell, and
    long names may wrap after ``_`` or ``.`` (never inside a word)."""
    if not str(text):
        return ""
    escaped = html.escape(str(text), quote=False).replace("|", "&#124;")
    return "<code>" + re.sub(r"([_.])", r"\1<wbr>", escaped) + "</code>"


def doc_comments(source: str) -> dict[int, str]:
    """``#:`` comments by the line (1-based) of the statement they precede, joined."""
    comments: dict[int, list[str]] = {}
    pending: list[str] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.string.startswith("#:"):
            pending.append(tok.string[2:].strip())
        elif tok.type == tokenize.COMMENT:
            pending = []
        elif tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            continue
        else:
            if pending:
                comments.setdefault(tok.start[0], []).extend(pending)
            pending = []
    return {line: " ".join(parts) for line, parts in comments.items()}


def class_attribute_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comment above each attribute assignment in the body of ``cls``."""
    source = inspect.getsource(cls)
    comments = doc_comments(source)
    docs: dict[str, str] = {}
    tree = ast.parse(source)
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    for node in body.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and node.lineno in comments:
            docs[target.id] = comments[node.lineno]
    return docs


# -- the command line ---------------------------------------------------------------------------------


def cli_page() -> str:
    import typer
    import typer.main
    from typer.cli import get_docs_for_click

    from workers.api import cli as api_cli
    from workers.cli import app
    from workers.worker import app as worker_app

    parts = ["# Command line\n",
             "Generated from the Typer apps of `jobforge` (`workers/cli.py`), `jobforge-worker` "
             "(`workers/worker.py`) and `jobforge-api` (`workers/api.py`). Exit codes: 0 ok, 1 a negative "
             "verdict, 2 a usage, refusal or infrastructure error (one line on stderr, starting with the "
             "[error code](errors.md)). Every command that prints data takes `--json`. Settings come from "
             "`JOBFORGE_*` variables ([settings](settings.md)).\n"]
    for name, typer_app in (("jobforge", app), ("jobforge-worker", worker_app), ("jobforge-api", api_cli)):
        command = typer.main.get_command(typer_app)
        ctx = typer.Context(command, info_name=name)
        parts.append(get_docs_for_click(obj=command, ctx=ctx, name=name, indent=1))
    # typer writes "```console\n$ jobforge ..." usage blocks; they are signatures, not sessions to run
    return "\n".join(parts).replace("```console\n", "```text\n")


# -- settings and flags -------------------------------------------------------------------------------


def default_text(spec: Any) -> str:
    value = spec.default()
    if value is None:
        return "unset"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    return str(value) if str(value) != "" else "empty"


def constraint_text(spec: Any) -> str:
    bits = []
    constraints = spec.declared.metadata
    for name, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤")):
        value = constraints.get(name)
        if value is not None:
            bits.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
    pattern = constraints.get("pattern")
    if pattern:
        bits.append(f"matches {code(pattern)}")
    return ", ".join(bits)


def settings_page() -> str:
    from shared.flags import Flag
    from shared.settings import ENV_PREFIX, Settings, specs
    from shared.templates import load_registry

    docs = class_attribute_docs(Settings)
    prefix = ENV_PREFIX
    lines = ["# Settings and feature flags\n",
             "Generated from `shared/settings.py` (`Settings`) and `shared/flags.py` (`Flag`).\n",
             "## Settings\n",
             f"Every process reads its settings from `{prefix}*` environment variables (and a `.env` file in "
             "its working directory); building them connects to nothing. Lists are comma separated. "
             "Settings without a description below are described by their name.\n",
             "| variable | type | default | constraint | what it sets |", "|---|---|---|---|---|"]
    undocumented = []
    for spec in specs():
        description = docs.get(spec.name, "")
        if not description:
            undocumented.append(spec.name)
        lines.append(f"| {code(prefix + spec.name.upper())} | {code(spec.annotation)} | "
                     f"{code(default_text(spec))} | {constraint_text(spec)} | {cell(description)} |")
    if undocumented:  # tolerated for the obvious ones, listed so they get a comment
        names = ", ".join(code(prefix + n.upper()) for n in undocumented)
        lines.append(f"\n*Described by their names only:* {names}.\n")

    flag_docs = class_attribute_docs(Flag)
    missing = [f.name for f in Flag if f.name not in flag_docs]
    if missing:
        raise ReferenceIncomplete(f"feature flags without a `#:` description in shared/flags.py: {missing}")
    users: dict[Flag, list[str]] = {flag: [] for flag in Flag}
    for template in load_registry(Settings(template_modules=[])):
        for flag in template.flags:
            users[flag].append(template.key)
    lines += ["\n## Feature flags\n",
              "Every capability is off until its flag is on. A flag's value is resolved at call time: a "
              "fleet-wide store override (`jobforge flags set NAME on|off`, honoured by running workers within "
              "`JOBFORGE_FLAG_OVERRIDE_TTL_SECONDS`), else the process environment (`NAME=1`), else off "
              "(the kill switch). An unparseable value is off.\n",
              "| flag | turns on | templates that need it |", "|---|---|---|"]
    for flag in Flag:
        lines.append(f"| {code(flag.value)} | {cell(flag_docs[flag.name])} | "
                     f"{', '.join(code(k) for k in users[flag]) or '—'} |")
    return "\n".join(lines) + "\n"


# -- error codes -------------------------------------------------------------------------------------


def errors_page() -> str:
    from jobforge import errors

    lines = ["# Error codes\n",
             "Generated from the error registry in `sdk/jobforge/errors.py` (each class declares its code, HTTP status "
             "and retryability). A failure has one stable code: the Temporal "
             "`ApplicationError` type, the first word of the CLI's error line, and the `code` of the HTTP API's "
             "`application/problem+json` answer (with the HTTP status below). **Retryable** errors are "
             "infrastructure trouble (retry with back-off: Temporal's retry policy does so inside workflows); "
             "the others are decisions that a retry will not change. Every answer also carries a "
             "human-readable `detail` built only from the error's own fields (never stacks or secrets).\n",
             "| code | HTTP status | retryable | meaning | class |", "|---|---|---|---|---|"]
    for cls in sorted(errors.ERRORS_BY_CODE.values(), key=lambda c: c.code):
        doc = " ".join((cls.__doc__ or "").split())
        lines.append(f"| {code(cls.code)} | {cls.status} | {'yes' if cls.retryable else 'no'} | {cell(doc)} | "
                     f"{code(cls.__name__)} |")
    lines += ["\nThe HTTP API adds a few codes of its own that no Python class carries: `internal_error` (500: an "
              "unexpected failure, logged), `method_not_allowed` (405) and `not_found` (404) for routes that do "
              "not exist, and `invalid_request` (422) for a body FastAPI cannot parse.\n"]
    return "\n".join(lines)


# -- metrics -----------------------------------------------------------------------------------------


@dataclass
class Instrument:
    name: str
    kind: str
    description: str
    unit: str = ""
    labels: list[str] = field(default_factory=list)
    helpers: list[str] = field(default_factory=list)


class _Meter:
    """Records what ``Metrics.on`` creates, without a Temporal runtime."""

    def __init__(self) -> None:
        self.made: list[Instrument] = []

    def _make(self, kind: str) -> Callable[..., str]:
        def make(name: str, description: str | None = None, unit: str | None = None) -> str:
            self.made.append(Instrument(name, kind, description or "", unit or ""))
            return name
        return make

    def __getattr__(self, attr: str) -> Callable[..., str]:
        kinds = {"create_counter": "counter", "create_histogram": "histogram", "create_histogram_float": "histogram",
                 "create_histogram_timedelta": "histogram", "create_gauge": "gauge", "create_gauge_float": "gauge"}
        if attr in kinds:
            return self._make(kinds[attr])
        raise AttributeError(attr)


def metric_usage(module_source: str) -> dict[str, tuple[list[str], list[str]]]:
    """For each ``Metrics`` field: the label names the helpers of ``shared/metrics.py`` pass, and those helpers."""
    usage: dict[str, tuple[list[str], list[str]]] = {}
    for fn in ast.parse(module_source).body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for node in ast.walk(fn):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("add", "record", "set") and isinstance(node.func.value, ast.Attribute)):
                labels, helpers = usage.setdefault(node.func.value.attr, ([], []))
                if len(node.args) > 1 and isinstance(node.args[1], ast.Dict):
                    for key in node.args[1].keys:
                        if isinstance(key, ast.Constant) and key.value not in labels:
                            labels.append(str(key.value))
                if fn.name not in helpers:
                    helpers.append(fn.name)
    return usage


def metrics_page() -> str:
    from shared import metrics

    meter = _Meter()

    class _Runtime:
        metric_meter = meter

    made = metrics.Metrics.on(_Runtime(), "")  # type: ignore[arg-type]  # a recording stand-in
    by_name = {i.name: i for i in meter.made}
    usage = metric_usage(inspect.getsource(metrics))
    rows = ["# Metrics\n",
            "Generated from `shared/metrics.py`. Each process serves one Prometheus endpoint, "
            "`http://<bind>/metrics`, when `JOBFORGE_METRICS_BIND` (worker) or `JOBFORGE_API_METRICS_BIND` (API) "
            "is set; the Temporal SDK's own `temporal_*` metrics share it. Counters get `_total` appended on the "
            "endpoint, durations are in seconds, and every series carries `jobforge_process`.\n",
            "| metric (as served) | type | labels | description | counted by |", "|---|---|---|---|---|"]
    for attr in (f.name for f in dataclasses.fields(made)):
        value = getattr(made, attr)
        if not isinstance(value, str) or value not in by_name:
            continue
        instrument = by_name[value]
        if not instrument.description:
            raise ReferenceIncomplete(f"metric {instrument.name} has no description in shared/metrics.py")
        labels, helpers = usage.get(attr, ([], []))
        served = instrument.name + ("_total" if instrument.kind == "counter" else "")
        helper_docs = "; ".join(
            f"`{h}()`: {' '.join((inspect.getdoc(getattr(metrics, h)) or '').split())}" for h in helpers)
        unit = f" (unit {instrument.unit})" if instrument.unit else ""
        rows.append(f"| {code(served)} | {instrument.kind}{unit} | {', '.join(code(x) for x in labels) or '—'} | "
                    f"{cell(instrument.description)} | {cell(helper_docs)} |")
    rows.append(f"\nBuckets of `{metrics.VERIFY_STEP_SECONDS}`, in seconds: "
                f"{', '.join(f'{b:g}' for b in metrics.STEP_SECONDS_BUCKETS)}.\n")
    return "\n".join(rows)


# -- the HTTP API ------------------------------------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    from shared.settings import Settings
    from workers.api import create_app

    document: dict[str, Any] = create_app(Settings()).fastapi.openapi()
    return document


def schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{anchor(name)})"
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            return " \\| ".join(schema_type(s) for s in schema[combinator])
    if "enum" in schema:
        return " \\| ".join(code(json.dumps(v)) for v in schema["enum"])
    if "const" in schema:
        return code(json.dumps(schema["const"]))
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {schema_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {schema_type(schema['additionalProperties'])}"
    return str(kind) + (f" ({schema['format']})" if "format" in schema else "")


def anchor(name: str) -> str:
    return "schema-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def properties_table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | required | default | description |", "|---|---|---|---|---|"]
    for prop, spec in schema.get("properties", {}).items():
        default = code(json.dumps(spec["default"])) if "default" in spec else ""
        limit = f" (at most {spec['maxLength']} characters)" if "maxLength" in spec else ""
        rows.append(f"| {code(prop)} | {schema_type(spec)} | {'yes' if prop in required else 'no'} | "
                    f"{default} | {cell(spec.get('description', ''))}{limit} |")
    if schema.get("additionalProperties") is False:
        rows.append("\nOther fields are refused.")
    return [*rows, ""]


def http_page(document: dict[str, Any]) -> str:
    lines = ["# HTTP API\n",
             f"Generated from the OpenAPI document of `jobforge-api` ({cell(document['info']['title'])} "
             f"{cell(document['info']['version'])}, `workers/api.py`); the document itself: "
             "[openapi.json](openapi.json), also served by a running API at `/openapi.json`. Authenticate with a "
             "tenant API key as `Authorization: Bearer jfk_...` (`jobforge keys create`); errors are "
             "`application/problem+json` with a stable `code` ([error codes](errors.md)).\n"]
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            lines.append(f"## `{method.upper()} {path}`\n")
            if op.get("tags"):  # the summary is FastAPI's, made of the function's name: the tags say more
                lines.append(f"Tags: {', '.join(op['tags'])}\n")
            if op.get("description"):
                lines.append(op["description"].strip() + "\n")
            params = op.get("parameters", [])
            if params:
                lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
                for p in params:
                    lines.append(f"| {code(p['name'])} | {p['in']} | {schema_type(p.get('schema', {}))} | "
                                 f"{'yes' if p.get('required') else 'no'} | {cell(p.get('description', ''))} |")
                lines.append("")
            body = op.get("requestBody")
            if body:
                for media, content in body.get("content", {}).items():
                    schema = content.get("schema", {})
                    if schema.get("properties"):
                        lines.append(f"Request body ({code(media)}):\n")
                        lines += properties_table(schema)
                    else:
                        lines.append(f"Request body ({code(media)}): {schema_type(schema)}\n")
            lines += ["| status | meaning | body |", "|---|---|---|"]
            for status, response in op.get("responses", {}).items():
                bodies = [f"{schema_type(c.get('schema', {}))}" for c in response.get("content", {}).values()
                          if c.get("schema")]
                lines.append(f"| {status} | {cell(response.get('description', ''))} | {', '.join(bodies) or '—'} |")
            lines.append("")
    lines.append("## Schemas\n")
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        lines.append(f"### {name} {{#{anchor(name)}}}\n")
        if schema.get("description"):
            lines.append(cell(schema["description"]) + "\n")
        if schema.get("properties"):
            lines += properties_table(schema)
        elif schema.get("enum"):
            lines.append("One of " + ", ".join(code(json.dumps(v)) for v in schema["enum"]) + ".\n")
    return "\n".join(lines)


# -- write the pages ------------------------------------------------------------------------------------


def pages() -> Iterable[tuple[str, str]]:
    document = openapi_document()
    yield "reference/cli.md", cli_page()
    yield "reference/http-api.md", http_page(document)
    yield "reference/openapi.json", json.dumps(document, indent=2, sort_keys=False) + "\n"
    yield "reference/settings.md", settings_page()
    yield "reference/errors.md", errors_page()
    yield "reference/metrics.md", metrics_page()


def write_into_build() -> None:
    import mkdocs_gen_files

    for path, text in pages():
        with mkdocs_gen_files.open(path, "w") as handle:
            handle.write(text)


def write_into(folder: Path) -> None:
    """``python docs/_scripts/gen_reference.py FOLDER`` writes the pages there, to read them as Markdown."""
    for path, text in pages():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)


if __name__ == "__main__":
    write_into(Path(sys.argv[1]))
elif __name__ == "<run_path>":  # mkdocs-gen-files runs the file under this name
    write_into_build()
