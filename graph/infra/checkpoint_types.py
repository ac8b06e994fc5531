"""Strict checkpoint deserialisation: a tampered checkpoint row cannot run code.

LangGraph's default serializer rebuilds any Python class a checkpoint names (module,
name, arguments) — so whoever can write to the checkpoint tables could make the worker
call `os.system`. With an explicit `allowed_msgpack_modules`, only LangGraph's own safe
types (datetimes, UUIDs, LangChain messages, `Send`/`Command`/`Interrupt`...) and the
classes listed here are rebuilt; anything else comes back as inert data and a warning.

Which of our classes may live in a checkpoint: those defined in the state and context
modules (`graph.state`, `graph.context`) — pydantic models, dataclasses and enums — so
a new state type is allowed by being declared where state types belong.

It lives in graph/ because every saver is built here (`persistence.create_checkpointer`),
for the worker as for erasure, replay and memory jobs: strict is the default, not a
step each caller has to remember.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from collections.abc import Iterable
from types import ModuleType

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel

from graph import context, state

STATE_MODULES = (state, context)


def state_types(modules: Iterable[ModuleType] = STATE_MODULES) -> set[tuple[str, str]]:
    """(module, class) of every model, dataclass and enum defined in `modules`."""
    allowed: set[tuple[str, str]] = set()
    for module in modules:
        module_name = module.__name__
        for name, value in vars(module).items():
            if not inspect.isclass(value) or value.__module__ != module_name:
                continue
            if issubclass(value, BaseModel | enum.Enum) or dataclasses.is_dataclass(value):
                allowed.add((module_name, name))
    return allowed


def strict_serializer(extra: Iterable[tuple[str, str]] = ()) -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=[*state_types(), *extra])
