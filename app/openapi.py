"""Write the OpenAPI document to `openapi/openapi.json` (`python -m app.openapi`).

The committed document is what integrators and generated clients read; a test fails when it
differs from what the app generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from app.config import Settings

DOCUMENT = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def generate() -> dict[str, Any]:
    from app.main import create_app

    # Building the schema needs no database: the lifespan (which connects) is not run.
    return create_app(Settings(database_url="postgresql://unused/unused")).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCUMENT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(generate()))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
