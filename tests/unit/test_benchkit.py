"""benchmarks/benchkit.py: the percentiles the benchmarks report and the scratch-folder run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import load_benchmark


def test_percentiles_take_the_sample_at_the_rank_and_scale_it() -> None:
    kit = load_benchmark("benchkit")
    samples = [float(n) for n in range(100, 0, -1)]  # 100 .. 1, unsorted
    assert kit.percentiles(samples) == {"p50": 51.0, "p90": 91.0, "p99": 100.0, "max": 100.0}
    assert kit.percentiles([0.002, 0.001], (50,), scale=1000) == {"p50": 2.0, "max": 2.0}
    assert kit.percentiles([], (50, 90)) == {"p50": None, "p90": None, "max": None}


def test_a_run_in_scratch_leaves_no_folder_and_prints_its_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = load_benchmark("benchkit")
    seen: list[Path] = []

    def run(work: Path) -> dict[str, Any]:
        seen.append(work)
        (work / "data").write_text("x")
        return {"figure": 1}

    assert kit.run_in_scratch("t-", tmp_path, run, print, as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == {"figure": 1}
    assert seen[0].parent == tmp_path and not seen[0].exists()

    def broken(work: Path) -> dict[str, Any]:
        seen.append(work)
        raise RuntimeError("crashed")

    with pytest.raises(RuntimeError):
        kit.run_in_scratch("t-", tmp_path, broken, print, as_json=False)
    assert not seen[1].exists()
