"""Errors as RFC 9457 problem details (`application/problem+json`), every validation problem listed.

A problem never echoes the input: a rejected body may hold a token, an address or a webhook URL
with a secret in it, so only where (`loc`) and what (`msg`, `type`) are said.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from temporalio.service import RPCError

from tidings.activities.store.base import StoreUnavailableError
from tidings.starters.client import InvalidRequestError, NotificationNotFoundError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] | None = None


class ApiProblem(Exception):
    """Raised by routes: becomes a problem response with this status, title and detail."""

    def __init__(
        self, status: int, title: str, detail: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail or title)
        self.problem = Problem(status=status, title=title, detail=detail)
        self.headers = headers


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def field_problems(errors: Any) -> list[FieldProblem]:
    return [
        FieldProblem(loc=list(e.get("loc", ())), msg=str(e.get("msg", "")), type=str(e.get("type", "")))
        for e in errors
    ]


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError | ValidationError)
    errors = field_problems(exc.errors())
    problem = Problem(
        title="invalid request",
        status=422,
        detail=f"{len(errors)} problem(s) in the request; see errors",
        errors=errors,
    )
    return problem_response(problem)


async def _api_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    return problem_response(exc.problem, exc.headers)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem_response(
        Problem(title=str(exc.detail), status=exc.status_code), dict(exc.headers or {}) or None
    )


async def _invalid_request(request: Request, exc: Exception) -> Response:
    return problem_response(Problem(title="invalid notification request", status=422, detail=str(exc)))


async def _not_found(request: Request, exc: Exception) -> Response:
    return problem_response(
        Problem(title="not found", status=404, detail=str(exc.args[0] if exc.args else exc))
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("dependency unavailable while handling %s: %s", request.url.path, type(exc).__name__)
    what = "the store" if isinstance(exc, StoreUnavailableError) else "Temporal"
    return problem_response(
        Problem(title="service unavailable", status=503, detail=f"{what} is unavailable; try again later"),
        {"Retry-After": "30"},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ValidationError, _validation)
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(InvalidRequestError, _invalid_request)
    app.add_exception_handler(NotificationNotFoundError, _not_found)
    app.add_exception_handler(StoreUnavailableError, _unavailable)
    app.add_exception_handler(RPCError, _unavailable)
