"""`fercomp eval | report`: rate/accuracy evaluation against JPEG/WebP/AVIF, and its report."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "eval",
        help="measure bytes/face, PSNR, MS-SSIM and FER accuracy of codecs on a dataset",
        description="Encode/decode a dataset split with learned codecs and JPEG/WebP/AVIF at "
        "several qualities; record payload size, distortion and classifier accuracy per "
        "operating point as JSON.",
    )
    p.add_argument("--data", type=Path, required=True, help=".npz, fer2013.csv or image folder")
    p.add_argument("--split", default="PublicTest", help="split name (default: PublicTest)")
    p.add_argument(
        "--codec",
        action="append",
        metavar="ART",
        help="codec artifact folder or NAME[/VERSION] in --models (repeatable; default: the "
        "repository's default codec; 'none' for baselines only)",
    )
    p.add_argument(
        "--classifier",
        action="append",
        metavar="ART",
        help="classifier artifact (repeatable; the first is primary; default: repository default)",
    )
    p.add_argument("--baselines", default="jpeg,webp,avif", help="comma list or 'none'")
    p.add_argument("--qualities", default="5,10,20,30,50,75,90", help="baseline qualities")
    p.add_argument("--limit", type=int, help="evaluate a seeded random subset of N faces")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    p.add_argument("--models", type=Path, help="model repository (default: bundled models/)")
    p.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="NAME=REF[,REF...]",
        help="put these codec artifacts on one curve (default: manifest family or name prefix)",
    )
    p.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="CODEC=CLASSIFIER",
        help="classifier trained jointly with a codec (also read from the codec manifest's "
        "training.paired_classifier)",
    )
    p.add_argument(
        "--adapted",
        action="append",
        default=[],
        metavar="BASELINE=CLASSIFIER",
        help='classifier fine-tuned on that baseline\'s decoded faces (input_codec = "webp"): '
        "adds a curve BASELINE+adapted beside BASELINE (read by the primary classifier)",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--perturb",
        choices=("none", "client"),
        default="none",
        help="client: perturb every face once (seeded) with the framing and lighting the edge "
        "client's photos add (training/client_variation.py)",
    )
    p.add_argument("--samples-png", type=Path, help="also write a grid of decoded faces")
    p.add_argument("--json", type=Path, required=True, metavar="OUT.json")
    p.set_defaults(func=_eval)

    p = sub.add_parser("report", help="render eval JSON as RESULTS.md tables, plots and BD-rates")
    p.add_argument("--eval", action="append", type=Path, required=True, metavar="EVAL.json")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("report"),
        help="output folder (default: report; docs/RESULTS.md is hand-written, not a report)",
    )
    p.add_argument("--family", action="append", default=[], metavar="NAME=REF[,REF...]")
    p.add_argument("--classifier", help="classifier ref for the curves (default: eval's primary)")
    p.add_argument(
        "--md",
        default="RESULTS.md",
        metavar="NAME",
        help="the Markdown file in --out whose generated section is written (default: RESULTS.md)",
    )
    p.set_defaults(func=_report)


def parse_families(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, refs = item.partition("=")
        if not sep or not name.strip() or not refs.strip():
            raise ValueError(f"--family expects NAME=REF[,REF...], got {item!r}")
        out.setdefault(name.strip(), []).extend(r.strip() for r in refs.split(",") if r.strip())
    return out


def parse_pairs(items: list[str], flag: str = "--pair", left: str = "CODEC") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        codec, sep, clf = item.partition("=")
        if not sep or not codec.strip() or not clf.strip():
            raise ValueError(f"{flag} expects {left}=CLASSIFIER, got {item!r}")
        out[codec.strip()] = clf.strip()
    return out


def parse_qualities(text: str) -> list[int]:
    try:
        qs = [int(q) for q in text.split(",") if q.strip()]
    except ValueError:
        raise ValueError(f"--qualities expects integers like 5,10,50, got {text!r}") from None
    if not qs or any(not 1 <= q <= 100 for q in qs):
        raise ValueError(f"--qualities must be integers in 1..100, got {text!r}")
    return qs


def _eval(args: argparse.Namespace) -> int:
    from core.artifacts import ModelRepository, bundled_models_dir
    from training.eval import EvalOptions, format_table, run_eval

    models = args.models or bundled_models_dir()
    codecs = args.codec
    if codecs is None:  # the repository's default codec, when there is one
        try:
            codecs = [ModelRepository(models).defaults()["codec"]]
        except (ValueError, KeyError, OSError):
            codecs = []
    codecs = [c for c in codecs if c.lower() != "none"]
    families = {ref: name for name, refs in parse_families(args.family).items() for ref in refs}
    opts = EvalOptions(
        data=args.data,
        split=args.split,
        codecs=codecs,
        classifiers=args.classifier or [],
        baselines=[b for b in args.baselines.split(",") if b.strip()],
        qualities=parse_qualities(args.qualities),
        limit=args.limit,
        device=args.device,
        models_root=models,
        families=families,
        pairs=parse_pairs(args.pair),
        adapted={
            k.lower(): v for k, v in parse_pairs(args.adapted, "--adapted", "BASELINE").items()
        },
        batch_size=args.batch_size,
        perturb=args.perturb,
    )
    result = run_eval(opts, command=shlex.join(["fercomp", *args.argv]))
    result.write_json(args.json)
    print(format_table(result.doc))
    print(
        f"wrote {args.json} ({len(result.doc['records'])} operating points, "
        f"{result.doc['n']} faces, device {result.doc['device']})"
    )
    if args.samples_png:
        from training.report import render_samples, sample_rows

        render_samples(result.originals, sample_rows(result.doc, result.decoded), args.samples_png)
        print(f"wrote {args.samples_png}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from training.report import write_report

    written = write_report(
        args.eval, args.out, parse_families(args.family), args.classifier, md_name=args.md
    )
    for path in written:
        print(f"wrote {path}")
    return 0
