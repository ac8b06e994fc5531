"""A local webhook receiver for alerts: records each JSON POST, can fail the next few.

Stands in for whatever an operator points `ALERT_WEBHOOK_URL` at (Slack, PagerDuty,
an incident bot); binds 127.0.0.1 on an ephemeral port. The server, the recording of
requests and headers, and `fail_next` are `JsonFake`'s.
"""

from __future__ import annotations

from tests.fakes.json_http import JSON, JsonFake


class AlertReceiver(JsonFake):
    def __init__(self) -> None:
        super().__init__(api_key=None)  # the test reads the Authorization header itself
        self.received: list[JSON] = []  # accepted bodies, in order

    @property
    def attempts(self) -> int:
        """Every POST, refused ones included."""
        return len(self.requests)

    @property
    def url(self) -> str:
        return f"{self.base_url}/alerts"

    def handle(self, method: str, path: str, body: JSON) -> tuple[int, JSON]:
        self.received.append(body)
        return 200, {"ok": True}
