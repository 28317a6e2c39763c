"""The results table: every row the check plans, filled with what its sections measured.

Rows are planned before anything runs, so a section that fails, runs out of time or does not apply still shows
its rows (with the reason), and the committed table of a run that has not happened yet lists them all.
"""

from dataclasses import dataclass

SPEEDUP_TARGET = 5.0
"""Network per face, fast mode, batched, against the reference's float32 one at a time."""
PHOTO_TARGET_MS = 100.0
"""A 4-face photo end to end, faces given, on an H100."""
FIDELITY_TARGET_MS = 50.0
"""A new fidelity value on a processed photo."""
TRITON_MODES = ("triton", "triton-graphs")
"""Latency rows of fast mode with the Triton GroupNorm kernels (candidates/triton_group_norm.py): eager, replayed."""
GOLDEN_BOUNDS = "idx identical; logits, lq_feat <= 1e-4; outputs <= 1e-3 x max\\|ref\\|"


@dataclass(frozen=True)
class Row:
    key: str
    section: str
    measurement: str
    target: str = "(none)"


@dataclass(frozen=True)
class Result:
    baseline: str = ""
    ours: str = ""
    ratio: str = ""
    verdict: str = "info"
    """pass, FAIL or info."""
    notes: str = ""


@dataclass(frozen=True)
class SectionOutcome:
    status: str
    """ok, failed, skipped or out of time."""
    seconds: float = 0.0
    message: str = ""


def planned_rows(fidelities: dict[str, tuple[float, ...]], batches: tuple[int, ...], photo_modes: tuple[str, ...],
                 fast: str, candidate: str) -> list[Row]:
    """Every row of the table, section by section; `fast` names the fast mode's precision, `candidate` the one
    measured beside it."""
    rows = [Row(f"golden/{task}", "golden", f"golden vectors, {task}, float32, w {', '.join(f'{w:g}' for w in ws)}",
                GOLDEN_BOUNDS) for task, ws in fidelities.items()]
    rows += [
        Row("golden/restore/channels_last", "golden",
            "golden vectors, restore, float32, channels_last decoder (the CPU pipeline's layout without NNPACK)",
            GOLDEN_BOUNDS),
        Row("golden/restore/tf32", "golden",
            "golden vectors, restore, float32 as the engine runs it, from torch's default flags (TF32 convolutions on)",
            GOLDEN_BOUNDS),
    ]
    rows += [Row(f"drift/{task}", "golden", f"fast mode (float32 codes, {fast} decoder) against exact, {task}",
                 "codes changed: 0") for task in fidelities]
    rows += [Row(f"drift/{task}/{candidate}", "golden",
                 f"fast mode with an {candidate} decoder (candidate) against exact, {task}", "codes changed: 0")
             for task in fidelities]
    rows.append(Row("latency/reference", "reference",
                    "network per face, reference (published architecture, float32, one face at a time)"))
    triton = f"fast ({fast} decoder) with Triton GroupNorm kernels, channels_last decoder"
    modes = (("float32", "float32"), ("fast", f"fast ({fast} decoder, float32 codes)"),
             (candidate, f"fast with an {candidate} decoder (candidate)"),
             ("graphs", f"fast ({fast} decoder) replaying CUDA graphs (candidate)"),
             *zip(TRITON_MODES, (f"{triton} (candidate)", f"{triton}, replaying CUDA graphs (candidate)"), strict=True))
    for mode, label in modes:
        for batch in batches:
            target = f">= {SPEEDUP_TARGET:g}x" if mode != "float32" and batch > 1 else "(none)"
            rows.append(Row(f"latency/{mode}/b{batch}", "latency",
                            f"network per face, ours, {label}, batch {batch}", target))
    for batch in batches:
        rows.append(Row(f"options/benchmark/b{batch}", "speed options",
                        f"network per face, {fast}, batch {batch}, cudnn.benchmark on"))
    for mode in photo_modes:
        label = f"fast ({fast} decoder)" if mode == "fast" else mode
        rows += [
            Row(f"photo/{mode}/first", "whole photo", f"whole photo, faces given, end to end, {label}",
                f"< {PHOTO_TARGET_MS:g} ms"),
            Row(f"photo/{mode}/fidelity", "whole photo", f"new fidelity, whole photo, {label}",
                f"< {FIDELITY_TARGET_MS:g} ms"),
            Row(f"photo/{mode}/memory", "whole photo", f"peak GPU memory, whole photo, {label}"),
        ]
    rows += [
        Row(f"photo/{candidate}/first", "whole photo",
            f"whole photo, faces given, end to end, fast with an {candidate} decoder (candidate)",
            f"< {PHOTO_TARGET_MS:g} ms"),
        Row(f"photo/{candidate}/fidelity", "whole photo", f"new fidelity, whole photo, fast with an {candidate} "
            "decoder (candidate)", f"< {FIDELITY_TARGET_MS:g} ms"),
        Row("photo/graphs/first", "whole photo",
            f"whole photo, faces given, end to end, fast ({fast} decoder) replaying CUDA graphs (candidate)",
            f"< {PHOTO_TARGET_MS:g} ms"),
        Row("photo/graphs/fidelity", "whole photo", f"new fidelity, whole photo, fast ({fast} decoder) replaying "
            "CUDA graphs (candidate)", f"< {FIDELITY_TARGET_MS:g} ms"),
        Row("photo/graphs/memory", "whole photo",
            f"peak GPU memory, whole photo, fast ({fast} decoder) replaying CUDA graphs"),
    ]
    rows += [
        Row("photo/resident", "whole photo", "pipeline stays CUDA-resident between requests",
            "same models, never moved, no empty_cache"),
        Row("photo/oom", "whole photo", "out of memory retries with smaller face batches",
            "completes under a memory cap"),
    ]
    return rows


def render_table(rows: list[Row], results: dict[str, Result], outcomes: dict[str, SectionOutcome]) -> list[str]:
    lines = ["| measurement | baseline | ours | ratio | target | result | notes |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        result = results.get(row.key)
        if result is None:
            result = _unmeasured(outcomes.get(row.section))
        lines.append(f"| {row.measurement} | {result.baseline} | {result.ours} | {result.ratio} | {row.target} | "
                     f"{result.verdict} | {result.notes} |")
    return lines


def _unmeasured(outcome: SectionOutcome | None) -> Result:
    if outcome is None or outcome.status == "ok":
        return Result(verdict="not yet measured")
    return Result(verdict=outcome.status, notes=_cell(outcome.message))


def _cell(text: str) -> str:
    """Text that cannot break a markdown table row."""
    return " ".join(text.split()).replace("|", "\\|")


def no_candidate(candidate: str) -> Result:
    """The row of the candidate decoder precision where it is not measured: fp16 only where the GPU's fast mode
    could choose it."""
    return Result(verdict="n/a", notes=f"CUDA only: the {candidate} decoder is a GPU's alternative")


CUDA_ONLY = Result(verdict="n/a", notes="CUDA only")


def ratio_result(baseline_ms: float | None, ours_ms: float, target: float | None, notes: str,
                 baseline_label: str = "") -> Result:
    """A time row against a baseline time (ratio = baseline / ours), judged against `target` when there is one."""
    if baseline_ms is None:
        return Result("(no baseline)", f"{ours_ms:.2f} ms", "", "info" if target is None else "FAIL", notes)
    ratio = baseline_ms / ours_ms
    verdict = "info" if target is None else ("pass" if ratio >= target else "FAIL")
    return Result(f"{baseline_ms:.2f} ms{baseline_label}", f"{ours_ms:.2f} ms", f"{ratio:.2f}x", verdict, notes)


def below_result(ours_ms: float, limit_ms: float, notes: str) -> Result:
    return Result("", f"{ours_ms:.1f} ms", "", "pass" if ours_ms < limit_ms else "FAIL", notes)
