"""Test-only templates for the security gate, loaded through ``JOBFORGE_TEMPLATE_MODULES``.

``testing.jobforge.deploy`` is an *action* job (needs a policy token and the ``actions:deploy``
scope). ``testing.jobforge.echo`` logs its inputs and its environment's ``CANARY_*`` variables,
prints them as "repo output", fails on request with a message that carries them, and returns the
output: the canary test checks that none of it leaks. ``testing.jobforge.carry`` carries its inputs
(a list of strings) to one step and counts them: runs with inputs up to the payload limits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from temporalio import activity, workflow
from temporalio.common import RawValue, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from shared.templates import TemplateSpec
    from workflows._job import run_job


class DeployInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str


class DeployResult(BaseModel):
    deployed: str


class EchoInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    note: str = ""
    fail: bool = False


class EchoResult(BaseModel):
    output: str


class CarryInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    chunks: list[str] = []


class CarryResult(BaseModel):
    chars: int


@activity.defn(name="testing.deploy_step")
async def deploy_step(inputs: DeployInputs) -> DeployResult:
    """Pretend to deploy ``target``."""
    return DeployResult(deployed=inputs.target)


@activity.defn(name="testing.echo_step")
async def echo_step(inputs: EchoInputs) -> EchoResult:
    """Log and print the note and the canary environment, then fail or return it as output."""
    import os

    import structlog

    log = structlog.get_logger("tests.security_templates")
    env = {k: v for k, v in os.environ.items() if k.startswith("CANARY_")}
    output = f"note={inputs.note}\n" + "\n".join(f"{k}={v}" for k, v in sorted(env.items()))
    log.info("echo_output", note=inputs.note, env=env, output=output)
    if inputs.fail:
        raise RuntimeError(f"step failed with output: {output}")
    return EchoResult(output=output)


@activity.defn(name="testing.carry_step")
async def carry_step(inputs: CarryInputs) -> CarryResult:
    """Count the characters it was given (the inputs travel to the worker and back through Temporal)."""
    return CarryResult(chars=sum(map(len, inputs.chunks)))


@workflow.defn(name="testing.jobforge.deploy")
class DeployWorkflow:
    @workflow.run
    async def run(self, job: RawValue) -> DeployResult:
        return await run_job(job, self._body, lambda r: {"deployed": r.deployed})

    async def _body(self, raw: dict[str, Any]) -> DeployResult:
        return await workflow.execute_activity(deploy_step, DeployInputs.model_validate(raw),
                                               start_to_close_timeout=timedelta(seconds=30))


@workflow.defn(name="testing.jobforge.echo")
class EchoWorkflow:
    @workflow.run
    async def run(self, job: RawValue) -> EchoResult:
        return await run_job(job, self._body, lambda r: {"chars": len(r.output)})

    async def _body(self, raw: dict[str, Any]) -> EchoResult:
        return await workflow.execute_activity(echo_step, EchoInputs.model_validate(raw),
                                               start_to_close_timeout=timedelta(seconds=30),
                                               retry_policy=RetryPolicy(maximum_attempts=1))


@workflow.defn(name="testing.jobforge.carry")
class CarryWorkflow:
    @workflow.run
    async def run(self, job: RawValue) -> CarryResult:
        return await run_job(job, self._body, lambda r: {"chars": r.chars})

    async def _body(self, raw: dict[str, Any]) -> CarryResult:
        return await workflow.execute_activity(carry_step, CarryInputs.model_validate(raw),
                                               start_to_close_timeout=timedelta(seconds=60))


TEMPLATES = [
    TemplateSpec(key="testing.jobforge.deploy", description="An action job (tests only).",
                 input_model=DeployInputs, output_model=DeployResult,
                 required_scopes=("jobs:request", "actions:deploy"), action=True),
    TemplateSpec(key="testing.jobforge.echo", description="Echoes inputs and CANARY_* env (tests only).",
                 input_model=EchoInputs, output_model=EchoResult),
    TemplateSpec(key="testing.jobforge.carry", description="Carries its inputs to a step (tests only).",
                 input_model=CarryInputs, output_model=CarryResult),
]


def build_activities(_runtime: object) -> list[Callable[..., Any]]:
    return [deploy_step, echo_step, carry_step]
