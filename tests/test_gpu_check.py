"""Issue 15's GPU check (bench/gpu_check.sh) runs end to end here with --dry-run: on the CPU, at tiny sizes, through
the same code as on a GPU machine, so a mistake in it shows here rather than in a lent machine's 15 minutes."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.gpu_check.engine import overflow_events
from bench.gpu_check.plan import DRY_RUN, FULL
from bench.gpu_check.report import planned_rows
from codeformer_core.network import EncodedFaces, build_network, precision

REPO_ROOT = Path(__file__).resolve().parents[1]
CUDA_ONLY = ("speed options",)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu-check-out")
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    return done, out


@pytest.fixture(scope="module")
def summary(dry_run: tuple[subprocess.CompletedProcess, Path]) -> dict[str, Any]:
    done, out = dry_run
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    return json.loads((out / "gpu_check.json").read_text())


def test_dry_run_writes_the_table_the_numbers_and_its_log_under_out(
    dry_run: tuple[subprocess.CompletedProcess, Path], summary: dict[str, Any]
) -> None:
    _, out = dry_run
    assert sorted(path.name for path in out.iterdir()) == ["gpu_check.json", "gpu_check.log", "results-dry-run.md"]
    assert summary["scale"] == "dry run"
    assert "weights: ok" in (out / "gpu_check.log").read_text()


def test_every_section_runs_or_says_why_not(summary: dict[str, Any]) -> None:
    outcomes = {name: outcome["status"] for name, outcome in summary["outcomes"].items()}
    reference = "ok" if importlib.util.find_spec("spandrel_extra_arches") else "skipped"
    assert outcomes == {"weights": "ok", "golden": "ok", "reference": reference, "latency": "ok",
                        "whole photo": "ok", "speed options": "skipped"}
    assert all(summary["outcomes"][name]["message"].startswith("CUDA only") for name in CUDA_ONLY)
    if reference == "skipped":
        assert "spandrel_extra_arches" in summary["outcomes"]["reference"]["message"]


def test_golden_residency_and_timing_rows_are_filled(summary: dict[str, Any]) -> None:
    results = summary["results"]
    for task in DRY_RUN.fidelities:
        assert results[f"golden/{task}"]["verdict"] == "pass"
        # Fast mode encodes in float32: its codes are exact float32's, whatever the decoder runs at.
        assert results[f"drift/{task}"]["verdict"] == "pass"
        assert "0.0% of code indices changed" in results[f"drift/{task}"]["notes"]
    assert results["golden/restore/channels_last"]["verdict"] == "pass"
    assert results["photo/resident"]["verdict"] == "pass"
    candidate = DRY_RUN.candidate
    requests = 2 * len(DRY_RUN.photo_modes)
    assert f"empty_cache calls during {requests} requests: 0" in results["photo/resident"]["notes"]
    for key in (f"drift/restore/{candidate}", f"latency/{candidate}/b2", f"photo/{candidate}/fidelity"):
        assert (results[key]["verdict"], results[key]["notes"]) == (
            "n/a", f"CUDA only: the {candidate} decoder is a GPU's alternative")
    for key in ("latency/float32/b2", "latency/fast/b2", "photo/fast/first", "photo/fast/fidelity"):
        assert results[key]["ours"].endswith(" ms") and float(results[key]["ours"].split()[0]) > 0
    assert "paste masks" in results["photo/fast/fidelity"]["notes"]  # the new fidelity reused the first run's work
    for key in ("latency/graphs/b2", "latency/triton/b2", "latency/triton-graphs/b2", "photo/graphs/first",
                "photo/graphs/fidelity"):
        assert (results[key]["verdict"], results[key]["notes"]) == ("n/a", "CUDA only")


def test_table_has_a_line_for_every_planned_row(dry_run: tuple[subprocess.CompletedProcess, Path],
                                                summary: dict[str, Any]) -> None:
    _, out = dry_run
    fast = summary["numbers"]["fast_precision"]
    rows = planned_rows(DRY_RUN.fidelities, DRY_RUN.batches, DRY_RUN.photo_modes, fast, DRY_RUN.candidate)
    lines = [line for line in (out / "results-dry-run.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[0][2:] for line in lines] == [row.measurement for row in rows]


def test_committed_cuda_table_has_a_line_for_every_row_of_a_full_run() -> None:
    table = (REPO_ROOT / "bench" / "results-cuda.md").read_text()
    rows = planned_rows(FULL.fidelities, FULL.batches, FULL.photo_modes, "bf16", FULL.candidate)
    assert [row.measurement for row in rows if f"| {row.measurement} |" not in table] == []


def _stand_in_python(folder: Path, then: str = "") -> tuple[Path, dict[str, str]]:
    """An interpreter for gpu_check.sh that logs each call's arguments to the returned file, then runs `then`;
    with the environment that makes the script use it."""
    calls, python = folder / "calls", folder / "python"
    python.write_text(f'#!/usr/bin/env bash\necho "$*" >> "$CALLS"\n{then}')
    python.chmod(0o755)
    return calls, {**os.environ, "PYTHON": str(python), "CALLS": str(calls)}


def test_the_profile_flag_runs_the_profile_after_a_failed_check_and_exits_with_the_check_status(
    tmp_path: Path,
) -> None:
    # gpu_check.sh's own argument handling, with a stand-in interpreter that logs how it is called: --profile is
    # the script's, --dry-run goes to both programs, and the diagnosis still runs when the check fails.
    calls, env = _stand_in_python(tmp_path, 'case "$*" in *bench.gpu_check*) exit 3 ;; esac\n')
    out = tmp_path / "out"
    env["OUT"] = str(out)
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run", "--profile"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    programs = [line for line in calls.read_text().splitlines() if line.startswith("-m bench.")]
    assert programs == ["-m bench.gpu_check --dry-run", "-m bench.gpu_profile --dry-run"]
    assert sorted(path.name for path in out.iterdir()) == ["gpu_check.log", "profile.log"]


def test_without_the_carried_wheels_only_a_dry_run_goes_on(tmp_path: Path) -> None:
    # A copy of the script in a tree without bench/gpu-carry: on a GPU machine that is a call made without carrying
    # it, which must stop at once with the make target to run, before any program spends the device's minutes.
    (tmp_path / "bench").mkdir()
    script = tmp_path / "bench" / "gpu_check.sh"
    script.write_text((REPO_ROOT / "bench" / "gpu_check.sh").read_text())
    calls, env = _stand_in_python(tmp_path)

    full = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert full.returncode == 2
    assert "make gpu-check-prep" in full.stderr and not calls.exists()

    dry = subprocess.run(["bash", str(script), "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert calls.read_text().splitlines() == ["-m bench.gpu_check --dry-run"]


def test_profile_dry_run_times_the_stages_and_every_network_variant(tmp_path: Path) -> None:
    # bench/gpu_profile.py, the diagnosis behind the engine's GPU choices, on the CPU at the dry run's sizes.
    done = subprocess.run([sys.executable, "-m", "bench.gpu_profile", "--dry-run", "--out", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((tmp_path / "gpu_profile.json").read_text())
    assert "whole_photo" not in report and "network_variants" not in report, done.stderr[-4000:]  # no section failed
    assert report["photo/fast"]["first_ms"] > 0 and {"encode", "decode", "parse"} <= set(report["photo/fast"]["stages"])
    parser_rows = {name: numbers for name, numbers in report.items() if name.startswith("parser/")}
    assert parser_rows and all(numbers["per_face_ms"] > 0 for numbers in parser_rows.values())
    encoders = {name: numbers for name, numbers in report.items() if name.startswith("encoder/")}
    assert len(encoders) == 3 and all(numbers["per_face_ms"]["1"] > 0 for numbers in encoders.values())
    assert encoders["encoder/float32 (engine: NCHW, TF32 off)"]["codes"] == 0
    decoders = {name: numbers for name, numbers in report.items() if name.startswith("decoder/")}
    assert len(decoders) == 2 and all(numbers["per_face_ms"]["1"] > 0 for numbers in decoders.values())
    assert decoders["decoder/float32 (exact)"]["drift"] == 0


def test_the_check_counts_overflow_reruns_and_decodes_that_start_at_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    net = build_network("restore").eval()
    half_out_of_range = {torch.float16: math.inf}  # fp16 overflows at every w here
    net.generate = lambda feat, skips, w: torch.full(
        (len(feat), 3, 512, 512), half_out_of_range.get(torch.get_autocast_dtype("cpu"), 0.0)
        if torch.is_autocast_enabled("cpu") else 0.0)
    zeros = torch.zeros(1, 256, 16, 16)
    encoded = EncodedFaces(quant_feat=zeros, skips={}, logits=torch.zeros(1, 256, 1024),
                           idx=torch.zeros(1, 256, dtype=torch.long), lq_feat=zeros)
    with overflow_events() as events:
        for w in (0.8, 0.5, 0.9):
            net.decode(encoded, w, precision="fp16")
    assert len(events.reruns) == 2 and events.fallback_starts == [("fp16", "bf16", 0.9)]
    assert events.describe(passes=3) == (
        "; 2 of 3 network passes out of their precision's range ran again at the engine's fallback"
        "; 1 decodes (w >= 0.9) started in bf16 instead of fp16, after an earlier one overflowed")
