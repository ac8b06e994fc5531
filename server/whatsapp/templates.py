"""Message templates: the only messages WhatsApp delivers outside the 24-hour window.

A business's templates are written and approved in Meta's tools; the Cloud API lists
them (`GET /{business-account-id}/message_templates`, each with its `components`) and
tells the webhook when one is approved, paused or disabled
(`message_template_status_update`). A send names the template and its language and fills
its body's variables, positional (`{{1}}`) or named (`{{first_name}}`, a template whose
`parameter_format` is `NAMED`).

Only body variables are filled here. A template whose header needs a value (an image, a
document, a text with a variable) or whose buttons need one (a URL suffix, a coupon code)
is listed but not sendable, and says why: a send Meta would refuse is refused first.
https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/template-management/
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MessageTemplate",
    "TemplateStatusUpdate",
    "parse_listed_template",
    "render_body",
    "template_payload",
]

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_MEDIA_HEADERS = frozenset({"IMAGE", "VIDEO", "DOCUMENT", "LOCATION"})
# A body variable's value: Meta refuses new lines, tabs and more than four spaces in a row.
_BAD_PARAMETER = re.compile(r"[\n\t]| {5,}")
PARAMETER_LIMIT = 1024


@dataclass(frozen=True)
class MessageTemplate:
    """One template in one language, as the service needs it to send it."""

    name: str
    language: str
    status: str  # APPROVED, PENDING, REJECTED, PAUSED, DISABLED…
    category: str  # UTILITY, MARKETING, AUTHENTICATION
    body: str
    # The body's variables, in order: "1", "2"… or their names.
    variables: tuple[str, ...]
    # Why it cannot be sent with body variables alone; "" when it can.
    unsupported: str = ""

    @property
    def sendable(self) -> bool:
        return self.status == "APPROVED" and not self.unsupported

    @property
    def named(self) -> bool:
        """Named variables (`parameter_format` NAMED): each value is sent with its name."""
        return not all(variable.isdigit() for variable in self.variables)


def parse_listed_template(raw: Mapping[str, Any]) -> MessageTemplate | None:
    """One entry of Meta's listing; None when it has no name or language."""
    name, language = raw.get("name"), raw.get("language")
    if not isinstance(name, str) or not name or not isinstance(language, str) or not language:
        return None
    components = [c for c in raw.get("components") or [] if isinstance(c, dict)]
    body = next((c for c in components if str(c.get("type", "")).upper() == "BODY"), {})
    text = str(body.get("text") or "")
    return MessageTemplate(
        name=name,
        language=language,
        status=str(raw.get("status") or "PENDING").upper(),
        category=str(raw.get("category") or "").upper(),
        body=text,
        variables=tuple(dict.fromkeys(_VARIABLE.findall(text))),
        unsupported=_unsupported_parts(components),
    )


def _unsupported_parts(components: Sequence[Mapping[str, Any]]) -> str:
    for component in components:
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            header_format = str(component.get("format", "TEXT")).upper()
            if header_format in _MEDIA_HEADERS:
                return f"its header needs a {header_format.lower()}"
            if _VARIABLE.search(str(component.get("text", ""))):
                return "its header has a variable"
        if kind == "BUTTONS":
            for button in component.get("buttons") or []:
                if isinstance(button, dict) and _button_needs_value(button):
                    return f"its {str(button.get('type', '')).lower()} button needs a value"
    return ""


def _button_needs_value(button: Mapping[str, Any]) -> bool:
    kind = str(button.get("type", "")).upper()
    if kind == "URL":
        return bool(_VARIABLE.search(str(button.get("url", ""))))
    return kind in {"COPY_CODE", "OTP", "FLOW", "CATALOG", "MPM"}


def check_parameters(template: MessageTemplate, values: Sequence[str]) -> None:
    """Raise ValueError when the values do not fill the body as Meta requires."""
    if len(values) != len(template.variables):
        raise ValueError(
            f"template {template.name!r} takes {len(template.variables)} value(s)"
            f" ({', '.join(template.variables) or 'none'}), {len(values)} given"
        )
    for variable, value in zip(template.variables, values, strict=True):
        if not value.strip():
            raise ValueError(f"the value of {{{{{variable}}}}} is empty")
        if len(value) > PARAMETER_LIMIT:
            raise ValueError(f"the value of {{{{{variable}}}}} is over {PARAMETER_LIMIT} chars")
        if _BAD_PARAMETER.search(value):
            raise ValueError(
                f"the value of {{{{{variable}}}}} has a new line, a tab or five spaces in a row"
            )


def render_body(template: MessageTemplate, values: Sequence[str]) -> str:
    """The body as the customer reads it (for the transcript)."""
    filled = dict(zip(template.variables, values, strict=False))
    return _VARIABLE.sub(lambda m: filled.get(m.group(1), m.group(0)), template.body)


def template_payload(
    name: str, language: str, values: Mapping[str, str], *, named: bool
) -> dict[str, Any]:
    """The `template` message object: body values by variable, positional or named."""
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if values:
        parameters = [
            {"type": "text", "text": text, **({"parameter_name": key} if named else {})}
            for key, text in values.items()
        ]
        template["components"] = [{"type": "body", "parameters": parameters}]
    return {"type": "template", "template": template}


@dataclass(frozen=True)
class TemplateStatusUpdate:
    """A `message_template_status_update` change: a template approved, paused…"""

    name: str
    language: str
    status: str
    reason: str | None

    @classmethod
    def from_value(cls, value: Any) -> TemplateStatusUpdate | None:
        if not isinstance(value, dict):
            return None
        name = value.get("message_template_name")
        language = value.get("message_template_language")
        event = value.get("event")
        if not all(isinstance(v, str) and v for v in (name, language, event)):
            return None
        reason = value.get("reason")
        return cls(str(name), str(language), str(event).upper(), reason if reason else None)
