"""The runner's calls to the arwx server (``/wild/v2/runner/…``), with its own key in ``X-Auth-Token``.

Each call raises ``ServerError`` when the server cannot be reached or answers
5xx/429 (the caller retries later), and ``Refused`` for any other 4xx: the
server will not accept it however often it is sent.
"""

from __future__ import annotations

from typing import Any

import aiohttp

TIMEOUT_S = 30.0


class ServerError(Exception):
    """Unreachable, or a 5xx/429: try again later."""


class Refused(Exception):
    """A 4xx other than 429: sending it again will not help."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class RunnerClient:
    """An HTTP session to one server."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"X-Auth-Token": self._key}, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, path: str, json: Any = None, data: bytes | None = None, params: dict | None = None) -> Any:
        assert self._session is not None, "start() first"
        try:
            async with self._session.post(self.base_url + path, json=json, data=data, params=params) as resp:
                body = await resp.json(content_type=None)
                if resp.status >= 500 or resp.status == 429:
                    raise ServerError(f"{path}: {resp.status} {body}")
                if resp.status >= 400:
                    raise Refused(resp.status, body)
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise ServerError(f"{path}: {type(e).__name__}: {e}") from e

    async def heartbeat(self, runner_id: str, host: str, capacity: int, running: list[str]) -> dict:
        return await self._call(
            "/wild/v2/runner/heartbeat",
            {"runner_id": runner_id, "host": host, "capacity": capacity, "running": running},
        )

    async def claim(self, runner_id: str, n: int) -> list[dict]:
        return (await self._call("/wild/v2/runner/claim", {"runner_id": runner_id, "max": n}))["runs"]

    async def report(self, runner_id: str, run_id: str, status: str, exit_code: int | None, error: str | None) -> dict:
        return await self._call(
            f"/wild/v2/runner/runs/{run_id}/report",
            {"runner_id": runner_id, "status": status, "exit_code": exit_code, "error": error},
        )

    async def upload_log(self, runner_id: str, run_id: str, stream: str, offset: int, data: bytes) -> dict:
        return await self._call(
            f"/wild/v2/runner/runs/{run_id}/logs", data=data,
            params={"runner_id": runner_id, "stream": stream, "offset": str(offset)},
        )
