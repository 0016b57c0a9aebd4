"""The protocol's JSON Schema, generated from the pydantic models.

``protocol_schema()`` builds it; ``write_schema(path)`` writes it (``bulkex
protocol schema`` calls it, a test checks the committed file is up to date).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from api._protocol import PUSHES, REQUESTS, RESULTS, Accepted, ErrorResponse, WireModel

__all__ = ["SCHEMA_PATH", "protocol_schema", "schema_text", "write_schema"]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "protocol.schema.json"


def protocol_schema() -> dict[str, Any]:
    models: list[type[WireModel]] = [
        *REQUESTS.models.values(),
        Accepted,
        ErrorResponse,
        *RESULTS.values(),
        *PUSHES.values(),
    ]
    unique = list(dict.fromkeys(models))
    keys, definitions = models_json_schema([(m, "validation") for m in unique], ref_template="#/$defs/{model}")
    ref = {model: keys[(model, "validation")]["$ref"] for model in unique}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "bulkex WebSocket protocol",
        "description": "One JSON object per text frame. See docs/protocol.md.",
        "$defs": definitions.get("$defs", {}),
        "requests": {"oneOf": [ref[m] for m in REQUESTS.models.values()]},
        "responses": {"oneOf": [ref[Accepted], ref[ErrorResponse]]},
        "results": {name: ref[model] for name, model in RESULTS.items()},
        "pushes": {"oneOf": [ref[m] for m in dict.fromkeys(PUSHES.values())]},
    }


def schema_text() -> str:
    return json.dumps(protocol_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
    return path
