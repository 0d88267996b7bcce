"""What a route says about itself in the OpenAPI document, declared beside the route.

A route is an `ApiRoute`: a Starlette `Route` for one method that carries its `Operation`.
`mindproject.openapi` builds the document by walking the app's routes, so a route deleted or
added changes the document with it, and a route without an `Operation` (not marked
`include_in_schema=False`) stops the document from being built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Parameter:
    """A path, query or header parameter a route reads."""

    name: str
    location: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str = ""

    def to_openapi(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "name": self.name,
            "in": self.location,
            "required": self.location == "path",
            "schema": dict(self.schema),
        }
        if self.description:
            described["description"] = self.description
        return described


@dataclass(frozen=True)
class Header:
    """A header a response carries (`required`: always, else only sometimes)."""

    name: str
    schema: Mapping[str, Any]
    description: str
    required: bool = True

    def to_openapi(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "required": self.required,
            "schema": dict(self.schema),
        }


@dataclass(frozen=True)
class Answer:
    """A successful answer: its body (a schema in components, raw bytes, text or none)."""

    description: str
    schema: str | None = None  # the name of a JSON schema in the document's components
    media_type: str | None = "application/json"
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One method on one path. `errors`: every error status the route itself can answer (the
    Error body); the 431 of the header size limit, which every request may get, is added by the
    document."""

    operation_id: str
    summary: str
    answers: Mapping[int, Answer]
    errors: frozenset[int]
    parameters: tuple[Parameter, ...] = ()
    request_body: Mapping[str, Any] | None = None
    authenticated: bool = True
    description: str = ""


Endpoint = Callable[[Request], Awaitable[Response]]


class ApiRoute(Route):
    """A route for one method, with the operation that describes it."""

    def __init__(self, path: str, method: str, endpoint: Endpoint, operation: Operation) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method
        self.operation = operation
