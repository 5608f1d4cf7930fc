"""Smoke tests: each benchmark script runs end to end on tiny models and writes its JSON.

Nothing here looks at timings (they depend on the machine and its load); only that every row
is there, with the keys the README documents and positive byte counts.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks import edge_encode, served_cpu, served_store, served_throughput, store_commit
from tests.conftest import copy_with_release, joint_release_repo, random_faces_npz


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Server settings read FERCOMP_* variables, and ``--threads`` sets torch's process-wide
    thread count: neither may leak between these tests and the rest of the suite."""
    for key in list(os.environ):
        if key.startswith("FERCOMP_"):
            monkeypatch.delenv(key)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_edge_encode_writes_every_row(model_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "edge.json"
    argv = ["--models", str(model_repo), "--codec", "tiny-codec/1",
            "--codec", str(model_repo / "tiny-codec" / "2"),
            "--faces", "4", "--batch", "2", "--repeat", "1", "--threads", "1",
            "--json", str(out)]  # fmt: skip
    assert edge_encode.main(argv) == 0

    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "edge_encode" and doc["faces"] == 4
    learned = {(r["codec"], r["step"], r["batch"]) for r in doc["rows"] if "tiny" in r["codec"]}
    assert learned == {
        (f"{ref} ({layout})", step, batch)
        for ref in ("tiny-codec/1", "tiny-codec/2")
        for layout in ("torch, v2", "torch, v1 2 strings")
        for step in ("encode", "decode")
        for batch in (1, 2)
    }
    size = {r["codec"]: r["bytes_per_face"] for r in doc["rows"]}
    assert size["tiny-codec/1 (torch, v2)"] < size["tiny-codec/1 (torch, v1 2 strings)"]
    pillow = {(r["codec"], r["step"]) for r in doc["rows"] if "tiny" not in r["codec"]}
    assert {("JPEG q30", "encode"), ("JPEG q30", "decode")} <= pillow
    for row in doc["rows"]:
        assert row["bytes_per_face"] > 0
        assert row["samples"] > 0 and row["p50_ms"] >= 0 and row["p90_ms"] >= row["p50_ms"]


def test_edge_encode_puts_the_edge_beside_torch(model_repo: Path, tmp_path: Path) -> None:
    from core.edge_export import check_faces, export_edge

    repo = tmp_path / "models"
    shutil.copytree(model_repo, repo)
    export_edge(repo / "tiny-codec" / "1", *check_faces(None, 4))
    out = tmp_path / "edge.json"
    argv = ["--models", str(repo), "--codec", "tiny-codec/1", "--faces", "4", "--batch", "2",
            "--repeat", "1", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert edge_encode.main(argv) == 0

    doc = json.loads(out.read_text())
    edge = {(r["step"], r["batch"]) for r in doc["rows"] if r["codec"].endswith("(edge, v2)")}
    assert edge == {("encode", 1), ("encode", 2), ("encode: analysis", 1), ("encode: entropy", 1)}
    size = {r["codec"]: r["bytes_per_face"] for r in doc["rows"]}
    assert size["tiny-codec/1 (edge, v2)"] == pytest.approx(size["tiny-codec/1 (torch, v2)"], 0.01)
    assert len(doc["comparison"]) == 2 and doc["edge_threads"] == 1


@pytest.mark.parametrize("clients", ["thread", "process"])
def test_served_throughput_writes_every_row(model_repo: Path, tmp_path: Path, clients: str) -> None:
    out = tmp_path / "served.json"
    # With 2 callers and batches of up to 4 (process), the engine's own row at 2 comes too.
    max_batch = {"thread": 2, "process": 4}[clients]
    argv = ["--models", str(model_repo), "--faces", "4", "--concurrency", "2",
            "--max-batch-size", str(max_batch), "--threads", "1", "--clients", clients,
            "--json", str(out)]  # fmt: skip
    assert served_throughput.main(argv) == 0

    doc = json.loads(out.read_text())
    assert doc["clients"] == clients
    assert doc["benchmark"] == "served_throughput" and doc["codec"] == "tiny-codec/1"
    at_2 = [] if max_batch == 2 else ["in-process, batches of 2"]
    paths = [r["path"] for r in doc["rows"]]
    assert paths == ["in-process", *at_2, "gRPC unary x2", "gRPC stream x1", "REST x2",
                     "JPEG q30 in-process"]  # fmt: skip
    for row in doc["rows"]:
        assert row["faces"] == 4 and row["faces_per_s"] > 0 and row["bytes_per_face"] > 0
        assert {"p50_ms", "p99_ms", "latency_of", "seconds"} <= row.keys()
    latency_of = {r["path"]: r["latency_of"] for r in doc["rows"]}
    assert latency_of["in-process"] == f"batch of {max_batch}"
    assert all(latency_of[p] == "batch of 2" for p in at_2)
    served = [r for r in doc["rows"] if "in-process" not in r["path"]]
    assert all(1 <= r["mean_batch"] <= 2 for r in served), served  # never more than 2 callers
    assert all("mean_batch" not in r for r in doc["rows"] if "in-process" in r["path"])
    learned, jpeg = doc["rows"][0]["bytes_per_face"], doc["rows"][-1]["bytes_per_face"]
    assert all(r["bytes_per_face"] == learned for r in doc["rows"][:-1]) and jpeg != learned


def test_served_store_measures_both_backends_through_real_servers(
    model_repo: Path, tmp_path: Path, pg_url: str
) -> None:
    """Each backend's server really answers every face (a failed call raises), and every
    answer was committed to that backend's store before it came back."""
    out = tmp_path / "store.json"
    argv = ["--models", str(model_repo), "--faces", "4", "--concurrency", "2", "--repeat", "1",
            "--db-url", pg_url, "--json", str(out)]  # fmt: skip
    assert served_store.main(argv) == 0
    doc = json.loads(out.read_text())
    got = {(r["backend"], r["path"]) for r in doc["rows"]}
    assert got == {(b, p) for b in ("sqlite", "postgresql")
                   for p in ("gRPC unary x2", "gRPC stream x1")}  # fmt: skip
    for row in doc["rows"]:
        assert row["faces_per_s"] > 0
        assert row["backend"] != "sqlite" or row["ratio"] == 1.0
    import psycopg

    with psycopg.connect(pg_url) as conn:
        (n,) = conn.execute("SELECT count(*) FROM predictions").fetchone()  # type: ignore[misc]
    assert n == 2 * (4 + served_throughput.WARMUP)  # unary and stream, warm-up calls included


@pytest.mark.parametrize("transport", ["grpc", "rest", "stream"])
def test_served_cpu_accounts_for_the_process(
    model_repo: Path, tmp_path: Path, transport: str
) -> None:
    out = tmp_path / "cpu.json"
    argv = ["--models", str(model_repo), "--faces", "8", "--concurrency", "2",
            "--transport", transport, "--json", str(out)]  # fmt: skip
    assert served_cpu.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["transport"] == transport and 1 <= doc["faces_per_batch"] <= 8
    rows = {r["thread"]: r["cpu_s"] for r in doc["rows"]}
    total = rows.pop("process total")
    assert total > 0 and doc["faces_per_s"] > 0
    # the parts add up to the whole, up to /proc's 10 ms ticks per thread
    assert total - 0.02 <= sum(rows.values()) <= total + 0.01 * len(rows)
    assert "fercomp-engine" in rows  # the batch worker did the decoding and classifying


def test_train_step_prints_every_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import train_step

    out = tmp_path / "steps.json"
    argv = ["--widths", "8", "--codec", "8x8", "--threads", "1", "--batch", "4"]
    argv += ["--codec-batch", "2", "--steps", "1", "--warmup", "0", "--json", str(out)]
    assert train_step.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"].split()[0] for r in rows] == ["classifier", "codec"]
    assert all(set(r["step_s"]) == set(train_step.MODES) for r in rows)
    assert "bf16+channels_last" in capsys.readouterr().out


def test_classifier_widths_rows(tmp_path: Path) -> None:
    from benchmarks import classifier_widths

    out = tmp_path / "widths.json"
    argv = ["--widths", "8,16", "--threads", "1", "--batch", "2", "--repeat", "1"]
    assert classifier_widths.main([*argv, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["width"] for r in rows] == [8, 16]
    assert rows[0]["params_m"] < rows[1]["params_m"]
    assert all(r["faces_per_s"] > 0 and r["faces_per_s_tta"] > 0 for r in rows)


def test_store_commit_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "store.json"
    argv = ["--writers", "2", "--seconds", "0.2", "--dir", str(tmp_path), "--json", str(out)]
    assert store_commit.main(argv) == 0

    doc = json.loads(out.read_text())
    modes = [(r["mode"], r["synchronous"]) for r in doc["rows"]]
    assert modes == [("group commit", "full"), ("commit per write", "full"),
                     ("group commit", "normal"), ("commit per write", "normal")]  # fmt: skip
    assert all(r["writes_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in doc["rows"])


def test_payload_budget_accounts_for_every_byte(model_repo: Path, tmp_path: Path) -> None:
    from benchmarks import payload_budget
    from core.bitstream import FIXED_HEADER_LEN
    from core.stream_framing import STREAM_HEADER_LEN

    out = tmp_path / "budget.json"
    argv = ["--models", str(model_repo), "--codec", "tiny-codec/1", "--codec", "tiny-codec/2",
            "--faces", "4", "--json", str(out)]  # fmt: skip
    assert payload_budget.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["codec"] for r in rows] == ["tiny-codec/1", "tiny-codec/2"]
    for r in rows:
        parts = r["framing"] + r["coder"] + r["y_info"] + r["z_info"]
        assert abs(parts - r["container"]) < 1e-6
        assert r["stream"] == r["container"] - STREAM_HEADER_LEN
        assert FIXED_HEADER_LEN < r["framing"] < r["container"]
        used, total = map(int, r["z_channels"].split("/"))
        assert 0 <= used <= total


def test_payload_budget_information_is_what_the_coder_spends(tmp_path: Path) -> None:
    """On a trained codec (bundled, latent alignment 4) the entropy models' information is
    within a rANS flush of the coded string: the likelihoods are those of the coded latents
    (padding the face to the wrong grid would put y's information ~50 % above the string)."""
    from benchmarks import payload_budget

    out = tmp_path / "budget.json"
    argv = ["--codec", "face-hyperprior-joint-l0.003/3", "--faces", "16", "--json", str(out)]
    assert payload_budget.main(argv) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["align"] == 4
    assert 0 <= row["coder"] <= 10, row
    assert row["y_info"] > 5 * row["z_info"] > 0


def test_demo_predictions_labels_every_photo_in_every_setting(
    model_repo: Path, tmp_path: Path
) -> None:
    from benchmarks import demo_predictions

    out = tmp_path / "demo.json"
    argv = ["--models", str(model_repo), "--baseline", "tiny-classifier/1",
            "--webp", "10=tiny-classifier/2", "--pair", "tiny-codec/1=tiny-classifier/1",
            "--json", str(out)]  # fmt: skip
    assert demo_predictions.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["faces"][0] == "hopper" and len(doc["faces"]) == 5
    names = [s["setting"] for s in doc["settings"]]
    assert names == [
        "uncompressed + tiny-classifier/1",
        "WebP q10 + tiny-classifier/2",
        "tiny-codec/1 + tiny-classifier/1",
    ]
    for s in doc["settings"]:
        assert len(s["labels"]) == 5 and all(0 < p <= 1 for p in s["p"])
    assert doc["settings"][0]["bytes_per_face"] is None
    assert all(s["bytes_per_face"] > 0 for s in doc["settings"][1:])


def test_demo_predictions_defaults_are_release_artifacts() -> None:
    """The table without flags shows what a deployment serves, so every default must ship;
    its learned pairs are the release set's own (``release_pairs``), checked in tests/core."""
    from benchmarks import demo_predictions
    from core.artifacts import ModelRepository, bundled_models_dir
    from core.release import release_refs

    shipped = set(release_refs(ModelRepository(bundled_models_dir())))
    refs = {demo_predictions.DEFAULT_BASELINE}
    refs |= {demo_predictions._split(s)[1] for s in demo_predictions.DEFAULT_WEBP}
    assert refs <= shipped, sorted(refs - shipped)


@pytest.mark.parametrize(
    ("argv", "match"),
    [(["--pair", "tiny-codec/1"], "LEFT=CLASSIFIER"), (["--webp", "high=x/1"], "1..100")],
)
def test_demo_predictions_refuses_bad_settings(argv: list[str], match: str) -> None:
    from benchmarks import demo_predictions

    with pytest.raises(ValueError, match=match):
        demo_predictions.main(argv)


def test_model_load_measures_repository_and_release_set(model_repo: Path, tmp_path: Path) -> None:
    from benchmarks import model_load

    root = copy_with_release(
        model_repo, tmp_path / "repo", {"defaults": ["tiny-codec/1", "tiny-classifier/1"]}
    )
    out = tmp_path / "load.json"
    assert model_load.main(["--models", str(root), "--threads", "1", "--json", str(out)]) == 0
    rows = {r["repository"]: r for r in json.loads(out.read_text())["rows"]}
    assert (rows["repository"]["artifacts"], rows["repository"]["codecs_loaded"]) == (4, 2)
    assert (rows["release set"]["artifacts"], rows["release set"]["codecs_loaded"]) == (2, 1)
    assert rows["repository"]["classifiers_loaded"] == 1  # no tiny codec has a pair
    assert all(r["load_s"] > 0 and r["peak_rss_mb"] > 0 and r["disk_mb"] > 0 for r in rows.values())


def test_served_accuracy_reads_each_release_pair_through_the_server(
    model_repo: Path, tmp_path: Path
) -> None:
    """The server answers a joint codec's faces with its paired classifier, and the accuracy
    is scored against the labels and set beside the eval JSON's figure."""
    from benchmarks import served_accuracy

    root = joint_release_repo(model_repo, tmp_path / "repo")
    data = random_faces_npz(tmp_path / "faces.npz", 20)
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"records": [
        {"artifact": "tiny-codec/2", "accuracy_tta": {"tiny-classifier/2": 0.25}}]}))  # fmt: skip
    out = tmp_path / "served.json"
    argv = ["--models", str(root), "--data", str(data), "--eval", str(ev), "--json", str(out)]
    assert served_accuracy.main(argv) == 0
    rows = {r["codec"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["tiny-codec/1", "tiny-codec/2"]  # release_pairs: defaults first
    assert rows["tiny-codec/1"]["classifier"] == "tiny-classifier/1"
    assert rows["tiny-codec/2"]["classifier"] == "tiny-classifier/2"
    assert all(r["faces"] == 20 and 0 <= r["served"] <= 1 for r in rows.values())
    assert rows["tiny-codec/1"]["offline"] is None
    two = rows["tiny-codec/2"]
    assert two["offline"] == 0.25 and two["diff_pt"] == pytest.approx(100 * (two["served"] - 0.25))


@pytest.mark.parametrize(
    "knob",
    ["blas", "torch-threads", "batching", "openmp", "queue-delay", "max-batch", "gc-freeze"],
)
def test_served_ab_measures_both_settings(
    model_repo: Path, knob: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import native_load, served_ab

    # One round where each costs seconds: a child process per setting, or h2load and wrk
    # (queue-delay, where they are installed; wrk runs whole seconds).
    native = knob == "queue-delay" and native_load.missing_tools() is None
    rounds = "1" if knob in served_ab.PROCESS_KNOBS or native else "2"
    clients = ["--clients", "native", "--seconds", "1"] if native else ["--seconds", "0.2"]
    argv = ["--models", str(model_repo), "--faces", "8", "--knob", knob, "--rounds", rounds,
            "--concurrency", "2", *clients]  # fmt: skip
    assert served_ab.main(argv) == 0
    out = capsys.readouterr().out
    a, b = served_ab.KNOBS[knob]
    for path in ("in-process", "gRPC stream x1", "gRPC unary x2", "REST x2"):
        assert sum(line.startswith(f"| {path}") for line in out.splitlines()) == 2, out
    assert f"| {a} |" in out and f"| {b} |" in out
    import service.engine as engine_module
    from service.batching import collect_batch

    assert engine_module.collect_batch is collect_batch  # left as the server runs it


def test_served_timeline_splits_each_call_into_its_phases(
    model_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import service.grpc_server as grpc_server
    from benchmarks import served_timeline

    classify = grpc_server.FerServicer.Classify
    out = tmp_path / "timeline.json"
    argv = ["--models", str(model_repo), "--faces", "8", "--concurrency", "2",
            "--seconds", "0.5", "--json", str(out)]  # fmt: skip
    assert served_timeline.main(argv) == 0
    doc = json.loads(out.read_text())
    rows = {r["phase"]: r for r in doc["rows"]}
    assert list(rows) == [name for _, _, name in served_timeline.PHASES]
    assert all(r["p50"] >= 0 for r in rows.values())
    parts = sum(r["mean"] for name, r in rows.items() if name != "total")
    assert parts == pytest.approx(rows["total"]["mean"], rel=1e-6)  # the phases tile the call
    assert doc["faces_per_s"] > 0 and 1 <= doc["faces_per_batch"] <= 2
    assert "rows per commit" in capsys.readouterr().out
    assert grpc_server.FerServicer.Classify is classify  # restored


def test_openmp_threads_times_a_mode_in_both_settings(model_repo: Path, tmp_path: Path) -> None:
    """One mode (a child process per setting: ~4 s each); the others differ by a branch."""
    from benchmarks import openmp_threads
    from benchmarks.common import OPENMP_WAITS

    out = tmp_path / "omp.json"
    mode = "worker, after the main thread"
    argv = ["--models", str(model_repo), "--faces", "2", "--repeat", "1", "--mode", mode,
            "--json", str(out)]  # fmt: skip
    assert openmp_threads.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == [mode]
    for r in rows:
        assert all(r[w] > 0 for w in OPENMP_WAITS)
        assert r["ratio"] == pytest.approx(r["libgomp default"] / r["active, 300000"])


def test_load_client_payload_file_round_trips(tmp_path: Path) -> None:
    from benchmarks import load_client

    payloads = [b"", b"\x00" * 3, bytes(range(256)) * 5]
    load_client.write_payloads(tmp_path / "p.bin", payloads)
    assert load_client.read_payloads(tmp_path / "p.bin") == payloads


def test_served_gc_times_the_collections_in_both_settings(model_repo: Path, tmp_path: Path) -> None:
    import gc

    from benchmarks import served_gc

    out = tmp_path / "gc.json"
    argv = ["--models", str(model_repo), "--faces", "8", "--rounds", "1", "--concurrency", "2",
            "--json", str(out)]  # fmt: skip
    assert served_gc.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["path"], r["setting"]) for r in rows} == {
        (path, setting) for path in ("gRPC unary x2", "REST x2") for setting in served_gc.SETTINGS
    }
    for row in rows:
        assert row["faces_per_s"] > 0 and row["max_ms"] >= row["p99_ms"] >= row["p50_ms"] > 0
        assert row["gen2"] >= 0 and 0 <= row["gc_share"] < 1
    assert gc.get_freeze_count() == 0  # the server stopped: thawed


def test_collections_are_timed_while_inside() -> None:
    import gc

    from benchmarks.served_gc import collections

    with collections() as seen:
        gc.collect()
    gc.collect()
    assert [g for g, _ in seen] == [2] and seen[0][1] > 0


def test_served_cycles_records_every_batch_per_delay(model_repo: Path, tmp_path: Path) -> None:
    from benchmarks import served_cycles

    out = tmp_path / "cycles.json"
    argv = ["--models", str(model_repo), "--faces", "8", "--concurrency", "2", "--seconds",
            "0.5", "--max-queue-delay-ms", "1", "3", "--json", str(out)]  # fmt: skip
    assert served_cycles.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["delay_ms"] for r in rows] == [1.0, 3.0]
    for row in rows:
        assert row["faces_per_s"] > 0 and 1 <= row["mean_batch"] <= 2
        assert row["compute_ms"] > 0 and 0 <= row["idle"] < 1 and row["sizes"]


def test_cycle_figures_come_from_consecutive_batches() -> None:
    from benchmarks.served_cycles import Batch, summarize

    # Each batch ends 10 s after it starts; its callers were back 1 and 2 s after the last end.
    batches = [Batch(15.0 * i - 4, 15.0 * i - 3, 15.0 * i, 15.0 * i + 10, 4) for i in range(11)]
    got = summarize(batches)
    assert got["first_back_ms"] == 1000.0 and got["last_back_ms"] == 2000.0
    assert got["compute_ms"] == 10000.0 and got["mean_batch"] == 4 and got["sizes"] == "4 (10)"
    assert got["idle"] == pytest.approx(5 * 9 / (15 * 9 + 10))
