"""Write the REST API's OpenAPI document to docs/openapi.json (or check that it is current).

The document is generated from the app itself (``service.http.app.build_app``: routes and
pydantic models, no state, no models loaded), so it cannot drift from the code;
tests/service/test_openapi.py fails when the checked-in file is stale. Regenerate after
changing a route or a schema:

    PYTHONPATH=$PWD .venv/bin/python scripts/gen_openapi.py          # write
    PYTHONPATH=$PWD .venv/bin/python scripts/gen_openapi.py --check  # exit 1 when stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    from service.http.app import build_app  # imported late: --help stays instant

    doc: dict[str, Any] = build_app().openapi()
    return doc


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args(argv)
    text = render(openapi_document())
    if args.check:
        if not args.out.is_file() or args.out.read_text() != text:
            print(f"{args.out} is stale: run scripts/gen_openapi.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
