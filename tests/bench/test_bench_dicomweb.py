"""The DICOMweb benchmark's own parts (wrk output, Lua script) and the frame fast paths it
measures. No timing is asserted here: figures go to bench/RESULTS.md."""

from __future__ import annotations

import pytest

from bench.dicomweb_bench import parse_wrk, wrk_script
from hub.dicomweb import wado

WRK_OUTPUT = """\
Running 8s test @ http://127.0.0.1:18480
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms    3.10ms  48.33ms   93.10%
    Req/Sec     2.97k   612.20     4.20k    70.00%
  Latency Distribution
     50%  720.00us
     75%    1.10ms
     90%    2.53ms
     99%   16.41ms
  47767 requests in 8.10s, 612.12MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   5917.92
Transfer/sec:     75.57MB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result["per_s"] == 5917.92
    assert result["requests"] == 47767
    assert result["p50_ms"] == 0.72
    assert result["p90_ms"] == 2.53
    assert result["p99_ms"] == 16.41
    assert result["non_2xx"] == 3
    assert "raw" not in result


def test_parse_wrk_keeps_output_it_cannot_read() -> None:
    result = parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")
    assert result["per_s"] is None
    assert "Connection refused" in result["raw"]


def test_wrk_script_asks_random_frames_with_token() -> None:
    script = wrk_script("/dicomweb/studies/1/series/2/instances/3/frames/", 18526, token="tsr_x")
    assert "local count = 18526" in script
    assert 'wrk.headers["Authorization"] = "Bearer tsr_x"' in script
    assert "transfer-syntax=*" in script
    assert "math.random(1, count)" in script
    assert "Authorization" not in wrk_script("/", 5)


def test_frame_boundary_is_shared_unless_a_payload_holds_it() -> None:
    plain = [b"\xff\xd8 tile \xff\xd9"]
    assert wado._frame_boundary(plain) == wado.FRAME_BOUNDARY
    holding = [b"\xff\xd8" + wado.FRAME_BOUNDARY.encode() + b"\xff\xd9"]
    fresh = wado._frame_boundary(holding)
    assert fresh != wado.FRAME_BOUNDARY
    assert fresh.encode() not in holding[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7", [7]), ("1", [1]), ("10", [10]), ("3,1,2", [3, 1, 2]), ("١", [1])],
)
def test_frame_list_fast_path_keeps_meaning(text: str, expected: list[int]) -> None:
    assert wado.parse_frame_list(text, 10) == expected


@pytest.mark.parametrize(
    ("text", "error"), [("0", LookupError), ("11", LookupError), ("3,1,3", ValueError)]
)
def test_frame_list_out_of_range(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        wado.parse_frame_list(text, 10)


def test_frame_negotiation_is_cached_per_accept_value() -> None:
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    jpeg = "1.2.840.10008.1.2.4.50"
    first = wado._negotiate_frames(accept, jpeg, False)
    assert wado._negotiate_frames(accept, jpeg, False) is first
    assert first.transfer_syntax == jpeg and first.multipart and not first.decode
