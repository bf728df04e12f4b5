"""The job template registry: template key -> what it takes, needs and where it runs.

A template's Temporal workflow type is its key (``@workflow.defn(name=KEY)``), so the Temporal UI
shows ``autopilot.jobforge.healthcheck``, and a raw ``temporal workflow start --type KEY`` reaches the
same workflow (and meets the same admission activity).

Adding a template = one workflow module under ``workflows/`` + one :class:`TemplateSpec` entry in
:data:`BUILTIN_TEMPLATES` (or in a module named by ``JOBFORGE_TEMPLATE_MODULES``, exposing
``TEMPLATES``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from jobforge.errors import InvalidInputs, InvalidRequest, TemplateNotFound
from jobforge.models import JobRun
from shared.flags import Flag
from shared.healthcheck import HealthcheckInputs, HealthcheckReport
from shared.keys_rotation import KeyRotationInputs, KeyRotationResult
from shared.search_attributes import TEMPLATE_ATTRIBUTE, TENANT_ATTRIBUTE, TRACE_ATTRIBUTE
from shared.settings import Settings
from shared.verify.models import VerifyInputs, VerifyReport

_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,5}$")


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    key: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    #: ``resource:action`` scopes a caller needs to request this job
    required_scopes: tuple[str, ...] = ("jobs:request",)
    #: flags that must all be on for a run to be admitted
    flags: tuple[Flag, ...] = ()
    #: action (write) jobs need a policy token
    action: bool = False
    #: None = the settings' default task queue
    task_queue: str | None = None
    #: a task queue chosen by the settings (takes precedence over ``task_queue``), e.g. the verify queue
    task_queue_of: Callable[[Settings], str] | None = None
    tags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ValueError(f"template key {self.key!r} must look like 'area.product.job' (lowercase, dotted)")

    def queue(self, settings: Settings) -> str:
        if self.task_queue_of is not None:
            return self.task_queue_of(settings)
        return self.task_queue or settings.task_queue

    def validate_inputs(self, inputs: Mapping[str, Any]) -> BaseModel:
        """The inputs parsed by the template's model, or :class:`InvalidInputs` listing what is wrong."""
        try:
            return self.input_model.model_validate(dict(inputs))
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in exc.errors(include_url=False, include_input=False)
            ]
            raise InvalidInputs(
                f"inputs for {self.key} are invalid: " + "; ".join(problems), template_key=self.key,
                problems=problems,
            ) from None


def describe(spec: TemplateSpec, settings: Settings) -> dict[str, Any]:
    """What a user needs to start ``spec`` through Temporal itself (``jobforge templates --json``): its
    workflow type and task queue, the search attributes its runs carry, and the JSON Schemas of its
    argument (a JobRun whose ``inputs`` are this template's) and of its inputs."""
    inputs = spec.input_model.model_json_schema()
    argument = JobRun.model_json_schema()
    argument["properties"]["template_key"] = {**argument["properties"]["template_key"], "default": spec.key,
                                              "const": spec.key}
    argument["required"] = [name for name in argument.get("required", []) if name != "template_key"]
    argument["properties"]["inputs"] = {key: value for key, value in inputs.items() if key != "$defs"}
    if "$defs" in inputs:
        argument["$defs"] = inputs["$defs"]
    return {
        "key": spec.key, "workflow_type": spec.key, "task_queue": spec.queue(settings),
        "description": spec.description, "action": spec.action, "required_scopes": list(spec.required_scopes),
        "flags": [flag.value for flag in spec.flags],
        "search_attributes": {TENANT_ATTRIBUTE: "the run's tenant_id", TEMPLATE_ATTRIBUTE: spec.key,
                              TRACE_ATTRIBUTE: "the run's trace_id (admission assigns one when it has none)"},
        "job_run": argument, "inputs": inputs,
    }


def verify_queue(settings: Settings) -> str:
    """The verify pack's task queue (``JOBFORGE_VERIFY_TASK_QUEUE``, default ``<task_queue>-verify``)."""
    return settings.verify_queue


BUILTIN_TEMPLATES: tuple[TemplateSpec, ...] = (
    TemplateSpec(
        key="autopilot.jobforge.healthcheck",
        description="Checks the database (reachable, migrations at head), the Temporal namespace and "
        "that workers poll every task queue; returns a structured report.",
        input_model=HealthcheckInputs,
        output_model=HealthcheckReport,
        required_scopes=("jobs:request",),
        flags=(Flag.AUTOPILOT_JOBS,),
        tags=("autopilot", "ops"),
    ),
    TemplateSpec(
        key="autopilot.readylayer.verify_pack",
        description="Lints, typechecks, builds and tests a repository (Python or Node, or its own "
        ".jobforge/verify.toml) step by step, sandboxed where bubblewrap works; returns a verdict with "
        "logs, a report and a manifest in the artifact store.",
        input_model=VerifyInputs,
        output_model=VerifyReport,
        required_scopes=("jobs:request",),
        flags=(Flag.AUTOPILOT_JOBS, Flag.VERIFY_PACK),
        task_queue_of=verify_queue,
        tags=("autopilot", "readylayer", "verify"),
    ),
    TemplateSpec(
        key="autopilot.keys.rotation",
        description="Rotates a tenant API key: a successor with the same scopes (its secret sealed to the "
        "caller's X25519 key), a grace period as a durable timer, then the old key is revoked.",
        input_model=KeyRotationInputs,
        output_model=KeyRotationResult,
        required_scopes=("keys:rotate",),
        flags=(Flag.AUTOPILOT_JOBS, Flag.ACTION_JOBS),
        action=True,
        tags=("autopilot", "keys", "action"),
    ),
)


class Registry:
    """An immutable set of templates keyed by template key."""

    def __init__(self, templates: Iterable[TemplateSpec]) -> None:
        self._by_key: dict[str, TemplateSpec] = {}
        for spec in templates:
            if spec.key in self._by_key:
                raise ValueError(f"template {spec.key!r} is registered twice")
            self._by_key[spec.key] = spec

    def get(self, key: str) -> TemplateSpec:
        try:
            return self._by_key[key]
        except KeyError:
            raise TemplateNotFound(key) from None

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[TemplateSpec]:
        return iter(sorted(self._by_key.values(), key=lambda spec: spec.key))

    def __len__(self) -> int:
        return len(self._by_key)

    def task_queues(self, settings: Settings) -> list[str]:
        return sorted({spec.queue(settings) for spec in self})


def import_template_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise InvalidRequest(f"template module {name!r} cannot be imported: {exc}") from None


def load_registry(settings: Settings) -> Registry:
    """The built-in templates plus those of ``settings.template_modules``."""
    templates = list(BUILTIN_TEMPLATES)
    for name in settings.template_modules:
        module = import_template_module(name)
        extra = getattr(module, "TEMPLATES", None)
        if extra is None:
            raise InvalidRequest(f"template module {name!r} has no TEMPLATES list")
        templates.extend(extra)
    return Registry(templates)
