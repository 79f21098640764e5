"""The copy of the API's OpenAPI document kept in the repository (docs/openapi.json)::

    python -m labintake.web.openapi_copy docs/openapi.json           # write it again
    python -m labintake.web.openapi_copy --check docs/openapi.json   # exit 1 when stale

`tests/test_openapi.py` fails when the copy is not what the code gives.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sqlalchemy import create_engine

from labintake.config import Settings
from labintake.web.app import create_app


def render() -> str:
    """The document as the committed copy holds it (no database is touched)."""
    engine = create_engine("sqlite://")
    try:
        settings = Settings(development=True, _env_file=None)
        app = create_app(settings, engine)
        return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="where the copy is (docs/openapi.json)")
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.path.is_file() and args.path.read_text(encoding="utf-8") == text
        if not current:
            print(f"{args.path} is out of date: python -m labintake.web.openapi_copy {args.path}")
        return 0 if current else 1
    args.path.write_text(text, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
