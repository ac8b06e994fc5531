"""Settings for services under faults: the real defaults, with waits shortened so that a
test sees in seconds what production sees in tens of seconds."""

from __future__ import annotations

from typing import Any

from graph.settings import Settings
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import service_settings


def fault_settings(
    db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer | None, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "whatsapp_api_base_url": graph_api.base_url,
        "whatsapp_timeout_seconds": 2.0,
        "retry_max_seconds": 2.0,
        "heal_interval_seconds": 1.0,
        "worker_heartbeat_seconds": 1.0,
        "stalled_job_seconds": 4.0,
        "queue_poll_seconds": 0.2,
        "model_timeout_seconds": 5.0,
        "model_max_retries": 1,
        "db_pool_max_size": 12,
    }
    if openai is not None:
        values |= {"openai_api_key": "sk-test", "openai_base_url": openai.base_url + "/v1"}
    values.update(overrides)
    return service_settings(db_url, **values)
