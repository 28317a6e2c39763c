"""Settings come from the environment once, at start-up, and a value that cannot be used is named in one line."""

from pathlib import Path

import pytest

from codeformer_core.credentials import Login
from codeformer_core.errors import InvalidOptionError
from codeformer_core.settings import Settings
from codeformer_core.weights.hub_settings import DEFAULT_HUB_REPO


def test_an_empty_environment_gives_the_defaults():
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.weights_dir == Path("weights") and settings.cpu_kernels == "auto" and settings.backend == "auto"
    assert settings.fast_precision == "auto"
    assert settings.max_video_seconds == 60 and not settings.on_space
    assert settings.max_batch_photos == 20 and settings.auth == ()
    assert settings.hub.repo == DEFAULT_HUB_REPO and settings.hub.endpoint == "https://huggingface.co"
    assert not settings.hub.offline


def test_every_variable_is_read():
    settings = Settings.from_env({
        "CODEFORMER_WEIGHTS_DIR": "/data/weights",
        "CODEFORMER_CPU_KERNELS": " Plain ",
        "CODEFORMER_CPU_KERNELS_CACHE": "/tmp/kernels.json",
        "CODEFORMER_FAST_PRECISION": "FP16",
        "CODEFORMER_BACKEND": "OnnxRuntime",
        "CODEFORMER_MAX_VIDEO_SECONDS": "12.5",
        "CODEFORMER_MAX_BATCH_PHOTOS": "8",
        "CODEFORMER_AUTH": "ada:s3cret",
        "SPACE_ID": "someone/codeformer",
        "CODEFORMER_HUB_REPO": "owner/mirror",
        "CODEFORMER_HUB_REVISION": "v2",
        "HF_ENDPOINT": "http://127.0.0.1:9/",
        "HF_HOME": "/tmp/hf-home",
        "HF_HUB_OFFLINE": "1",
    })

    assert settings.weights_dir == Path("/data/weights") and settings.cpu_kernels == "plain"
    assert settings.cpu_kernels_cache == Path("/tmp/kernels.json") and settings.fast_precision == "fp16"
    assert settings.backend == "onnxruntime"
    assert settings.max_video_seconds == 12.5 and settings.on_space
    assert settings.max_batch_photos == 8 and settings.auth == (Login("ada", "s3cret"),)
    hub = settings.hub
    assert (hub.repo, hub.revision, hub.endpoint) == ("owner/mirror", "v2", "http://127.0.0.1:9")
    assert hub.cache_dir == Path("/tmp/hf-home/hub") and hub.offline
    assert Settings.from_env({"HF_HUB_CACHE": "/cache/here"}).hub.cache_dir == Path("/cache/here")


@pytest.mark.parametrize("text, seconds", [("0", None), ("none", None), ("", 60.0), ("90", 90.0)])
def test_the_video_limit_can_be_lifted(text, seconds):
    assert Settings.from_env({"CODEFORMER_MAX_VIDEO_SECONDS": text}).max_video_seconds == seconds


@pytest.mark.parametrize("text, photos", [("0", None), ("None", None), ("", 20), (" 50 ", 50)])
def test_the_batch_limit_can_be_lifted(text, photos):
    assert Settings.from_env({"CODEFORMER_MAX_BATCH_PHOTOS": text}).max_batch_photos == photos


def test_logins_are_read_from_a_comma_separated_secret_and_never_shown():
    settings = Settings.from_env({"CODEFORMER_AUTH": " ada:s3cret:with:colons , bob: hunter2 ,"})

    assert settings.auth == (Login("ada", "s3cret:with:colons"), Login("bob", "hunter2"))
    assert "ada" in repr(settings) and not any(word in repr(settings) for word in ("s3cret", "hunter2"))


@pytest.mark.parametrize("value, entry", [("ada", 1), ("ada:pw,:pw", 2), ("ada:pw,bob:", 2)])
def test_a_malformed_login_is_named_by_its_place_never_by_its_text(value, entry):
    with pytest.raises(InvalidOptionError) as refused:
        Settings.from_env({"CODEFORMER_AUTH": value})

    assert str(refused.value) == f"entry {entry} of CODEFORMER_AUTH is not user:password"


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("CODEFORMER_CPU_KERNELS", "turbo",
         "CODEFORMER_CPU_KERNELS must be one of auto, winograd, channels-last, plain; got 'turbo'"),
        ("CODEFORMER_FAST_PRECISION", "half",
         "CODEFORMER_FAST_PRECISION must be one of auto, bf16, fp16, float32; got 'half'"),
        ("CODEFORMER_BACKEND", "tf",
         "CODEFORMER_BACKEND must be one of auto, torch, onnxruntime; got 'tf'"),
        ("CODEFORMER_MAX_VIDEO_SECONDS", "ten", "CODEFORMER_MAX_VIDEO_SECONDS must be a number of seconds"),
        ("CODEFORMER_MAX_VIDEO_SECONDS", "-3", "CODEFORMER_MAX_VIDEO_SECONDS must be a number of seconds"),
        ("CODEFORMER_MAX_VIDEO_SECONDS", "nan", "CODEFORMER_MAX_VIDEO_SECONDS must be a number of seconds"),
        ("CODEFORMER_MAX_BATCH_PHOTOS", "2.5", "CODEFORMER_MAX_BATCH_PHOTOS must be a whole number of photos"),
        ("CODEFORMER_MAX_BATCH_PHOTOS", "-1", "CODEFORMER_MAX_BATCH_PHOTOS must be a whole number of photos"),
    ],
)
def test_an_unusable_value_is_named(variable, value, message):
    with pytest.raises(InvalidOptionError, match=message):
        Settings.from_env({variable: value})


def test_the_cli_reports_a_bad_setting_in_one_line(monkeypatch, capsys, tmp_path):
    from codeformer_core import cli

    monkeypatch.setenv("CODEFORMER_CPU_KERNELS", "turbo")

    code = cli.main(["restore", str(tmp_path), "-o", str(tmp_path / "out")])

    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and errors == [
        "error: CODEFORMER_CPU_KERNELS must be one of auto, winograd, channels-last, plain; got 'turbo'"]


def test_the_hub_cache_follows_xdg_cache_home_when_hf_home_and_hf_hub_cache_are_unset():
    settings = Settings.from_env({"XDG_CACHE_HOME": "/var/cache/me"})

    assert settings.hub.cache_dir == Path("/var/cache/me/huggingface/hub")
    assert settings.cpu_kernels_cache == Path("/var/cache/me/codeformer/cpu-kernels.json")
    assert Settings.from_env({"XDG_CACHE_HOME": "/var/cache/me", "HF_HOME": "/hf"}).hub.cache_dir == Path("/hf/hub")


@pytest.mark.parametrize(("value", "offline"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_transformers_offline_makes_the_hub_offline(value, offline):
    assert Settings.from_env({"TRANSFORMERS_OFFLINE": value}).hub.offline is offline
