"""Eval records as curves: merging eval runs, families, accuracy-rate curves and BD tables.

Records of several eval runs on the same data (same dataset, split and face count) are merged,
so baselines and learned codecs may be evaluated separately. The curves compared are
*families*: each baseline format, and each learned family (``record["family"]``, overridable).
A learned codec's accuracy is taken with its paired classifier when the eval recorded one
(jointly trained codec + classifier), else with the primary classifier; baselines always use
the primary classifier.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from training.bdrate import bd_metric, bd_rate

PER_CLASSIFIER = ("accuracy", "macro_f1", "accuracy_tta", "macro_f1_tta", "mirror_agreement")


def load_evals(paths: Iterable[Path]) -> list[dict[str, Any]]:
    docs = []
    for p in paths:
        doc = json.loads(Path(p).read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
            raise ValueError(f"{p} is not a fercomp eval JSON (no records)")
        docs.append(doc)
    if not docs:
        raise ValueError("no eval JSON given")
    return docs


def merge_evals(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One document per (dataset, split, n, perturbation); later runs replace same-named
    operating points. Faces perturbed by ``fercomp eval --perturb`` are other faces: their
    records never mix with those of the split as it is.

    The per-classifier scores of a replaced point are kept for classifiers the later run did
    not score, so an operating point measured in two runs (e.g. ``uncompressed``, which every
    eval records) keeps the accuracy of every classifier either run used.
    """
    groups: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    for doc in docs:
        perturb = json.dumps(doc.get("perturb"), sort_keys=True)
        key = (str(doc.get("dataset")), str(doc.get("split")), int(doc.get("n", 0)), perturb)
        g = groups.setdefault(key, {**doc, "records": [], "classifiers": []})
        g["classifiers"] += [c for c in doc.get("classifiers", []) if c not in g["classifiers"]]
        by_name = {r["name"]: i for i, r in enumerate(g["records"])}
        for r in doc["records"]:
            if r["name"] in by_name:
                prev = g["records"][by_name[r["name"]]]
                per_clf = {k: {**prev.get(k, {}), **r.get(k, {})} for k in PER_CLASSIFIER}
                g["records"][by_name[r["name"]]] = {**r, **per_clf}
            else:
                by_name[r["name"]] = len(g["records"])
                g["records"].append(r)
    return list(groups.values())


def apply_families(records: list[dict[str, Any]], families: dict[str, list[str]]) -> None:
    """``{"joint": ["codec-a/1", "codec-b"]}``: set the family of learned records by ref or name.

    A record named by several families is on each of their curves: the first keeps the record,
    every further one gets a copy right after it (one table row per family), so one codec can
    anchor two curves of one report, e.g. a new cycle beside the set it extends.
    """
    out: list[dict[str, Any]] = []
    for r in records:
        art = r.get("artifact") or ""
        named = [
            fam
            for fam, refs in families.items()
            if r["name"] in refs or art in refs or art.split("/")[0] in refs
        ]
        if not named:
            out.append(r)
            continue
        r["family"] = named[0]
        out += [r, *({**r, "family": fam} for fam in named[1:])]
    records[:] = out


ACCURACY_KEYS = ("accuracy", "accuracy_tta")  # raw, and as served (flip TTA)


def curve_accuracy(record: dict[str, Any], primary: str, key: str = "accuracy") -> float | None:
    """The accuracy a point is plotted at: its paired (joint) classifier's, else the primary's."""
    acc = record.get(key, {})
    ref = record.get("paired_classifier") or primary
    value = acc.get(ref, acc.get(primary))
    return None if value is None else float(value)


def family_curves(
    records: list[dict[str, Any]], primary: str, metric: str = "accuracy"
) -> dict[str, tuple[list[float], list[float]]]:
    """family -> (bytes per face, metric) over its operating points, sorted by rate."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if r["codec"] == "none":
            continue
        value = curve_accuracy(r, primary, metric) if metric in ACCURACY_KEYS else r.get(metric)
        if value is not None:
            curves.setdefault(r["family"], []).append((float(r["bytes_per_face"]), float(value)))
    return {f: ([p[0] for p in sorted(v)], [p[1] for p in sorted(v)]) for f, v in curves.items()}


def bd_tables(
    records: list[dict[str, Any]], primary: str, metric: str = "accuracy"
) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """learned family -> reference family -> (BD-rate %, BD-metric), for families with ≥2 points."""
    curves = {f: c for f, c in family_curves(records, primary, metric).items() if len(c[0]) >= 2}
    learned = sorted({r["family"] for r in records if r["codec"] == "learned"} & set(curves))
    out: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    for fam in learned:
        rb, mb = curves[fam]
        out[fam] = {}
        for ref in sorted(set(curves) - {fam}):
            ra, ma = curves[ref]
            out[fam][ref] = (bd_rate(ra, ma, rb, mb), bd_metric(ra, ma, rb, mb))
    return out
