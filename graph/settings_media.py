"""Media understanding and the code sandbox (issue 5): documents, images, voice, code_interpreter.

A section of `graph.settings.Settings`, kept in its own module so that no settings
module grows past a screenful per concern; `Settings` inherits it, and code reads these
values from a `Settings` instance like every other knob.
"""

from __future__ import annotations

from pydantic import BaseModel


class MediaSettings(BaseModel):
    """Fields here use `Field(default=..., validation_alias="ENV_NAME")` like Settings."""
