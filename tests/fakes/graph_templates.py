"""The fake Graph API's message templates: Meta's listing, page by page, and the checks
Meta makes on a template send (the template exists in that language, is approved, and
gets one value per body variable).

Shapes follow Meta's documentation ("Template management", Get templates; and the
`template` message object of the Cloud API's send endpoint):
https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/template-management/
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlencode

JSON = dict[str, Any]

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def listed_template(
    name: str,
    language: str,
    body: str,
    *,
    status: str = "APPROVED",
    category: str = "UTILITY",
    header: JSON | None = None,
    buttons: list[JSON] | None = None,
) -> JSON:
    """One entry of the listing as Meta returns it (an id, the parameter format)."""
    named = any(not v.isdigit() for v in _VARIABLE.findall(body))
    components: list[JSON] = [] if header is None else [{"type": "HEADER", **header}]
    components.append({"type": "BODY", "text": body})
    if buttons:
        components.append({"type": "BUTTONS", "buttons": buttons})
    return {
        "name": name,
        "parameter_format": "NAMED" if named else "POSITIONAL",
        "components": components,
        "language": language,
        "status": status,
        "category": category,
        "id": str(abs(hash((name, language))) % 10**15),
    }


def template_page(
    templates: list[JSON], base_url: str, path: str, query: str, *, max_size: int = 100
) -> JSON:
    """One page of the listing; `paging.next` names the following page, as Meta's does."""
    params = {key: values[0] for key, values in parse_qs(query).items()}
    size = min(int(params.get("limit", "25")), max_size)
    start = int(params.get("after") or 0)
    page: JSON = {"data": templates[start : start + size]}
    cursors = {"before": str(start), "after": str(start + size)}
    page["paging"] = {"cursors": cursors}
    if start + size < len(templates):
        following = {**params, "after": str(start + size)}
        page["paging"]["next"] = f"{base_url}{path}?{urlencode(following)}"
    return page


def template_problem(templates: list[JSON], message: JSON) -> tuple[int, str] | None:
    """Meta's refusal of a template send, as (code, message), or None."""
    template = message.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("name"), str):
        return 100, "(#100) The parameter template['name'] is required"
    language = (template.get("language") or {}).get("code")
    known = next(
        (t for t in templates if t["name"] == template["name"] and t["language"] == language),
        None,
    )
    if known is None or known["status"] in ("PENDING", "REJECTED"):
        return 132001, "(#132001) Template name does not exist in the translation"
    if known["status"] == "PAUSED":
        return 132015, "(#132015) Template is paused due to low quality"
    if known["status"] != "APPROVED":
        return 132016, "(#132016) Template has been disabled"
    body = next(c for c in known["components"] if c["type"] == "BODY")
    expected = list(dict.fromkeys(_VARIABLE.findall(body["text"])))
    given = [
        p
        for c in template.get("components") or []
        if str(c.get("type", "")).lower() == "body"
        for p in c.get("parameters") or []
    ]
    if len(given) != len(expected):
        return 132000, "(#132000) Number of parameters does not match the expected number"
    if known["parameter_format"] == "NAMED":
        if [p.get("parameter_name") for p in given] != expected:
            return 132000, "(#132000) Parameter names do not match the template"
    return None
