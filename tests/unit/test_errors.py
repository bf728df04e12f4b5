"""The error registry: each class declares its code, HTTP status and retryability, and every code
survives both wires (a problem+json answer read by the HTTP SDK, a Temporal failure read by the
Temporal SDK and the CLI) as the same class, message and details."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from jobforge import errors
from jobforge.client import JobForgeClient
from jobforge.errors import ERRORS_BY_CODE, HTTP_STATUS, JobForgeError, typed_error
from shared.temporal import DATA_CONVERTER, to_application_error
from workers.api import error_response
from workers.cli_common import one_line_error

CODES = sorted(ERRORS_BY_CODE)
#: details the HTTP layer reads off some errors (the WWW-Authenticate scope, the rate-limit headers)
EXTRA_DETAILS: dict[str, dict[str, Any]] = {
    "insufficient_scope": {"missing": ["runs:read"], "required": ["runs:read"]},
    "rate_limited": {"retry_after": 2.5, "limit": 10, "period": 60.0, "bucket": "tenant"},
}


def _subclasses(cls: type[JobForgeError]) -> list[type[JobForgeError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _sample(code: str) -> JobForgeError:
    """An error of ``code`` with a message and details of its own (built the way the wire rebuilds it)."""
    details: dict[str, Any] = {"field": "inputs.name", "count": 3, "names": ["alpha", "beta"],
                               **EXTRA_DETAILS.get(code, {})}
    err = typed_error({"code": code, "detail": f"sample failure for {code.replace('_', ' ')}", "details": details})
    assert err is not None
    return err


def _assert_same(got: JobForgeError | None, sent: JobForgeError) -> None:
    assert type(got) is type(sent)
    assert got is not None
    assert (got.code, got.message, got.details) == (sent.code, sent.message, sent.details)
    assert got.names == ["alpha", "beta"]  # type: ignore[attr-defined]  # details are attributes too


def test_every_error_class_is_registered_with_a_unique_code_and_a_status() -> None:
    """Every JobForgeError subclass (and the base) is in the registry under its own code, declares its
    code and status on itself, and the status map is derived from the classes."""
    classes = [JobForgeError, *_subclasses(JobForgeError)]
    assert len({cls.code for cls in classes}) == len(classes) == len(ERRORS_BY_CODE)
    for cls in classes:
        assert ERRORS_BY_CODE[cls.code] is cls, cls
        assert "code" in vars(cls) and "status" in vars(cls), cls
        assert 400 <= cls.status <= 599 and isinstance(cls.retryable, bool), cls
        assert HTTP_STATUS[cls.code] == cls.status == errors.http_status(_sample(cls.code))
    assert ERRORS_BY_CODE["telemetry_unavailable"] is errors.TelemetryUnavailable


def test_a_class_without_its_own_code_or_status_or_with_a_taken_code_is_refused() -> None:
    before = dict(ERRORS_BY_CODE)
    with pytest.raises(TypeError, match="must declare its own status"):
        type("NoStatus", (JobForgeError,), {"code": "no_status_here"})
    with pytest.raises(TypeError, match="must declare its own code"):
        type("NoCode", (errors.NotFound,), {"status": 404})
    with pytest.raises(TypeError, match="is taken by RunNotFound"):
        type("Twin", (JobForgeError,), {"code": "run_not_found", "status": 404})
    with pytest.raises(TypeError, match="HTTP error status"):
        type("Fine", (JobForgeError,), {"code": "fine_here", "status": 200})
    assert before == ERRORS_BY_CODE


@pytest.mark.parametrize("code", CODES)
async def test_every_code_round_trips_problem_json_through_the_http_sdk(code: str) -> None:
    """The API's problem+json answer for an error, read by the HTTP SDK, is the same typed error."""
    sent = _sample(code)
    answer = error_response(sent)
    assert answer.status_code == type(sent).status
    assert answer.headers["content-type"] == "application/problem+json"

    def serve(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(answer.status_code, content=bytes(answer.body), headers=dict(answer.headers))

    async with JobForgeClient("http://api.test", "key", transport=httpx.MockTransport(serve)) as client:
        with pytest.raises(JobForgeError) as info:
            await client.get_run("run-1")
    _assert_same(info.value, sent)


@pytest.mark.parametrize("code", CODES)
async def test_every_code_round_trips_a_temporal_failure(code: str) -> None:
    """An error raised in an activity, encoded as a Temporal failure and decoded by the client (inside an
    activity failure inside a workflow failure), is the same typed error, and the CLI prints its code."""
    sent = _sample(code)
    failure = Failure()
    await DATA_CONVERTER.encode_failure(to_application_error(sent), failure)
    decoded = await DATA_CONVERTER.decode_failure(failure)
    assert isinstance(decoded, ApplicationError) and decoded.non_retryable is not sent.retryable
    chain = ActivityError("activity failed", scheduled_event_id=1, started_event_id=2, identity="w",
                          activity_type="a", activity_id="1", retry_state=RetryState.NON_RETRYABLE_FAILURE)
    chain.__cause__ = decoded
    received = typed_error(WorkflowFailureError(cause=chain))
    _assert_same(received, sent)
    assert received is not None and one_line_error(received) == f"error: {code}: {sent.message}"


def test_what_carries_no_registered_code_rebuilds_nothing_and_the_http_sdk_falls_back() -> None:
    """An unknown code, a foreign ApplicationError type or a non-problem body is not guessed at."""
    assert typed_error({"code": "no_such_code", "detail": "x"}) is None
    assert typed_error({}) is None and typed_error(None) is None
    assert typed_error(ApplicationError("x", type="ValueError")) is None
    assert typed_error(RuntimeError("x")) is None
    from jobforge.client import error_from_problem

    outage = error_from_problem(httpx.Response(502, text="bad gateway"))
    assert type(outage) is errors.TemporalUnavailable and outage.message == "HTTP 502"
    plain: Any = error_from_problem(httpx.Response(418, json={"code": "teapot", "detail": "short and stout"}))
    assert type(plain) is JobForgeError and plain.message == "short and stout"
