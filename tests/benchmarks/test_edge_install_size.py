"""benchmarks/edge_install_size.py: the requirement sets it installs (the installs themselves
need an index and minutes, so they are run by hand: docs/CLIENT.md "Measured")."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from benchmarks.edge_install_size import ROOT, SWAPS, _dist_name, requirements


def _declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["edge"]]


def test_edge_is_what_pyproject_declares_and_has_no_torch() -> None:
    reqs = requirements("edge")
    assert reqs == _declared()
    assert not {"torch", "torchvision", "compressai"} & {_dist_name(r) for r in reqs}


@pytest.mark.parametrize("variant", sorted(set(SWAPS) - {"edge"}))
def test_each_swap_replaces_only_what_it_names(variant: str) -> None:
    drop, add = SWAPS[variant]
    swapped_out = [r for r in _declared() if _dist_name(r) in drop]
    assert len(swapped_out) == len(drop) and not set(swapped_out) & set(requirements(variant))
    kept = [r for r in _declared() if _dist_name(r) not in drop]
    assert requirements(variant) == [*kept, *add]


def test_a_swap_of_an_undeclared_dependency_is_refused(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["numpy<2"]\n'
        '[project.optional-dependencies]\nedge = ["grpcio"]\n'
    )
    with pytest.raises(ValueError, match="opencv-python-headless"):
        requirements("dlib-pyav", pyproject)


def test_dist_names() -> None:
    assert _dist_name("opencv-python-headless>=4.8") == "opencv-python-headless"
    assert _dist_name("psycopg[binary]>=3.2,<4") == "psycopg"
    assert _dist_name("onnxruntime==1.32.0") == "onnxruntime"
