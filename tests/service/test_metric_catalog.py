"""service/metric_catalog.py lists exactly the families a real ``Metrics()`` registers.

The docs table and the dashboard checks read the catalogue (tests/deploy/test_deploy_files.py);
this ties the catalogue to the code, so a metric added to service/metrics.py without its
entry fails here by name.
"""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from service.metric_catalog import CATALOG
from service.metrics import Metrics


def _registered() -> dict[str, tuple[str, tuple[str, ...]]]:
    """{family: (type, label names)} of every metric object a ``Metrics()`` holds."""
    found = {}
    for obj in vars(Metrics()).values():
        if isinstance(obj, MetricWrapperBase):
            (family,) = obj.describe()
            found[family.name] = (family.type, tuple(obj._labelnames))
    return found


def test_every_registered_metric_is_catalogued_and_vice_versa() -> None:
    registered, catalogued = set(_registered()), {m.name for m in CATALOG}
    assert not registered - catalogued, (
        f"add to service/metric_catalog.py: {sorted(registered - catalogued)}"
    )
    assert not catalogued - registered, (
        f"not in service/metrics.py: {sorted(catalogued - registered)}"
    )
    assert len(CATALOG) == len(catalogued)  # no family listed twice


def test_catalogue_types_and_labels_match_the_registry() -> None:
    registered = _registered()
    for m in CATALOG:
        labels = tuple(name for name, _ in m.labels)
        assert registered[m.name] == (m.type, labels), m.name
