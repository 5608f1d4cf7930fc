"""``fercomp models``: the release set of a model repository (``release.json``, what a deployment
ships and a server loads), group by group, with each artifact's figures as served; ``--all`` for
every artifact of the repository, ``--validation`` for the trainer's figures in each manifest.

The figures as served come from the repository's results JSONs (``docs/results`` of a source
checkout, or ``--results DIR``), never from a new measurement: for a codec, the accuracy and
bytes/face of its faces read by the classifier a server loading the listed set picks (the codec's
paired classifier when that is listed, else the default classifier), taken from a
``benchmarks/served_accuracy.py`` run (through a real server) when one has the pair, else from
the newest ``fercomp eval`` JSON that scored the pair with flip TTA, as the server reads; for a
classifier, its flip-TTA accuracy on uncompressed faces. The ``source`` column names the file.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # core.manifest is torch-free, but kept out of `fercomp --help` all the same
    from core.manifest import Manifest, ModelRepository

# manifest metrics shown with --validation (measured by the trainer on its validation faces)
COLUMNS = (
    ("bytes/face", "bytes_per_face", "{:.1f}"),
    ("PSNR", "bitstream_psnr", "{:.2f}"),
    ("acc (decoded)", "bitstream_accuracy", "{:.4f}"),
    ("acc (raw)", "val_acc_clean", "{:.4f}"),
    ("acc", "val_accuracy", "{:.4f}"),
)
#: the split the figures as served are read on (what docs/RESULTS.md reports)
SPLIT = "PublicTest"
UNCOMPRESSED_BYTES = 48 * 48
#: a source checkout's results folder (absent from an installed wheel or an image)
CHECKOUT_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "models", help="list the release set of a model repository with its figures as served"
    )
    p.add_argument("--models", metavar="DIR", help="model repository (default: bundled models)")
    p.add_argument("--kind", choices=("codec", "classifier"), help="only this kind")
    p.add_argument(
        "--all",
        action="store_true",
        help="every artifact of the repository, not only the release set (release.json)",
    )
    p.add_argument(
        "--validation",
        action="store_true",
        help="the trainer's validation figures of each manifest instead of the figures as served",
    )
    p.add_argument(
        "--results",
        metavar="DIR",
        type=Path,
        help="folder of results JSONs (benchmarks/served_accuracy.py, fercomp eval) the figures "
        "as served are read from (default: docs/results of the source checkout)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per artifact")
    p.add_argument(
        "--release-to",
        metavar="DIR",
        type=Path,
        help="copy the release set (release.json; only --kind if given) into the empty DIR "
        "instead of listing: what an image ships",
    )
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Served:
    """One artifact's figure as served, and the file it comes from."""

    read_by: str | None  # the classifier reading a codec's faces; None for a classifier
    bytes_per_face: float
    accuracy: float
    faces: int
    source: str


@dataclass
class Results:
    """The served-accuracy rows and eval records of a results folder, on ``SPLIT``."""

    folder: Path | None
    served: dict[tuple[str, str], Served] = field(default_factory=dict)
    # (created, file, doc) of each unperturbed eval of the whole split, oldest first
    evals: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def read(cls, folder: Path | None) -> Results:
        out = cls(folder if folder is not None and folder.is_dir() else None)
        if out.folder is None:
            return out
        for f in sorted(out.folder.glob("*.json")):
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(doc, dict):
                continue
            if doc.get("benchmark") == "served_accuracy":
                out._add_served(f.name, doc)
            elif isinstance(doc.get("records"), list) and _whole_split(doc):
                out.evals.append((str(doc.get("created", "")), f.name, doc))
        out.evals.sort(key=lambda e: e[0])
        return out

    def _add_served(self, name: str, doc: dict[str, Any]) -> None:
        argv = [str(a) for a in doc.get("argv", [])]
        split = argv[argv.index("--split") + 1] if "--split" in argv[:-1] else SPLIT
        if split != SPLIT:
            return
        for r in doc.get("rows", []):
            try:
                key = (str(r["codec"]), str(r["classifier"]))
                self.served[key] = Served(
                    key[1], float(r["bytes_per_face"]), float(r["served"]), int(r["faces"]), name
                )
            except (KeyError, TypeError, ValueError):
                continue

    def codec(self, m: Manifest, classifier: str) -> Served | None:
        """``m``'s faces read by ``classifier``: through a server if measured so, else the
        newest eval of the same codec (same codec id) with that classifier's flip-TTA figure."""
        if (m.ref, classifier) in self.served:
            return self.served[(m.ref, classifier)]
        for _, name, doc in reversed(self.evals):
            for r in doc["records"]:
                if r.get("artifact") != m.ref or r.get("codec_id", m.codec_id) != m.codec_id:
                    continue
                acc = (r.get("accuracy_tta") or {}).get(classifier)
                if acc is not None:
                    return Served(
                        classifier, float(r["bytes_per_face"]), float(acc), int(doc["n"]), name
                    )
        return None

    def classifier(self, ref: str) -> Served | None:
        """``ref`` on uncompressed faces with flip TTA, from the newest eval that has it."""
        for _, name, doc in reversed(self.evals):
            for r in doc["records"]:
                acc = (r.get("accuracy_tta") or {}).get(ref) if r.get("codec") == "none" else None
                if acc is not None:
                    return Served(None, float(UNCOMPRESSED_BYTES), float(acc), int(doc["n"]), name)
        return None


def _whole_split(doc: dict[str, Any]) -> bool:
    perturb = doc.get("perturb")
    return (
        doc.get("split") == SPLIT
        and not doc.get("limit")
        and (not perturb or perturb == "none")
        and isinstance(doc.get("n"), int)
    )


def _release_groups(root: Path) -> dict[str, str] | None:
    """ref -> the release.json group it is listed in (the first), None without release.json."""
    from core.release import RELEASE_FILE, listed_refs

    if not (root / RELEASE_FILE).is_file():
        return None
    listed_refs(root)  # checks the format, with the file's name in the error
    groups: dict[str, list[str]] = json.loads((root / RELEASE_FILE).read_text())["groups"]
    out: dict[str, str] = {}
    for why, refs in groups.items():
        for ref in refs:
            out.setdefault(ref, why)
    return out


def _row(
    m: Manifest,
    default: set[str],
    group: str | None,
    read_by: str | None,
    served: Served | None,
) -> dict[str, Any]:
    t = m.training
    return {
        "ref": m.ref,
        "kind": m.kind,
        "default": m.ref in default,
        "release_group": group,
        "trainer": t.get("trainer"),
        "lmbda": t.get("config", {}).get("lmbda") if m.kind == "codec" else None,
        "steps": t.get("steps"),
        "codec_id": m.codec_id,
        "read_by": read_by,
        "served": None
        if served is None
        else {
            "split": SPLIT,
            "faces": served.faces,
            "bytes_per_face": served.bytes_per_face,
            "accuracy": served.accuracy,
            "source": served.source,
        },
        "metrics": m.metrics,
    }


def _stage(repo: ModelRepository, dest: Path, kind: Literal["codec", "classifier"] | None) -> int:
    from core.release import stage_release

    staged = stage_release(repo, dest, kind)
    print(
        json.dumps(
            {"release_to": str(staged.dest), "artifacts": len(staged.refs), "bytes": staged.bytes}
        )
    )
    return 0


def _name(r: dict[str, Any]) -> str:
    return str(r["ref"]) + (" (default)" if r["default"] else "")


def _validation_table(rows: list[dict[str, Any]]) -> list[str]:
    head = ["artifact", "kind", "trainer", "λ", "steps", *(c[0] for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|---:|---:|" + "---:|" * len(COLUMNS)]
    for r in rows:
        cells = [
            _name(r),
            r["kind"],
            str(r["trainer"] or ""),
            "" if r["lmbda"] is None else f"{r['lmbda']:g}",
            "" if r["steps"] is None else str(r["steps"]),
        ]
        for _, key, fmt in COLUMNS:
            v = r["metrics"].get(key)
            cells.append("" if v is None else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _served_table(rows: list[dict[str, Any]], release_column: bool) -> list[str]:
    head = ["artifact", "kind", *(["release"] if release_column else [])]
    head += ["read by", "bytes/face", "accuracy as served", "source"]
    align = "|---|---|" + ("---|" if release_column else "") + "---|---:|---:|---|"
    lines = ["| " + " | ".join(head) + " |", align]
    for r in rows:
        s = r["served"]
        cells = [_name(r), r["kind"]]
        if release_column:
            cells.append("yes" if r["release_group"] else "")
        if r["kind"] == "classifier":
            cells.append("(uncompressed faces)")
        else:
            cells.append(str(r["read_by"] or ""))
        if s is None:
            cells += ["—", "—", ""]
        else:
            cells += [f"{s['bytes_per_face']:.1f}", f"{100 * s['accuracy']:.2f} %", s["source"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _header(
    root: Path,
    listed: int,
    total: int,
    groups: dict[str, str] | None,
    release: bool,
    results: Results,
    validation: bool,
) -> list[str]:
    if release:
        what = (
            f"The release set of {root} (release.json: what an image ships and a server loads): "
            f"{listed} of {total} artifacts, by release.json group; --all lists every artifact."
        )
    elif groups is None:
        what = f"Every artifact of {root} ({listed}; it has no release.json)."
    else:
        what = f"Every artifact of {root} ({listed}); `release`: in release.json."
    if validation:
        return [
            what,
            "Figures: the trainer's, from each manifest (its held-out validation faces of "
            "FER2013 Training, after export); figures as served: without --validation.",
        ]
    if results.folder is None:
        src = (
            "Figures as served: none (no results folder: docs/results of a source checkout, "
            "or --results DIR)."
        )
    else:
        src = (
            f"Figures as served: FER2013 {SPLIT}, flip TTA as the server reads, each codec read "
            "by the classifier a server loading these artifacts picks (its paired classifier "
            "when listed, else the default); from {folder}: a benchmarks/served_accuracy.py "
            "run (through a real server) where it has the pair, else the newest fercomp eval "
            "JSON that scored it (`source`); a classifier: on uncompressed faces."
        ).format(folder=results.folder)
    return [what, src]


def run(args: argparse.Namespace) -> int:
    from core.manifest import ModelRepository, bundled_models_dir

    root = Path(args.models) if args.models else bundled_models_dir()
    if not root.is_dir():
        raise ValueError(f"model repository {root} is not a directory")
    repo = ModelRepository(root)
    if args.release_to is not None:
        return _stage(repo, args.release_to, args.kind)
    try:
        defaults = repo.defaults()
    except ValueError:  # a repository without defaults.json is still listable
        defaults = {}
    default = set(defaults.values())
    groups = _release_groups(repo.root)
    release = groups is not None and not args.all
    every = repo.list()
    listed = [m for m in every if not release or m.ref in (groups or {})]
    if release:  # release.json's order: group by group
        order = {ref: i for i, ref in enumerate(groups or {})}
        listed.sort(key=lambda m: order[m.ref])
    refs = {m.ref for m in listed}
    results = Results.read(None if args.validation else (args.results or CHECKOUT_RESULTS))

    rows = []
    for m in listed:
        if args.kind and m.kind != args.kind:
            continue
        read_by: str | None = None
        served: Served | None = None
        if m.kind == "codec":
            pair = m.paired_classifier
            read_by = pair if pair in refs else defaults.get("classifier")
            served = results.codec(m, read_by) if read_by else None
        else:
            served = results.classifier(m.ref)
        rows.append(_row(m, default, (groups or {}).get(m.ref), read_by, served))

    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    lines = _header(repo.root, len(rows), len(every), groups, release, results, args.validation)
    if not release:
        lines.append("")
        lines += (
            _validation_table(rows) if args.validation else _served_table(rows, groups is not None)
        )
    else:
        for why in dict.fromkeys(r["release_group"] for r in rows):
            part = [r for r in rows if r["release_group"] == why]
            lines += ["", f"### {why}", ""]
            lines += _validation_table(part) if args.validation else _served_table(part, False)
    print("\n".join(lines))
    return 0
