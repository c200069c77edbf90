"""The API docs at `/docs`, served entirely from this process: no CDN, so they work offline.

Swagger UI's files come from the `fastapi-offline` package, which ships them. Every OpenAPI
document declares how to get a token: an OpenID Connect scheme pointing at the trusted issuer's
discovery document, so the page's Authorize button runs the authorization code flow with PKCE
for a person (as the public docs client, when the provider registered one) or client credentials
for a client, and every operation that takes the principal says it needs that scheme.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from cleave.auth.oidc import DISCOVERY_PATH
from cleave.auth.tokens import current_principal, required_scope
from cleave.config import DOCS_OAUTH2_REDIRECT_PATH as OAUTH2_REDIRECT_PATH

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
SCHEME = "openid"
# Swagger UI 5's bundle, CSS and icon, as `fastapi-offline` ships them (its app class is not used).
SWAGGER_UI = Path(fastapi_offline.__file__).parent / "static"


def mount_docs(
    app: FastAPI, routers: Mapping[str, APIRouter], *, issuer: str, client_id: str | None
) -> None:
    """Serve `/docs` for `app` (created with `docs_url=None`), signing in against `issuer`;
    `routers` are the services' routers by the prefix they are mounted at."""
    app.mount(ASSETS_PATH, StaticFiles(directory=SWAGGER_UI), name="docs-assets")
    init_oauth: dict[str, Any] = {"usePkceWithAuthorizationCodeGrant": True}
    if client_id:
        init_oauth["clientId"] = client_id

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} · API",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
            init_oauth=init_oauth,
        )

    async def oauth2_redirect(_request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route(DOCS_PATH, docs, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_PATH, oauth2_redirect, include_in_schema=False)
    _declare_security(app, issuer, _protected(routers))


def api_docs_app(
    title: str, routers: Mapping[str, APIRouter], *, issuer: str, client_id: str | None
) -> FastAPI:
    """One document and docs page for services that run elsewhere (the gateway's `/docs`): an
    app that only describes `routers` and never serves them; `DOCS_ROUTES` are what it answers."""
    app = FastAPI(title=title, version="1", docs_url=None, redoc_url=None)
    for prefix, router in routers.items():
        app.include_router(router, prefix=prefix, tags=[prefix.split("/")[2]])
    mount_docs(app, routers, issuer=issuer, client_id=client_id)
    return app


# The paths a docs app answers: the page, its document, the sign-in's return and the assets.
DOCS_ROUTES = (DOCS_PATH, "/openapi.json", OAUTH2_REDIRECT_PATH, ASSETS_PATH + "/{file:path}")


def _protected(routers: Mapping[str, APIRouter]) -> dict[tuple[str, str], list[str]]:
    """(path, method) of every operation whose route takes the principal, with the scopes it
    requires (an admin's token passes them all)."""
    return {
        (prefix + route.path_format, method.lower()): _scopes(route)
        for prefix, router in routers.items()
        for route in router.routes
        if isinstance(route, APIRoute) and _takes_principal(route)
        for method in route.methods or ()
    }


def _declare_security(
    app: FastAPI, issuer: str, protected: Mapping[tuple[str, str], list[str]]
) -> None:
    """Add the issuer's scheme to the document, and require it where a route takes a principal."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        document.setdefault("components", {})["securitySchemes"] = {
            SCHEME: {
                "type": "openIdConnect",
                "openIdConnectUrl": issuer.rstrip("/") + DISCOVERY_PATH,
                "description": "A bearer access token from the system's OpenID provider.",
            }
        }
        for (path, method), scopes in protected.items():
            if (operation := document["paths"].get(path, {}).get(method)) is not None:
                operation["security"] = [{SCHEME: scopes}]
        _declare_validation_problems(document)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# What a 422 is answered with (cleave.web.app's handlers): an RFC 9457 problem, which lists each
# error when the request failed validation; never FastAPI's default `{"detail": [...]}` body.
PROBLEM = {
    "title": "Problem",
    "description": "An RFC 9457 problem. `code` says which; a request that fails validation "
    "(`validation-error`) lists each error in `errors`. A problem may carry other members.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _declare_validation_problems(document: dict[str, Any]) -> None:
    """Each operation's 422 as the problem the chassis really sends, in place of FastAPI's."""
    declared = False
    for item in document.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
            if "422" in responses:
                responses["422"] = {
                    "description": "The request is not valid, or cannot be carried out",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                }
                declared = True
    if declared:
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name in _FASTAPI_VALIDATION_SCHEMAS:
            schemas.pop(name, None)
        schemas["Problem"] = PROBLEM
        document["components"]["schemas"] = dict(sorted(schemas.items()))


def _takes_principal(route: APIRoute) -> bool:
    return any(dependant.call is current_principal for dependant in _walk(route.dependant))


def _scopes(route: APIRoute) -> list[str]:
    found = (
        required_scope(dependant.call) for dependant in _walk(route.dependant) if dependant.call
    )
    return sorted({scope for scope in found if scope})


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for child in dependant.dependencies:
        yield from _walk(child)
