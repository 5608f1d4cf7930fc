"""The served operating points in README.md and docs/RESULTS.md are the table
``scripts/operating_points.py`` prints from the committed JSONs: a figure edited by hand, or a
JSON re-measured without regenerating the docs, fails here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "operating_points", ROOT / "scripts" / "operating_points.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table() -> str:
    op = load_script()
    default = json.loads((ROOT / "models" / "defaults.json").read_text())["codec"]
    built = op.build(ROOT / op.SERVED, [ROOT / p for p in op.EVALS], default_codec=default)
    committed = json.loads((ROOT / "docs" / "results" / "operating-points.json").read_text())
    assert committed["rows"] == built["rows"]  # the plot's JSON is current too
    return str(op.markdown(built))


@pytest.mark.parametrize("page", ["README.md", "docs/RESULTS.md"])
def test_the_docs_show_the_table_the_script_prints(page: str, table: str) -> None:
    assert table in (ROOT / page).read_text(), f"{page}: rerun scripts/operating_points.py"


def test_the_table_has_at_most_eight_rows_and_the_plot_is_small(table: str) -> None:
    assert len(table.splitlines()) - 2 <= 8
    png = ROOT / "docs" / "figures" / "operating_points.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 100_000
