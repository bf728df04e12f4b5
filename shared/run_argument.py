"""A run's argument as it arrives through Temporal, and its search attributes (pure: no I/O).

A template workflow takes one argument, a :class:`~jobforge.models.JobRun`, which anyone may send
through Temporal (``Client.start_workflow``, ``temporal workflow start``, the UI's form). The workflow
decodes it itself (:func:`parse_job_run`), so a malformed argument becomes a typed failure naming the
field, not a workflow task failing forever. The search attributes a run was started with are judged
against the argument (:func:`check_search_attributes`): the argument is the authority.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from jobforge.errors import InvalidRequest, InvalidRunArgument, SearchAttributeMismatch
from jobforge.ids import check_tenant_id, check_trace_id
from jobforge.models import JobRun
from shared.search_attributes import TEMPLATE_ATTRIBUTE, TENANT_ATTRIBUTE, TRACE_ATTRIBUTE
from shared.security.limits import pg_text

M = TypeVar("M", bound=BaseModel)

#: the smallest argument a template run accepts (``template_key`` defaults to the workflow type)
EXAMPLE_ARGUMENT = '{"tenant_id": "demo", "inputs": {}}'
_HINT = f"expected one JSON object, a JobRun such as {EXAMPLE_ARGUMENT} (`jobforge templates --json` prints its schema)"
_MAX_PROBLEMS = 10


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _short(text: str, limit: int = 100) -> str:
    text = pg_text(text)
    return text if len(text) <= limit else text[:limit] + "…"


def parse_job_run(value: Any, workflow_type: str) -> JobRun:
    """``value`` (the argument, JSON-decoded) as a JobRun, or :class:`InvalidRunArgument` naming each field.

    ``template_key`` may be left out: it defaults to the workflow type (a different one is refused by
    admission).
    """
    if not isinstance(value, dict):
        raise InvalidRunArgument(
            f"the argument of {_short(workflow_type)} is a JSON {_kind(value)}, not an object; {_HINT}",
            workflow_type=workflow_type, fields=["(root)"], problems=[f"(root): got a {_kind(value)}"])
    data = dict(value)
    data.setdefault("template_key", workflow_type)
    try:
        return JobRun.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        fields = [_short(".".join(str(p) for p in err["loc"]) or "(root)") for err in errors]
        problems = [f"{field}: {err['msg']}" for field, err in zip(fields, errors, strict=True)]
        more = f" (and {len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
        raise InvalidRunArgument(
            f"the argument of {_short(workflow_type)} is not a valid JobRun: "
            + "; ".join(problems[:_MAX_PROBLEMS]) + more + f"; {_HINT}",
            workflow_type=workflow_type, fields=fields[:_MAX_PROBLEMS], problems=problems[:_MAX_PROBLEMS]) from None


def parse_argument(args: Sequence[Any], model: type[M], workflow_type: str) -> M:
    """The one argument of a JobForge workflow that is not a template (the event router, ...) as ``model``,
    or :class:`InvalidRunArgument` naming the count or each field at fault (its message names the model)."""
    hint = f"expected one JSON object, a {model.__name__}"
    if len(args) != 1:
        got = "no argument" if not args else f"{len(args)} arguments"
        raise InvalidRunArgument(f"{_short(workflow_type)} was started with {got}; {hint}", workflow_type=workflow_type,
                                 fields=["(root)"], problems=[f"(root): got {got}"], argument_count=len(args))
    try:
        return model.model_validate(args[0])
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)[:_MAX_PROBLEMS]
        fields = [_short(".".join(str(p) for p in err["loc"]) or "(root)") for err in errors]
        problems = [f"{field}: {err['msg']}" for field, err in zip(fields, errors, strict=True)]
        raise InvalidRunArgument(f"the argument of {_short(workflow_type)} is not a valid {model.__name__}: "
                                 + "; ".join(problems) + f"; {hint}", workflow_type=workflow_type, fields=fields,
                                 problems=problems) from None


def argument_count_error(workflow_type: str, count: int) -> InvalidRunArgument:
    """A run started with no argument, or with more than one."""
    got = "no argument" if count == 0 else f"{count} arguments"
    return InvalidRunArgument(f"{_short(workflow_type)} was started with {got}; {_HINT}",
                              workflow_type=workflow_type, fields=["(root)"], problems=[f"(root): got {got}"],
                              argument_count=count)


def _valid(check: Any, value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        return str(check(value))
    except InvalidRequest:
        return ""


def readable_tenant(value: Any, attributes: Mapping[str, str]) -> str:
    """The tenant a (possibly malformed) argument belongs to: its ``tenant_id`` if that is a valid
    tenant id, else the ``JobForgeTenant`` attribute if valid, else ``""``."""
    own = _valid(check_tenant_id, value.get("tenant_id")) if isinstance(value, dict) else ""
    return own or _valid(check_tenant_id, attributes.get(TENANT_ATTRIBUTE))


def readable_trace(value: Any, attributes: Mapping[str, str]) -> str:
    own = _valid(check_trace_id, value.get("trace_id")) if isinstance(value, dict) else ""
    return own or _valid(check_trace_id, attributes.get(TRACE_ATTRIBUTE))


def readable_actor(value: Any) -> str:
    actor = value.get("actor") if isinstance(value, dict) else None
    return _short(actor, 200) if isinstance(actor, str) and actor else "unknown"


def check_search_attributes(run: JobRun, attributes: Mapping[str, str]) -> None:
    """Refuse a run whose JobForge search attributes contradict its argument (an absent one is fine:
    admission sets it)."""
    expected = {TENANT_ATTRIBUTE: (run.tenant_id, "tenant_id"), TEMPLATE_ATTRIBUTE: (run.template_key, "template_key"),
                TRACE_ATTRIBUTE: (run.trace_id, "trace_id")}
    for name, (own, field) in expected.items():
        given = attributes.get(name, "")
        if given and own and given != own:
            raise SearchAttributeMismatch(
                f"the run was started with {name}={_short(given)!r} but its argument says {field}={_short(own)!r}; "
                f"leave {name} out (JobForge sets it) or make it match", attribute=name, attribute_value=_short(given),
                field=field, value=_short(own))


def run_attributes(tenant_id: str, template_key: str, trace_id: str) -> dict[str, str]:
    """The search attributes a run should carry: each value that is valid (an invalid one is left out)."""
    found = {TENANT_ATTRIBUTE: _valid(check_tenant_id, tenant_id), TRACE_ATTRIBUTE: _valid(check_trace_id, trace_id),
             TEMPLATE_ATTRIBUTE: pg_text(template_key)[:200]}
    return {name: value for name, value in found.items() if value}
