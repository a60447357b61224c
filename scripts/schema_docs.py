#!/usr/bin/env python3
"""Write the field tables of the message reference from shared/schemas/*.json.

The reference pages (docs/protocol/*.md) hold, for each message, a marker

    <!-- fields: protocol join.request -->
    ...table...
    <!-- /fields -->

and this script rewrites what lies between with a table made from that schema definition:
every field, its type, whether it is required, and its description (who chooses an id is
said there). `--check` rewrites nothing and exits 1 when a table is out of date
(tests/unit/test_reference_docs.py runs it), so the tables cannot drift from the schemas.

    .venv/bin/python scripts/schema_docs.py          # rewrite the tables
    .venv/bin/python scripts/schema_docs.py --check  # are they current?
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from tureen.shared import schemas

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "docs" / "protocol" / "messages.md", ROOT / "docs" / "protocol" / "control.md"]
MARKER = re.compile(
    r"(<!-- fields: (?P<doc>control|protocol) (?P<name>\S+) -->\n)(?P<body>.*?)(<!-- /fields -->)",
    re.S,
)
# Types that have a section of their own (linked, not expanded).
TYPE_SECTIONS = {"protocol": "messages.md", "control": "control.md"}


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", name.lower().replace(" ", "-"))


def type_of(schema: dict[str, Any], document: str) -> str:
    """A short human type: `integer`, `"send" \\| "recv"`, `[rtpParameters](...)`, `X or null`."""
    if "$ref" in schema:
        target = schema["$ref"]
        doc = "protocol" if target.startswith(schemas.PROTOCOL_ID) else document
        name = target.rsplit("/", 1)[1]
        if name in ("id", "serverId", "appData", "profile"):
            return type_of(schemas.load(doc)["$defs"][name], doc)
        page = "" if doc == document else TYPE_SECTIONS[doc]
        return f"[{name}]({page}#{_anchor(name)})"
    if "const" in schema:
        return f"`{_json(schema['const'])}`"
    if "enum" in schema:
        return " \\| ".join(f"`{_json(v)}`" for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [type_of(s, document) for s in schema[key]]
            return " or ".join(parts)
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        inner = type_of(items, document) if items else "any"
        bounds = ""
        if schema.get("maxItems") == 0:
            return "array (always empty)"
        if "minItems" in schema or "maxItems" in schema:
            bounds = f" ({schema.get('minItems', 0)}..{schema.get('maxItems', 'n')} items)"
        return f"array of {inner}{bounds}"
    if kind == "object" and schema.get("maxProperties") == 0:
        return "`{}`"
    if kind == "integer" and ("minimum" in schema or "maximum" in schema):
        return f"integer {schema.get('minimum', '')}..{schema.get('maximum', '')}"
    if kind == "string" and "maxLength" in schema:
        return f"string (≤ {schema['maxLength']} chars)"
    if kind == "null":
        return "`null`"
    return kind or "any JSON"


def _json(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return f'"{value}"' if isinstance(value, str) else str(value)


def inline_object(schema: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The object with listed fields that a field holds inline (not a `$ref`: those have a
    section of their own), directly, as array items or as the non-null choice: ("", obj)
    or ("[]", obj), else None."""
    for key in ("anyOf", "oneOf"):
        if key in schema:
            found = [inline_object(s) for s in schema[key] if s.get("type") != "null"]
            found = [f for f in found if f is not None]
            return found[0] if len(found) == 1 else None
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        inner = inline_object(schema["items"])
        return ("[]" + inner[0], inner[1]) if inner else None
    if schema.get("type") == "object" and schema.get("properties"):
        return ("", schema)
    return None


def nested_rows(path: str, schema: dict[str, Any], document: str, depth: int = 0) -> list[str]:
    """Rows for the fields of an object a field holds inline, named by their path
    (`codecs[].mimeType`, `plainRtpParameters.ip`), so no field of a message goes
    undocumented behind an "array of object". "yes" means required in each such object."""
    found = inline_object(schema)
    if found is None or depth > 3:
        return []
    suffix, obj = found
    required = set(obj.get("required", ()))
    rows = []
    for field, sub in obj["properties"].items():
        full = f"{path}{suffix}.{field}"
        needed = "yes" if field in required else "optional"
        cell = sub.get("description", "").replace("|", "\\|")
        rows.append(f"| `{full}` | {type_of(sub, document)} | {needed} | {cell} |")
        rows += nested_rows(full, sub, document, depth + 1)
    return rows


def table(document: str, name: str) -> str:
    schema = schemas.load(document)["$defs"][name]
    lines: list[str] = []
    if "description" in schema:
        lines += [schema["description"], ""]
    variants = schema.get("oneOf") or [schema]
    for variant in variants:
        if len(variants) > 1:
            lines += [f"One of: {variant.get('description', '')}", ""]
        properties = variant.get("properties")
        if variant.get("type") != "object" or not properties:
            lines += [f"Type: {type_of(variant, document)}.", ""]
            rows = nested_rows("", variant, document)
            if rows:  # a list of objects: the fields of each entry
                lines += ["| field | type | required | meaning |", "|---|---|---|---|", *rows, ""]
            continue
        required = set(variant.get("required", ()))
        lines += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for field, sub in properties.items():
            text = sub.get("description", "")
            if "$ref" in sub and not text:
                ref_name = sub["$ref"].rsplit("/", 1)[1]
                ref_doc = "protocol" if sub["$ref"].startswith(schemas.PROTOCOL_ID) else document
                text = schemas.load(ref_doc)["$defs"].get(ref_name, {}).get("description", "")
            needed = "yes" if field in required else "optional"
            cell = text.replace("|", "\\|")
            lines.append(f"| `{field}` | {type_of(sub, document)} | {needed} | {cell} |")
            lines += nested_rows(field, sub, document)
        extra = "other keys are ignored" if variant.get("additionalProperties", True) else "no other keys"
        lines += ["", f"({extra})", ""]
    return "\n".join(lines).rstrip() + "\n"


def render(text: str) -> str:
    def fill(match: re.Match[str]) -> str:
        return match.group(1) + table(match["doc"], match["name"]) + match.group(5)

    return MARKER.sub(fill, text)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for page in PAGES:
        text = page.read_text()
        new = render(text)
        if new != text:
            stale.append(page)
            if not check:
                page.write_text(new)
    if check and stale:
        print("out of date (run scripts/schema_docs.py):", *map(str, stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
