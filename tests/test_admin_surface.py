"""Request bodies outside `/webhook` are capped before anything reads them: a client
without a token cannot make the service hold megabytes, whether it declares the size
or streams it, while an operator's largest real edit (a long agent prompt) still works."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx

from server.http.body_limit import OTHER_PATHS_LIMIT_BYTES
from tests.fakes.graph_api import FakeGraphAPI
from tests.support import RunningService, running_service, service_settings

ADMIN_TOKEN = "surface-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TEN_MB = 10 * 1024 * 1024


async def nothing_written(service: RunningService) -> bool:
    blacklist = await service.fetch("SELECT count(*) AS n FROM blacklist")
    audit = await service.fetch("SELECT count(*) AS n FROM audit_log")
    return bool(blacklist[0]["n"] == 0 and audit[0]["n"] == 0)


async def test_ten_megabytes_without_a_token_are_refused_before_reading(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    config = service_settings(
        db_url, whatsapp_api_base_url=graph_api.base_url, admin_token=ADMIN_TOKEN
    )
    block = {"wa_id": "+250788123456", "reason": "x" * TEN_MB}
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
            anonymous = await client.post("/admin/api/blacklist", json=block)
            with_token = await client.post("/admin/api/blacklist", json=block, headers=ADMIN)
            login = await client.post("/admin/login", data={"token": "t" * TEN_MB})
            still_serving = await client.get("/admin/api/blacklist", headers=ADMIN)
        unchanged = await nothing_written(service)
    for response in (anonymous, with_token, login):
        assert response.status_code == 413, response.text[:200]
        assert response.json()["detail"].startswith("request body too large")
    assert still_serving.status_code == 200 and still_serving.json() == []
    assert unchanged  # no entry, and not even a refused-login row: nothing was read


async def test_a_streamed_body_is_cut_off_as_soon_as_it_goes_over(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """No Content-Length (chunked): the 413 comes while the client is still sending, so
    the service never waited for, let alone kept, the rest."""
    config = service_settings(
        db_url, whatsapp_api_base_url=graph_api.base_url, admin_token=ADMIN_TOKEN
    )
    chunk = b"x" * 16_384
    async with running_service(config, with_worker=False) as service:
        address = urlsplit(service.base_url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(
            b"POST /admin/login HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        )
        for _ in range(OTHER_PATHS_LIMIT_BYTES // len(chunk) + 2):  # never the last chunk
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        try:
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        finally:
            writer.close()  # without it a service still waiting would never shut down

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(OTHER_PATHS_LIMIT_BYTES // len(chunk) + 2):
                yield chunk

        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
            streamed = await client.post(
                "/v1/conversations/00000000-0000-0000-0000-000000000000/stream",
                content=chunks(),
                headers={**ADMIN, "Content-Type": "application/json"},
            )
        unchanged = await nothing_written(service)
    assert status_line.startswith(b"HTTP/1.1 413")
    assert streamed.request.headers.get("transfer-encoding") == "chunked"
    assert streamed.status_code == 413 and "too large" in streamed.json()["detail"]
    assert unchanged


async def test_a_long_prompt_edit_fits_and_the_webhook_keeps_its_own_limit(
    db_url: str, graph_api: FakeGraphAPI
) -> None:
    """The longest prompt the API accepts (20,000 characters), in a script that escapes
    every non-ASCII character (~120 KB of JSON), is saved; `/webhook` still takes bodies
    far over the admin limit up to its own 1 MiB."""
    config = service_settings(
        db_url, whatsapp_api_base_url=graph_api.base_url, admin_token=ADMIN_TOKEN
    )
    prompt = ("እንኳንደህናመጡ፤ንግድቤታችንክፍት ነው። " * 1000)[:20_000]  # Amharic: 6 bytes a letter
    body = json.dumps({"system_prompt": prompt}, ensure_ascii=True).encode()
    assert len(body) > 100_000
    async with running_service(config, with_worker=False) as service:
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
            edited = await client.patch(
                "/admin/api/agents/sales",
                content=body,
                headers={**ADMIN, "Content-Type": "application/json"},
            )
            agents = (await client.get("/admin/api/agents", headers=ADMIN)).json()
            webhook = await client.post("/webhook", content=b"{" + b" " * 400_000 + b"}")
    assert edited.status_code == 200, edited.text[:300]
    assert next(a for a in agents if a["name"] == "sales")["system_prompt"] == prompt
    assert webhook.status_code == 401  # read whole and refused for its missing signature
