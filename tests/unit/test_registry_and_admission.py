"""The template registry, identifiers, canonical hashing and the pure admission decision."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from jobforge.errors import FeatureDisabled, InvalidInputs, InvalidRequest, JobForgeError, TemplateNotFound
from jobforge.ids import check_idempotency_key, check_tenant_id, workflow_id_for
from jobforge.models import JobRun
from shared.admission import judge
from shared.canonical import canonical_json, input_hash, verify_input_hash
from shared.flags import Flag
from shared.healthcheck import HealthcheckInputs, HealthcheckReport
from shared.settings import Settings
from shared.templates import BUILTIN_TEMPLATES, Registry, TemplateSpec, load_registry

HC = "autopilot.jobforge.healthcheck"
ALL_ON = dict.fromkeys(Flag, True)


def test_registry_lists_and_finds_templates() -> None:
    """The built-in registry has the healthcheck, gated by the autopilot flag, and unknown keys are typed errors."""
    registry = Registry(BUILTIN_TEMPLATES)
    spec = registry.get(HC)
    assert spec.flags == (Flag.AUTOPILOT_JOBS,) and not spec.action
    assert HC in registry and [s.key for s in registry] == sorted(s.key for s in registry)
    with pytest.raises(TemplateNotFound):
        registry.get("nope.nope")


def test_registry_refuses_duplicates_and_bad_keys() -> None:
    """A key registered twice or not shaped like 'area.product.job' is a programming error caught at load."""
    with pytest.raises(ValueError, match="twice"):
        Registry([BUILTIN_TEMPLATES[0], BUILTIN_TEMPLATES[0]])
    with pytest.raises(ValueError, match="template key"):
        TemplateSpec(key="Bad Key", description="", input_model=BaseModel, output_model=BaseModel)


def test_extra_template_modules_are_loaded() -> None:
    """Modules named in JOBFORGE_TEMPLATE_MODULES add their TEMPLATES; a missing module is a typed error."""
    registry = load_registry(Settings(template_modules=["tests.support.slow_template"]))
    assert "testing.jobforge.slow" in registry and HC in registry
    with pytest.raises(InvalidRequest):
        load_registry(Settings(template_modules=["no_such_module_here"]))


def test_settings_parse_comma_lists_and_task_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    """Comma-separated env lists parse, and the registry reports the task queues its templates use."""
    monkeypatch.setenv("JOBFORGE_WORKER_TASK_QUEUES", "a, b")
    monkeypatch.setenv("JOBFORGE_TASK_QUEUE", "main-q")
    settings = Settings()
    assert settings.worker_task_queues == ["a", "b"]
    assert "main-q" in Registry(BUILTIN_TEMPLATES).task_queues(settings)
    assert settings.database_url is None and settings.state_file.name == "state.json"


def test_inputs_validation_lists_problems() -> None:
    """Inputs are validated against the template model and every problem is named."""
    spec = Registry(BUILTIN_TEMPLATES).get(HC)
    assert spec.validate_inputs({}) == HealthcheckInputs()
    with pytest.raises(InvalidInputs) as info:
        spec.validate_inputs({"task_queues": "x", "extra": 1})
    assert "task_queues" in info.value.message and "extra" in info.value.message


@pytest.mark.parametrize("tenant", ["", "A", "-x", "a" * 64, "a b", "a/b"])
def test_bad_tenant_ids(tenant: str) -> None:
    """Tenant ids outside 1-63 lowercase [a-z0-9_-] are refused."""
    with pytest.raises(InvalidRequest):
        check_tenant_id(tenant)


@pytest.mark.parametrize("key", ["", "a" * 256, "has space", "slash/", "ünï"])
def test_bad_idempotency_keys(key: str) -> None:
    """Idempotency keys must be 1-255 chars of [A-Za-z0-9._:-]."""
    with pytest.raises(InvalidRequest):
        check_idempotency_key(key)


def test_workflow_ids() -> None:
    """The same tenant + key always gives the same workflow id; no key gives a fresh one each time."""
    assert workflow_id_for("t", HC, "k-1") == workflow_id_for("t", "other.tpl.x", "k-1")
    assert workflow_id_for("t", HC, "k-1") != workflow_id_for("u", HC, "k-1")
    assert workflow_id_for("t", HC, None) != workflow_id_for("t", HC, None)
    check_idempotency_key("a" * 255)


def test_canonical_json_is_stable() -> None:
    """Key order, NFC forms and integral floats do not change the canonical bytes or the hash."""
    a = {"b": [1.0, "é"], "a": {"y": 2, "x": None}}
    b = {"a": {"x": None, "y": 2.0}, "b": [1, "e\u0301"]}
    assert canonical_json(a) == canonical_json(b) == b'{"a":{"x":null,"y":2},"b":[1,"\xc3\xa9"]}'
    assert input_hash(a) == input_hash(b) and verify_input_hash(b, input_hash(a))
    assert not verify_input_hash({"a": 1}, input_hash(a))


def test_canonical_json_handles_deep_nesting() -> None:
    """Normalisation uses an explicit stack, so deep inputs do not hit the recursion limit."""
    deep: list[object] = []
    cur = deep
    for _ in range(5000):
        nxt: list[object] = []
        cur.append(nxt)
        cur = nxt
    with pytest.raises(Exception, match=r"(?i)recursion|depth|nest"):
        canonical_json(deep)  # orjson itself refuses > 1024 levels: a clear error, not a crash


def test_admission_admits_and_fills_defaults() -> None:
    """A well-formed request with its flags on is judged admissible with validated inputs and their hash."""
    job = JobRun(tenant_id="acme", template_key=HC, inputs={}, trace_id="t-1")
    judged = judge(job, HC, Registry(BUILTIN_TEMPLATES), ALL_ON)
    assert judged.spec.key == HC and judged.inputs == {"task_queues": []}
    assert judged.input_hash == input_hash({})


@pytest.mark.parametrize(("job", "workflow_type", "flags", "code"), [
    (JobRun(tenant_id="acme", template_key=HC), HC, {}, "feature_disabled"),
    (JobRun(tenant_id="acme", template_key="x.y.z"), "x.y.z", ALL_ON, "template_not_found"),
    (JobRun(tenant_id="Bad!", template_key=HC), HC, ALL_ON, "invalid_request"),
    (JobRun(tenant_id="acme", template_key=HC), "other.type.x", ALL_ON, "invalid_request"),
    (JobRun(tenant_id="acme", template_key=HC, inputs={"bogus": 1}), HC, ALL_ON, "invalid_inputs"),
    (JobRun(tenant_id="acme", template_key=HC, input_hash="sha256:00"), HC, ALL_ON, "invalid_request"),
])
def test_admission_rejections(job: JobRun, workflow_type: str, flags: dict[Flag, bool], code: str) -> None:
    """Each way a request can be wrong is refused with its own error code and a reason."""
    with pytest.raises(JobForgeError) as info:
        judge(job, workflow_type, Registry(BUILTIN_TEMPLATES), flags)
    assert info.value.code == code and info.value.message


def test_feature_disabled_names_flag_in_details() -> None:
    """A refusal for a flag carries the flag's name so the caller can rebuild the typed error."""
    with pytest.raises(FeatureDisabled) as info:
        judge(JobRun(tenant_id="acme", template_key=HC), HC, Registry(BUILTIN_TEMPLATES), {})
    assert info.value.details == {"flag": "JOBFORGE_AUTOPILOT_JOBS_ENABLED", "source": "", "where": ""}
    assert HealthcheckReport(healthy=True, checks=[]).healthy
