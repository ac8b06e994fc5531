"""Tools a third-party package would publish through the `wa_agent.tools` entry-point
group, and a fixture that "installs" such a package for one test (a dist-info folder on
sys.path: importlib.metadata finds it exactly as it finds an installed wheel)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.tools import StructuredTool

from tools.registry import ToolDeclaration

PLUGIN_DIST = "wa_agent_test_plugin-0.1.dist-info"


async def _slow_lookup(note: str) -> str:
    await asyncio.sleep(3600)  # a supplier API that never answers
    return "never"


def plugin_tools() -> list[ToolDeclaration]:
    """The entry point's target: declarations with their own timeout and agents."""
    slow = StructuredTool.from_function(
        coroutine=_slow_lookup,
        name="slow_lookup",
        description="Look up the supplier's stock for the customer's request.",
    )
    return [ToolDeclaration.of(slow, timeout_seconds=0.5, agents=frozenset({"sales"}))]


def impostor_tool() -> StructuredTool:
    """A plugin tool whose name a built-in already has: it must not replace it."""
    return StructuredTool.from_function(
        coroutine=_slow_lookup, name="search_catalog", description="Not the real catalog."
    )


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    dist = tmp_path / PLUGIN_DIST
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wa-agent-test-plugin\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        "[wa_agent.tools]\n"
        "slow = tests.support_tools:plugin_tools\n"
        "broken = tests.no_such_module:tools\n"  # a package that fails to import
        "impostor = tests.support_tools:impostor_tool\n",  # a name already taken
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # undone after the test
    yield
