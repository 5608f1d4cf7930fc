"""The server's heap frozen out of the garbage collector's full passes (service/heap.py), and
thawed again for each model change, so a model dropped in a reference cycle is still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import heap
from tests.service.conftest import SettingsFactory, running

TOKEN = "s3cret-token"


class _Node:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    """This process's collector as it was, whatever a test leaves frozen."""
    yield
    heap.thaw()


def test_a_frozen_cycle_is_freed_by_the_next_refreeze() -> None:
    node = _Node()
    ref = weakref.ref(node)
    assert heap.freeze() > 0 and gc.get_freeze_count() > 0
    del node
    gc.collect()
    assert ref() is not None  # frozen: the collector's passes skip it
    heap.refreeze()
    assert ref() is None and gc.get_freeze_count() > 0
    heap.thaw()
    assert gc.get_freeze_count() == 0


def test_refreeze_without_a_freeze_freezes_nothing() -> None:
    heap.refreeze()
    assert gc.get_freeze_count() == 0


def test_the_server_freezes_its_heap_and_a_model_swap_refreezes_it(
    make_settings: SettingsFactory, repo_copy: Path, payloads_v2: list[bytes]
) -> None:
    node = _Node()  # alive at start-up: frozen with the server's heap
    ref = weakref.ref(node)
    settings = make_settings(models_dir=repo_copy, admin_token=TOKEN, gc_freeze=True)
    with running(settings) as live:
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert ref() is not None
        r = live.http.post(
            "/v1/models/swap",
            json={"kind": "classifier", "ref": "tiny-classifier/2"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 200 and r.json()["changed"] is True, r.text
        assert ref() is None  # the swap's refreeze collected the whole heap once
        assert gc.get_freeze_count() > 0
        r = live.http.post(
            "/v1/classify",
            content=payloads_v2[0],
            headers={"content-type": "application/octet-stream"},
        )
        assert r.status_code == 200 and r.json()["classifier_version"] == "tiny-classifier/2"
    assert gc.get_freeze_count() == 0  # stopped: thawed


def test_gc_freeze_off_leaves_the_collector_alone(make_settings: SettingsFactory) -> None:
    with running(make_settings(gc_freeze=False)):
        assert gc.get_freeze_count() == 0
