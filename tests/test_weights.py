"""The weight store against a fake Hugging Face Hub on 127.0.0.1 (tests/fake_hub.py): real huggingface_hub
downloads, no internet. The official registry's sizes and digests are replaced by the served files' own, since
the tests serve generated checkpoints, not the published ones."""

import argparse
import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from codeformer_core.commands.download import add_download_arguments, run_download
from codeformer_core.errors import (
    CheckpointMismatchError,
    CorruptWeightsError,
    InvalidOptionError,
    WeightsUnavailableError,
)
from codeformer_core.network import CodeFormer
from codeformer_core.network.loading import load_network
from codeformer_core.options import RestoreOptions
from codeformer_core.settings import HubSettings, Settings
from codeformer_core.weights import REGISTRY, WeightFile, WeightStore, files_needed
from codeformer_core.weights.checkpoints import read_state_dict
from tests.support.golden import golden_tensor

from .fake_hub import FakeHub, closed_port_url, silent_server_url, small_checkpoint, use_hub

PARSER = "parsing_parsenet.pth"
PARSER_DATA = small_checkpoint(seed=1)


def unverified_registry(hub: FakeHub | None = None, **facts: dict[str, object]) -> dict[str, WeightFile]:
    """REGISTRY without the official sizes and digests (tests serve other bytes), release URLs on `hub`."""
    registry = {}
    for name, entry in REGISTRY.items():
        changes = {"size": None, "sha256": None, "url": hub.release_url(name) if hub else "", **facts.get(name, {})}
        registry[name] = replace(entry, **changes)
    return registry


def make_store(tmp_path: Path, hub: FakeHub | None = None, **kwargs) -> WeightStore:
    kwargs.setdefault("registry", unverified_registry(hub))
    kwargs.setdefault("allow_url_fallback", False)
    # The app reads the environment once, at start-up; a test's store reads it when made, after its setenv calls.
    kwargs.setdefault("hub", HubSettings.from_env())
    return WeightStore(tmp_path / "weights", **kwargs)


def assert_names_fixes(message: str, name: str, store: WeightStore) -> None:
    assert name in message
    assert f"put {name} into {store.weights_dir}" in message
    assert "HF_ENDPOINT" in message


def test_downloads_a_published_format_codeformer_checkpoint_and_loads_it(fake_hub, official_checkpoint, tmp_path):
    checkpoint = official_checkpoint("restore")
    fake_hub.files["weights/CodeFormer/codeformer.pth"] = checkpoint  # a mirror's layout: found by name
    fake_hub.files["README.md"] = b"mirror of the CodeFormer weights"
    store = make_store(tmp_path)
    reports = []

    net = store.load("codeformer.pth", lambda path: load_network("restore", path), lambda *r: reports.append(r))

    assert isinstance(net, CodeFormer)
    codebook = net.state_dict()["quantize.embedding.weight"]
    assert torch.equal(codebook, golden_tensor("quantize.embedding.weight", tuple(codebook.shape)))
    placed = store.weights_dir / "codeformer.pth"
    assert placed.stat().st_size == checkpoint.stat().st_size
    assert placed.stat().st_nlink == 2  # hard-linked with the Hugging Face cache's blob, not copied
    assert len(fake_hub.gets("weights/CodeFormer/codeformer.pth")) == 1
    done = [r[1] for r in reports]
    assert len(done) > 10 and done == sorted(done)
    assert reports[-1] == ("codeformer.pth", checkpoint.stat().st_size, checkpoint.stat().st_size)
    assert "weights/CodeFormer/codeformer.pth" in store.origin("codeformer.pth")


def test_a_checkpoint_for_another_task_is_refused_by_name(fake_hub, official_checkpoint, tmp_path):
    fake_hub.files["codeformer.pth"] = official_checkpoint("inpaint")
    store = make_store(tmp_path)

    with pytest.raises(CheckpointMismatchError) as caught:
        store.load("codeformer.pth", lambda path: load_network("restore", path))

    assert "codeformer.pth" in str(caught.value) and "codeformer_inpainting.pth" in str(caught.value)
    assert len(fake_hub.gets("codeformer.pth")) == 1  # a mismatch is not corruption: no second download
    assert (store.weights_dir / "codeformer.pth").is_file()


def test_a_file_in_the_weights_directory_needs_no_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    store = make_store(tmp_path)
    store.weights_dir.mkdir()
    (store.weights_dir / PARSER).write_bytes(PARSER_DATA)

    assert store.path(PARSER) == store.weights_dir / PARSER
    assert store.missing_files([PARSER, "codeformer.pth"]) == ["codeformer.pth"]


def test_cached_files_are_used_with_the_hub_stopped_and_offline(fake_hub, monkeypatch, tmp_path):
    fake_hub.files[f"facelib/{PARSER}"] = PARSER_DATA
    make_store(tmp_path).path(PARSER)
    fake_hub.stop()

    assert make_store(tmp_path).path(PARSER).read_bytes() == PARSER_DATA  # weights directory
    from_cache = make_store(tmp_path / "fresh")  # empty weights directory: the Hugging Face cache serves
    assert from_cache.missing_files([PARSER]) == []
    assert from_cache.path(PARSER).read_bytes() == PARSER_DATA
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert make_store(tmp_path / "offline").path(PARSER).read_bytes() == PARSER_DATA


def test_offline_mode_downloads_nothing(fake_hub, monkeypatch, tmp_path):
    fake_hub.files[PARSER] = PARSER_DATA
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    store = make_store(tmp_path, fake_hub, allow_url_fallback=True)

    with pytest.raises(WeightsUnavailableError) as caught:
        store.path(PARSER)

    assert f"put {PARSER} into {store.weights_dir}" in str(caught.value)
    assert "HF_HUB_OFFLINE" in str(caught.value)
    assert fake_hub.requests == []


def test_a_file_the_hub_lacks_is_reported_with_both_fixes(fake_hub, tmp_path):
    fake_hub.files["other.pth"] = PARSER_DATA
    store = make_store(tmp_path)

    with pytest.raises(WeightsUnavailableError) as caught:
        store.path("codeformer.pth")

    assert_names_fixes(str(caught.value), "codeformer.pth", store)
    assert "holds no file named codeformer.pth" in str(caught.value)


def test_a_configured_path_the_hub_answers_404_for_is_reported(fake_hub, tmp_path):
    fake_hub.files["other.pth"] = PARSER_DATA
    store = make_store(tmp_path, hub_paths={"codeformer.pth": "weights/codeformer-v0.1.0.pth"})

    with pytest.raises(WeightsUnavailableError) as caught:
        store.path("codeformer.pth")

    assert_names_fixes(str(caught.value), "codeformer.pth", store)
    assert "404 (EntryNotFound) for weights/codeformer-v0.1.0.pth" in str(caught.value)
    assert [r.method for r in fake_hub.requests if r.path.endswith("codeformer-v0.1.0.pth")] == ["HEAD"]


def test_an_unreachable_hub_fails_within_seconds(monkeypatch, tmp_path):
    dead_hub, dead_releases = closed_port_url(), closed_port_url()
    monkeypatch.setenv("HF_ENDPOINT", dead_hub)
    registry = unverified_registry()
    for name in ("codeformer.pth", PARSER):
        registry[name] = replace(registry[name], url=f"{dead_releases}/{name}")
    store = make_store(tmp_path, registry=registry, allow_url_fallback=True)

    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as caught:
        store.path("codeformer.pth")
    first = time.monotonic() - started
    with pytest.raises(WeightsUnavailableError):
        store.path(PARSER)  # both sources just failed: neither is asked again
    second = time.monotonic() - first - started

    assert first < 10 and second < 1
    message = str(caught.value)
    assert_names_fixes(message, "codeformer.pth", store)
    assert f"the Hugging Face Hub at {dead_hub} could not be reached" in message
    assert f"{dead_releases.removeprefix('http://')} could not be reached" in message


def test_a_hub_that_never_answers_costs_one_timeout_per_source(monkeypatch, tmp_path):
    monkeypatch.setattr("codeformer_core.weights.hub.READ_TIMEOUT", 0.5)
    monkeypatch.setattr("codeformer_core.weights.release.READ_TIMEOUT", 0.5)
    with silent_server_url() as silent:
        monkeypatch.setenv("HF_ENDPOINT", silent)
        registry = unverified_registry()
        for name in ("codeformer.pth", PARSER):
            registry[name] = replace(registry[name], url=f"{silent}/{name}")
        store = make_store(tmp_path, registry=registry, allow_url_fallback=True)

        started = time.monotonic()
        with pytest.raises(WeightsUnavailableError, match="ReadTimeout"):
            store.path("codeformer.pth")
        first = time.monotonic() - started
        with pytest.raises(WeightsUnavailableError, match="ReadTimeout"):
            store.path(PARSER)
        second = time.monotonic() - first - started

    assert 1.0 <= first < 3.0  # the Hub's file list, then the release URL: no retries in between
    assert second < 0.2  # both remembered as silent


def test_a_transfer_cut_short_is_completed(fake_hub, tmp_path):
    data = small_checkpoint(seed=2, numel=3_000_000)
    fake_hub.files[PARSER] = data
    fake_hub.cut_next(PARSER)

    path = make_store(tmp_path).path(PARSER)

    assert path.read_bytes() == data
    assert len(fake_hub.gets(PARSER)) == 2


def test_a_truncated_file_in_the_weights_directory_is_fetched_again(fake_hub, tmp_path):
    fake_hub.files[PARSER] = PARSER_DATA
    known_size = unverified_registry(**{PARSER: {"size": len(PARSER_DATA)}})
    for registry in (known_size, unverified_registry()):
        store = make_store(tmp_path, registry=registry)
        store.weights_dir.mkdir(exist_ok=True)
        (store.weights_dir / PARSER).write_bytes(PARSER_DATA[: len(PARSER_DATA) // 2])

        # Either way the file is used as found, the loader finds the damage, and load() fetches a fresh copy.
        state_dict = store.load(PARSER, read_state_dict)

        assert set(state_dict) == {"conv.weight", "conv.bias"}
        assert (store.weights_dir / PARSER).read_bytes() == PARSER_DATA
    assert len(fake_hub.gets(PARSER)) == 2


def test_a_mirror_serving_a_truncated_file_is_reported_after_a_second_try(fake_hub, tmp_path):
    fake_hub.files[PARSER] = PARSER_DATA
    fake_hub.serve_instead(PARSER, PARSER_DATA[:1000])
    store = make_store(tmp_path)

    with pytest.raises(CorruptWeightsError) as caught:
        store.path(PARSER)

    assert f"{PARSER} from Hub repo" in str(caught.value)
    assert f"has 1000 bytes, expected {len(PARSER_DATA)}" in str(caught.value)
    assert_names_fixes(str(caught.value), PARSER, store)
    assert len(fake_hub.gets(PARSER)) == 2
    assert not (store.weights_dir / PARSER).exists()


def test_a_download_corrupted_on_the_way_is_fetched_again(fake_hub, tmp_path, caplog):
    fake_hub.files[PARSER] = PARSER_DATA
    fake_hub.serve_instead(PARSER, os.urandom(len(PARSER_DATA)), times=1)

    with caplog.at_level(logging.WARNING, logger="codeformer_core.weights.store"):
        path = make_store(tmp_path).path(PARSER)

    assert path.read_bytes() == PARSER_DATA
    assert len(fake_hub.gets(PARSER)) == 2
    assert any(PARSER in r.message and "SHA-256" in r.message for r in caplog.records)


def test_a_corrupt_file_in_the_weights_directory_is_reported_and_replaced(fake_hub, tmp_path, caplog):
    fake_hub.files[PARSER] = PARSER_DATA
    store = make_store(tmp_path)
    store.weights_dir.mkdir()
    (store.weights_dir / PARSER).write_bytes(b"\x00garbage" * 500)

    with caplog.at_level(logging.WARNING, logger="codeformer_core.weights.store"):
        state_dict = store.load(PARSER, read_state_dict)

    assert set(state_dict) == {"conv.weight", "conv.bias"}
    assert any(PARSER in r.message and "fetching it again" in r.message for r in caplog.records)


def test_a_file_deleted_or_corrupted_while_the_app_runs_is_fetched_again(fake_hub, tmp_path):
    fake_hub.files[PARSER] = PARSER_DATA
    store = make_store(tmp_path)
    first = store.path(PARSER)

    first.unlink()  # deleted behind the running app's back
    assert store.load(PARSER, read_state_dict).keys() == {"conv.weight", "conv.bias"}
    first.write_bytes(b"\x00garbage" * 500)  # then damaged in place
    assert store.load(PARSER, read_state_dict).keys() == {"conv.weight", "conv.bias"}

    assert first.read_bytes() == PARSER_DATA
    # The deleted file came back from the Hugging Face cache; the damaged one had to be downloaded again.
    assert len(fake_hub.gets(PARSER)) == 2


class _TouchOnLoad:
    """Unpickling this runs code: it would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_pickle_that_runs_code_is_refused(fake_hub, tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"params": {"weight": torch.zeros(2)}, "payload": _TouchOnLoad(marker)}, tmp_path / "evil.pth")
    fake_hub.files[PARSER] = (tmp_path / "evil.pth").read_bytes()
    store = make_store(tmp_path)

    with pytest.raises(CorruptWeightsError) as caught:
        store.load(PARSER, read_state_dict)

    assert PARSER in str(caught.value) and "contains code" in str(caught.value)
    assert not marker.exists()


def test_files_are_found_by_name_or_by_configured_path(fake_hub, tmp_path):
    renamed = small_checkpoint(seed=3)
    fake_hub.files[f"deep/copy/{PARSER}"] = small_checkpoint(seed=4)
    fake_hub.files[f"facelib/{PARSER}"] = PARSER_DATA
    fake_hub.files["weights/codeformer-v0.1.0.pth"] = renamed

    store = make_store(tmp_path, hub_paths={"codeformer.pth": "weights/codeformer-v0.1.0.pth"})

    assert store.path(PARSER).read_bytes() == PARSER_DATA  # the shallower of two copies
    assert store.path("codeformer.pth").read_bytes() == renamed


def test_a_space_repo_is_served_like_a_model_repo(monkeypatch, tmp_path):
    hub = FakeHub.start(repo_id="someone/CodeFormer", repo_type="space")
    try:
        use_hub(monkeypatch, hub, tmp_path / "hf-home")
        hub.files[f"weights/facelib/{PARSER}"] = PARSER_DATA
        store = make_store(tmp_path)
        assert store.hub.spec == "spaces/someone/CodeFormer"  # from CODEFORMER_HUB_REPO
        assert store.path(PARSER).read_bytes() == PARSER_DATA
    finally:
        hub.stop()


def test_the_release_url_serves_what_the_hub_lacks(fake_hub, tmp_path):
    fake_hub.release_files[PARSER] = PARSER_DATA
    reports = []
    store = make_store(tmp_path, fake_hub, allow_url_fallback=True)

    path = store.path(PARSER, lambda *r: reports.append(r))

    assert path.read_bytes() == PARSER_DATA
    assert store.origin(PARSER) == fake_hub.release_url(PARSER)
    assert reports[-1] == (PARSER, len(PARSER_DATA), len(PARSER_DATA))


@pytest.mark.parametrize(
    ("task", "options", "expected"),
    [
        ("restore", {}, ["codeformer.pth", "detection_Resnet50_Final.pth", PARSER]),
        ("colorize", {"aligned": True, "background": "realesrgan"}, ["codeformer_colorization.pth"]),
        ("inpaint", {"detector": "dlib", "parse_paste": False}, ["codeformer_inpainting.pth"]),
        (
            "restore",
            {"detector": "retinaface_mobile0.25", "face_upsample": True},
            ["codeformer.pth", "detection_mobilenet0.25_Final.pth", PARSER, "RealESRGAN_x2plus.pth"],
        ),
    ],
)
def test_files_needed_lists_only_what_the_run_uses(task, options, expected):
    assert files_needed(RestoreOptions(task=task, **options)) == expected


def test_only_the_needed_files_are_fetched(fake_hub, tmp_path):
    for seed, name in enumerate(REGISTRY):
        fake_hub.files[f"all/{name}"] = small_checkpoint(seed=seed)
    store = make_store(tmp_path)
    needed = files_needed(RestoreOptions(detector="retinaface_mobile0.25", parse_paste=False))

    for name in needed:
        store.path(name)

    fetched = {r.path.rsplit("/", 1)[-1] for r in fake_hub.requests if r.method == "GET" and "/resolve/" in r.path}
    assert fetched == set(needed) == {"codeformer.pth", "detection_mobilenet0.25_Final.pth"}
    assert sorted(p.name for p in store.weights_dir.iterdir()) == sorted(needed)
    assert sum(r.path.startswith("/api/") for r in fake_hub.requests) == 1  # the file list, once


def test_unknown_names_and_repos_are_refused():
    with pytest.raises(InvalidOptionError, match="unknown weight file 'codeformer.pt'"):
        WeightStore().path("codeformer.pt")
    with pytest.raises(InvalidOptionError, match="owner/name"):
        WeightStore(hub=HubSettings(repo="just-a-name"))
    with pytest.raises(InvalidOptionError, match="task must be one of"):
        RestoreOptions(task="deblur")


def test_two_threads_asking_for_one_file_download_it_once(fake_hub, tmp_path):
    fake_hub.files[PARSER] = small_checkpoint(seed=5, numel=2_000_000)
    store = make_store(tmp_path)
    start = threading.Barrier(4)
    paths = []

    def ask() -> None:
        start.wait()
        paths.append(store.path(PARSER))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(paths) == 4 and len(set(paths)) == 1
    # One metadata request and one download: the other threads waited for the first instead of asking too.
    assert [r.method for r in fake_hub.requests if "/resolve/" in r.path] == ["HEAD", "GET"]


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_download_arguments(parser)
    return run_download(parser.parse_args(argv), Settings.from_env())


def test_the_download_command_prints_where_each_file_went(fake_hub, monkeypatch, tmp_path, capsys):
    for seed, name in enumerate(["codeformer_inpainting.pth", "detection_mobilenet0.25_Final.pth", PARSER]):
        fake_hub.files[f"weights/{name}"] = small_checkpoint(seed=seed)
    monkeypatch.setattr("codeformer_core.weights.store.REGISTRY", unverified_registry())
    weights_dir = tmp_path / "weights"
    inpaint = ["--task", "inpaint", "--detector", "retinaface_mobile0.25", "--weights-dir", str(weights_dir)]

    assert run_cli(inpaint) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{name}: {weights_dir / name} (Hub repo {fake_hub.repo_id}@main at {fake_hub.url}, weights/{name})"
        for name in ["codeformer_inpainting.pth", "detection_mobilenet0.25_Final.pth", PARSER]
    ]

    assert run_cli(inpaint) == 0
    assert capsys.readouterr().out.count("(already in the weights directory)") == 3

    assert run_cli(["--task", "restore", "--weights-dir", str(weights_dir)]) == 1
    captured = capsys.readouterr()
    assert "error: codeformer.pth (CodeFormer, face restoration) is not in" in captured.err
    assert f"{PARSER}: {weights_dir / PARSER} (already in the weights directory)" in captured.out
