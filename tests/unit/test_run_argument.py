"""A run's argument as it arrives through Temporal: parsed or refused naming the field; attributes judged."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from jobforge.errors import InvalidRunArgument, SearchAttributeMismatch
from jobforge.models import JobRun
from shared.run_argument import (
    argument_count_error,
    check_search_attributes,
    parse_job_run,
    readable_tenant,
    run_attributes,
)

HC = "autopilot.jobforge.healthcheck"


def test_template_key_defaults_to_the_workflow_type() -> None:
    """The smallest argument is a tenant: the template key is the workflow type's."""
    assert parse_job_run({"tenant_id": "acme"}, HC) == JobRun(tenant_id="acme", template_key=HC)


@pytest.mark.parametrize(("value", "fields"), [
    ({}, ["tenant_id"]),
    ({"tenant_id": "acme", "inputs": []}, ["inputs"]),
    ({"tenant_id": "acme", "colour": "red"}, ["colour"]),
    ({"tenant_id": 3, "actor": None}, ["tenant_id", "actor"]),
    ("acme", ["(root)"]),
    (None, ["(root)"]),
    ([{"tenant_id": "acme"}], ["(root)"]),
])
def test_malformed_arguments_name_their_fields(value: Any, fields: list[str]) -> None:
    """Each malformed shape is refused with the fields at fault, and the message says what is expected."""
    with pytest.raises(InvalidRunArgument) as info:
        parse_job_run(value, HC)
    assert info.value.details["fields"] == fields
    assert "jobforge templates --json" in info.value.message


def test_argument_count_is_named() -> None:
    """No argument and several arguments are both said plainly."""
    assert "no argument" in argument_count_error(HC, 0).message
    assert "3 arguments" in argument_count_error(HC, 3).message


def test_tenant_is_read_from_the_argument_else_the_attribute() -> None:
    """A malformed argument still names its tenant when its tenant_id is valid; else JobForgeTenant does."""
    assert readable_tenant({"tenant_id": "acme", "inputs": 3}, {"JobForgeTenant": "globex"}) == "acme"
    assert readable_tenant({"tenant_id": "NOT VALID"}, {"JobForgeTenant": "globex"}) == "globex"
    assert readable_tenant("x", {}) == ""


def test_contradicting_attributes_are_refused_absent_ones_are_fine() -> None:
    """An attribute saying another tenant, template or trace than the argument is refused naming both."""
    run = JobRun(tenant_id="globex", template_key=HC, trace_id="t1")
    check_search_attributes(run, {})
    check_search_attributes(run, {"JobForgeTenant": "globex", "JobForgeTemplate": HC, "JobForgeTrace": "t1"})
    with pytest.raises(SearchAttributeMismatch) as info:
        check_search_attributes(run, {"JobForgeTenant": "acme"})
    assert info.value.details["attribute"] == "JobForgeTenant" and "globex" in info.value.message


def test_run_attributes_leave_out_invalid_values() -> None:
    """Only valid values become attributes (a refused run with a bad tenant id gets no JobForgeTenant)."""
    assert run_attributes("BAD ID", HC, "") == {"JobForgeTemplate": HC}
    assert run_attributes("acme", HC, "t-1") == {"JobForgeTenant": "acme", "JobForgeTemplate": HC,
                                                  "JobForgeTrace": "t-1"}


def test_each_templates_argument_schema_accepts_what_admission_decodes() -> None:
    """`jobforge templates --json`'s `job_run` schema of each template accepts the smallest argument and refuses
    an argument without tenant_id or with an unknown field, as decoding does; its inputs are the template's."""
    from shared.settings import Settings
    from shared.templates import BUILTIN_TEMPLATES, Registry, describe

    settings = Settings()
    for spec in Registry(BUILTIN_TEMPLATES):
        row = describe(spec, settings)
        assert (row["workflow_type"], row["task_queue"]) == (spec.key, spec.queue(settings))
        assert set(row["search_attributes"]) == {"JobForgeTenant", "JobForgeTemplate", "JobForgeTrace"}
        schema = row["job_run"]
        assert schema["properties"]["inputs"]["title"] == spec.input_model.__name__
        stub = {**schema, "properties": {**schema["properties"], "inputs": {"type": "object"}}}
        jsonschema.validate({"tenant_id": "acme"}, stub)
        for bad in ({}, {"tenant_id": "acme", "colour": "red"}, {"tenant_id": "acme", "template_key": "other.x.y"}):
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(bad, stub)
        jsonschema.Draft202012Validator.check_schema(schema)


def test_other_workflows_arguments_name_their_model_and_fields() -> None:
    """A non-template workflow's argument is read as its own model, refused naming the model and the fields."""
    from shared.run_argument import parse_argument
    from shared.triggers.models import RouterInput

    assert parse_argument([{"tenant_id": "acme"}], RouterInput, "jobforge.event.router").tenant_id == "acme"
    with pytest.raises(InvalidRunArgument) as info:
        parse_argument([{"tenant": "acme"}], RouterInput, "jobforge.event.router")
    assert "RouterInput" in info.value.message and "tenant_id" in info.value.details["fields"]
    with pytest.raises(InvalidRunArgument, match="2 arguments"):
        parse_argument([{}, {}], RouterInput, "jobforge.event.router")
