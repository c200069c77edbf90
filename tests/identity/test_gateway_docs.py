"""The split's gateway answers `/docs` with one document of every service's API, served from
the process (no CDN), tried out through the gateway and signed in at the system's provider."""

from __future__ import annotations

import httpx

from cleave.config import SystemConfig


async def test_the_gateway_serves_one_offline_docs_page_for_every_service(
    web: httpx.AsyncClient, split_config: SystemConfig
) -> None:
    page = await web.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert (await web.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
    document = (await web.get("/openapi.json")).json()
    paths = set(document["paths"])
    for service in ("identity", "catalog", "customer", "ordering", "payment"):
        assert any(path.startswith(f"/api/{service}/v1/") for path in paths), service
    scheme = document["components"]["securitySchemes"]["openid"]
    assert scheme["openIdConnectUrl"].startswith(split_config.issuer)
    assert document["paths"]["/api/ordering/v1/orders"]["post"]["security"] == [
        {"openid": ["orders:write"]}
    ]
