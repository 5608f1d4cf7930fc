"""``--clients native``: reading wrk's and h2load's reports, and checking them against the
server's own counts; then both tools against a real server (skipped where they are not
installed)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from benchmarks import native_load, served_throughput
from proto.fercomp.v1 import fercomp_pb2

# Printed by wrk 4.1 (`--latency`, a Lua script) and h2load 1.52 against `fercomp serve`.
WRK_REPORT = """\
Running 8s test @ http://127.0.0.1:40071
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.53ms    9.88ms 173.02ms   97.84%
    Req/Sec   389.61     38.02   450.00     77.50%
  Latency Distribution
     50%   19.91ms
     75%   20.96ms
     90%   22.64ms
     99%  173.00ms
  3104 requests in 8.00s, 1.27MB read
Requests/sec:    387.81
Transfer/sec:    162.47KB
"""
WRK_FAILURES = """\
  Latency Distribution
     50%  850.00us
     75%    1.02ms
     90%    1.20ms
     99%    1.50s
  120 requests in 1.00m, 50.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
"""
H2LOAD_REPORT = """\
finished in 8.00s, 496.00 req/s, 129.92KB/s
requests: 3968 total, 3976 started, 3968 done, 3968 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 3968 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.39MB (1461576) total, 16.07KB (16455) headers (space savings 96.28%), 986.43KB
                     min         max         mean         sd        +/- sd
time for request:    15.04ms     64.61ms     23.41ms      6.12ms    59.16%
time for connect:       63us        63us        63us         0us   100.00%
"""


def test_wrk_report_gives_requests_time_percentiles_and_failures() -> None:
    got = native_load.parse_wrk(WRK_REPORT)
    assert got == {"requests": 3104, "seconds": 8.0, "p50_ms": 19.91, "p99_ms": 173.0,
                   "max_ms": 173.02, "failed": 0, "why": ""}  # fmt: skip
    bad = native_load.parse_wrk(WRK_FAILURES)
    assert bad["seconds"] == 60.0 and bad["p50_ms"] == pytest.approx(0.85)
    assert bad["p99_ms"] == 1500.0 and bad["failed"] == 2 + 1 + 4
    assert bad["why"] == "4 non-2xx, 2 read, 1 timeout"


def test_h2load_report_gives_succeeded_requests_and_failures() -> None:
    got = native_load.parse_h2load(H2LOAD_REPORT)
    assert got == {"requests": 3968, "seconds": 8.0, "mean_ms": 23.41, "max_ms": 64.61,
                   "failed": 0}  # fmt: skip
    worse = H2LOAD_REPORT.replace("3968 succeeded, 0 failed, 0 errored, 0 timeout",
                                  "3960 succeeded, 5 failed, 2 errored, 1 timeout")  # fmt: skip
    assert native_load.parse_h2load(worse)["failed"] == 8


@pytest.mark.parametrize("parse", [native_load.parse_wrk, native_load.parse_h2load])
def test_a_report_without_its_summary_is_an_error(parse: object) -> None:
    with pytest.raises(RuntimeError, match="printed no"):
        parse("unable to connect to 127.0.0.1:1 Connection refused")  # type: ignore[operator]


def test_the_grpc_frame_is_one_length_prefixed_request() -> None:
    frame = native_load.grpc_frame(b"\x01face")
    assert frame[0] == 0 and struct.unpack(">I", frame[1:5])[0] == len(frame) - 5
    assert fercomp_pb2.ClassifyRequest.FromString(frame[5:]).bitstream == b"\x01face"
    assert native_load.median_face([b"aaa", b"a", b"aa"]) == b"aa"


def test_the_wrk_script_loads_every_face_in_turn(tmp_path: Path) -> None:
    script = native_load.WRK_SCRIPT % {"count": 3, "dir": tmp_path}
    assert "for i = 1, 3 do" in script and f'"{tmp_path}/" .. i .. ".bin"' in script
    assert "n = n % #bodies + 1" in script


class _Counts:
    """The server's status -> count, moved on by the 'run'."""

    def __init__(self, after: dict[str, float]) -> None:
        self.now: dict[str, float] = {"ok": 10.0, "malformed": 1.0}
        self.after = after

    def run(self, result: dict[str, object]) -> dict[str, object]:
        self.now = self.after
        return result


def test_checked_returns_the_figures_when_the_server_agrees() -> None:
    counts = _Counts({"ok": 112.0, "malformed": 1.0})  # 2 more than the tool: still in flight
    result = {"requests": 100, "seconds": 4.0, "p50_ms": 9.0, "p99_ms": 20.0, "max_ms": 31.0,
              "failed": 0}  # fmt: skip
    got = native_load.checked(lambda: counts.run(result), lambda: counts.now, "wrk")
    assert got == {"faces": 100, "seconds": 4.0, "faces_per_s": 25.0, "p50_ms": 9.0,
                   "p99_ms": 20.0, "max_ms": 31.0}  # fmt: skip


@pytest.mark.parametrize(
    ("after", "failed"),
    [
        ({"ok": 110.0, "malformed": 1.0}, 1),  # the tool saw a failure
        ({"ok": 109.0, "malformed": 1.0}, 0),  # fewer ok than the tool finished
        ({"ok": 110.0, "malformed": 2.0}, 0),  # the server counted an error
        ({"ok": 110.0, "malformed": 1.0, "internal": 1.0}, 0),  # a status new in this run
    ],
)
def test_checked_fails_a_run_the_server_does_not_account_for(
    after: dict[str, float], failed: int
) -> None:
    counts = _Counts(after)
    result = {"requests": 100, "seconds": 4.0, "mean_ms": 9.0, "failed": failed}
    with pytest.raises(RuntimeError, match="h2load: 100 requests done"):
        native_load.checked(lambda: counts.run(result), lambda: counts.now, "h2load")


def test_missing_tools_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_load.shutil, "which", lambda tool: None)
    assert native_load.missing_tools() == (
        "--clients native needs wrk, h2load: apt-get install wrk nghttp2-client"
    )
    monkeypatch.setattr(native_load.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    assert native_load.missing_tools() is None


@pytest.mark.skipif(
    native_load.missing_tools() is not None, reason=str(native_load.missing_tools())
)
def test_served_throughput_with_native_clients(model_repo: Path, tmp_path: Path) -> None:
    """h2load (unary and stream) and wrk against a real server: each row's requests were all
    answered ok (the benchmark checks the server's counts, and fails otherwise)."""
    for key in [k for k in os.environ if k.startswith("FERCOMP_")]:
        os.environ.pop(key)
    out = tmp_path / "served.json"
    argv = ["--models", str(model_repo), "--faces", "4", "--concurrency", "2",
            "--max-batch-size", "2", "--threads", "1", "--clients", "native",
            "--native-seconds", "1", "--json", str(out)]  # fmt: skip
    assert served_throughput.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["clients"] == "native" and doc["native_seconds"] == 1.0
    rows = {r["path"]: r for r in doc["rows"]}
    unary, rest, stream = rows["gRPC unary x2"], rows["REST x2"], rows["gRPC stream x1"]
    # h2load's stream calls carry all 4 faces each, at least two of them after the warm-up one.
    assert stream["faces"] >= 8 and stream["faces"] % 4 == 0 and stream["p50_ms"] is None
    assert unary["faces"] > 0 and unary["p50_ms"] is None and unary["mean_ms"] > 0
    assert rest["faces"] > 0 and 0 < rest["p50_ms"] <= rest["p99_ms"]
    assert 0.5 < unary["seconds"] < 5 and 0.5 < rest["seconds"] < 5


def _h2load_calls(done: int, ms: float, failed: int = 0) -> str:
    return (
        f"finished in {ms:.2f}ms, 1.00 req/s, 1.00KB/s\n"
        f"requests: {done + failed} total, {done + failed} started, {done + failed} done, "
        f"{done} succeeded, {failed} failed, 0 errored, 0 timeout\n"
    )


def test_the_stream_load_sizes_its_calls_from_an_untimed_first_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One warm-up call of every face, then as many calls as fill ``seconds`` (at least two),
    all in one body of length-prefixed requests; faces, not calls, are counted."""
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], timeout: float) -> str:
        seen.append(cmd)
        body = Path(cmd[cmd.index("-d") + 1]).read_bytes()
        assert body == b"".join(native_load.grpc_frame(p) for p in (b"a", b"bb", b"ccc"))
        n = int(next(a for a in cmd if a.startswith("-n"))[2:])
        return _h2load_calls(n, 250.0 * n)

    monkeypatch.setattr(native_load, "_run", fake_run)
    got = native_load.stream_h2load(4321, [b"a", b"bb", b"ccc"], seconds=2.0)
    assert [c[c.index("-m1") + 1] for c in seen] == ["-n1", "-n8"]
    assert seen[0][-1].endswith("/ClassifyStream") and "te: trailers" in seen[0]
    assert got["requests"] == 8 * 3 and got["seconds"] == 2.0 and got["failed"] == 0
    assert got["mean_ms"] is None and got["max_ms"] is None
    monkeypatch.setattr(native_load, "_run", lambda cmd, timeout: _h2load_calls(0, 5.0, 1))
    failed = native_load.stream_h2load(4321, [b"a"], seconds=2.0)
    assert failed["requests"] == 0 and failed["failed"] == 1


@pytest.mark.skipif(
    native_load.missing_tools() is not None, reason=str(native_load.missing_tools())
)
def test_transport_floor_measures_four_servers(model_repo: Path, tmp_path: Path) -> None:
    """Bare grpcio, grpcio with a batch worker, the real server with its model's predict
    replaced, and the real server: every row answered calls (h2load's count, and for the
    real server its own counts too, or the benchmark fails)."""
    from benchmarks import transport_floor

    for key in [k for k in os.environ if k.startswith("FERCOMP_")]:
        os.environ.pop(key)
    out = tmp_path / "floor.json"
    argv = ["--models", str(model_repo), "--faces", "4", "--concurrency", "2",
            "--seconds", "0.5", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert transport_floor.main(argv) == 0
    doc = json.loads(out.read_text())
    rows = {r["server"]: r for r in doc["rows"]}
    assert list(rows) == ["grpcio, empty handler", "grpcio + batch worker",
                          "fercomp, instant model", "fercomp, model"]  # fmt: skip
    for r in rows.values():
        assert r["calls_per_s"] > 0 and r["cpu_ms"] > 0 and r["cores"] > 0
        assert r["turnaround_ms"] == pytest.approx(2 / r["calls_per_s"] * 1e3)
    assert doc["concurrency"] == 2
