"""Sharing the app: a password keeps out whoever lacks it, each visitor takes turns, one visitor's results stay out
of another's reach, and serving where others can reach the app without a password says so in one line.

The servers here are the app's own (`app.serve` on 127.0.0.1, driven with gradio_client), around a stand-in for the
pipeline whose jobs last until the test lets them finish (`GatedRestorer`): the queue and its turns are real.
"""

import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import gradio as gr
import httpx
import pytest
from gradio import queueing
from gradio_client import Client, handle_file
from gradio_client.exceptions import AuthenticationError, ValidationError
from gradio_client.utils import Status

import app
from codeformer_core.credentials import Login
from codeformer_core.settings import HubSettings
from codeformer_core.weights import WeightStore
from demo import build_demo, ui
from demo.turns import check_queue_internals, too_many_jobs
from demo.widgets import PIPELINE_GROUP

from .app_server import GatedRestorer, served
from .conftest import SAMPLES

FACE = SAMPLES / "aligned" / "0240.png"
ALIGNED = {"upscale": 1, "aligned": True}
PASSWORD = "correct horse"
WAIT_SECONDS = 30
ADD_A_PASSWORD = "add one with --auth USER:PASS or --auth-file FILE"
LINK_IS_PUBLIC = f"warning: anyone with the gradio.live link can use this app, no password asked: {ADD_A_PASSWORD}"
NETWORK_REACHES_IT = ("warning: anyone who can reach this machine on the network (it listens on 0.0.0.0) can use this"
                      f" app, no password asked: {ADD_A_PASSWORD}")  # fmt: skip


@pytest.fixture
def restorer(tmp_path, monkeypatch) -> Iterator[GatedRestorer]:
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    restorer = GatedRestorer(WeightStore(tmp_path / "no-weights", hub=HubSettings(offline=True)))
    yield restorer
    restorer.gate.set()  # a test that failed with jobs held leaves no thread waiting behind it


def wait_until_in_queue(job) -> None:
    """Until the server has taken the job (it waits or runs): gradio_client sends it from a thread of its own."""
    deadline = time.monotonic() + WAIT_SECONDS
    while job.status().code not in (Status.IN_QUEUE, Status.PROCESSING):
        assert time.monotonic() < deadline, f"the job never joined the queue: {job.status()}"
        time.sleep(0.05)


def file_url(url: str, path: Path | str) -> str:
    return f"{url}gradio_api/file={path}"


def test_a_password_keeps_out_a_client_without_it_and_a_wrong_one_alike(restorer):
    restorer.gate.set()
    with served(build_demo(restorer), auth=[Login("ada", PASSWORD)]) as url:
        with pytest.raises(AuthenticationError):
            Client(url, verbose=False)
        with pytest.raises(ValueError) as wrong:  # gradio_client's AuthenticationError is a ValueError too
            Client(url, auth=("ada", "wrong horse"), verbose=False)
        assert "horse" not in str(wrong.value)

        with httpx.Client() as nobody, httpx.Client() as guesser:
            refused_login = guesser.post(f"{url}login", data={"username": "ada", "password": "wrong horse"})
            assert refused_login.status_code == 400 and not guesser.cookies
            for method, path in [("GET", "config"), ("GET", "gradio_api/info"), ("POST", "gradio_api/queue/join"),
                                 ("POST", "gradio_api/upload"), ("GET", f"gradio_api/file={FACE}")]:  # fmt: skip
                answers = [client.request(method, url + path) for client in (nobody, guesser)]
                assert [answer.status_code for answer in answers] == [401, 401], path
                assert answers[0].json() == answers[1].json(), path

        client = Client(url, auth=("ada", PASSWORD), verbose=False)
        _, report = client.predict(handle_file(FACE), **ALIGNED, api_name="/restore")
        assert report.startswith("restore: 0 of 0 face(s) processed")


def test_a_visitors_third_job_is_refused_at_once_while_another_visitors_job_is_served(restorer):
    with served(build_demo(restorer)) as url:
        ada, bob = Client(url, verbose=False), Client(url, verbose=False)
        first = ada.submit(handle_file(FACE), fidelity=0.1, **ALIGNED, api_name="/restore")
        assert restorer.started.acquire(timeout=WAIT_SECONDS), "ada's first job runs, held at the gate"
        second = ada.submit(handle_file(FACE), fidelity=0.2, **ALIGNED, api_name="/restore")
        wait_until_in_queue(second)

        # Any endpoint of the pipeline counts: a photo, a batch. The gate is shut, so only a refusal can come back.
        for endpoint, inputs in [("/colorize", {"image": handle_file(FACE)}),
                                 ("/batch", {"photos": [handle_file(FACE)], "fidelity": 0.3})]:  # fmt: skip
            with pytest.raises(ValidationError) as refused:
                ada.submit(**inputs, **ALIGNED, api_name=endpoint).result(timeout=WAIT_SECONDS)
            assert str(refused.value).splitlines() == [
                "1 parameter(s) failed validation:",
                "- queue: You already have 2 jobs waiting or running, the most one visitor may have: wait for one to"
                " finish.",
            ]

        bobs = bob.submit(handle_file(FACE), fidelity=0.4, **ALIGNED, api_name="/restore")
        wait_until_in_queue(bobs)
        restorer.gate.set()
        reports = [job.result(timeout=WAIT_SECONDS)[1] for job in (first, second, bobs)]

        assert all(report.startswith("restore: 0 of 0 face(s) processed") for report in reports)
        assert restorer.fidelities == [0.1, 0.2, 0.4], "the jobs the queue took ran in the order they came"
        _, report = ada.predict(handle_file(FACE), fidelity=0.5, **ALIGNED, api_name="/restore")
        assert report.startswith("restore:"), "her turn again once her jobs are done"


def test_max_per_visitor_sets_the_number_of_turns(restorer):
    with served(build_demo(restorer), max_per_visitor=1) as url:
        ada = Client(url, verbose=False)
        first = ada.submit(handle_file(FACE), **ALIGNED, api_name="/restore")
        assert restorer.started.acquire(timeout=WAIT_SECONDS)

        with pytest.raises(ValidationError, match=re.escape(too_many_jobs(1))):
            ada.submit(handle_file(FACE), **ALIGNED, api_name="/restore").result(timeout=WAIT_SECONDS)
        restorer.gate.set()
        first.result(timeout=WAIT_SECONDS)


def test_every_event_that_queues_is_in_the_pipelines_group_so_every_one_takes_turns(restorer):
    page = build_demo(restorer)

    queued = {fn.api_name or fn.name: fn.concurrency_id for fn in page.fns.values() if fn.queue}

    assert set(queued.values()) == {PIPELINE_GROUP}
    pipeline_events = {"restore", "colorize", "inpaint", "batch", "video", "run_photo", "change_fidelity", "compare"}
    assert pipeline_events <= set(queued)


def test_a_gradio_that_moved_what_the_turns_rely_on_stops_the_app_with_the_reason(restorer, monkeypatch):
    page = build_demo(restorer)
    page.queue()
    assert check_queue_internals(page) is page._queue

    async def push(self, body, request):  # a push that no longer takes the user name
        return True, "", "success"

    monkeypatch.setattr(queueing.Queue, "push", push)
    del page._queue.active_jobs
    with pytest.raises(RuntimeError) as stopped:
        check_queue_internals(page)

    assert f"gradio {gr.__version__} moved what demo/turns.py relies on" in str(stopped.value)
    assert "(Queue.push(body, request, username), Queue.active_jobs)" in str(stopped.value)


def test_a_second_visitor_can_neither_list_nor_guess_the_first_ones_results(restorer):
    restorer.gate.set()
    with served(build_demo(restorer)) as url:
        ada = Client(url, verbose=False, download_files=False)
        result, _ = ada.predict(handle_file(FACE), **ALIGNED, api_name="/restore")
        served_copy = Path(unquote(result["url"].split("file=", 1)[1]))
        own_copy = next(Path(tempfile.gettempdir()).glob(f"codeformer-app-*/*/{served_copy.name}"))

        # The name is a SHA-256 of the bytes with a random seed, then a random uuid: nothing to enumerate.
        assert re.fullmatch(r"[0-9a-f]{64}", served_copy.parent.name)
        assert re.fullmatch(r"restored-[0-9a-f]{32}\.png", served_copy.name)
        bob = Client(url, verbose=False)
        assert set(bob.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {
            "/restore", "/colorize", "/inpaint", "/batch", "/video"}  # fmt: skip
        with httpx.Client() as guesser:
            assert guesser.get(result["url"]).status_code == 200  # the link itself works: it is ada's to share
            for guess in (served_copy.parent, served_copy.parent.parent, served_copy.with_name("restored.png"),
                          own_copy, own_copy.parent):  # fmt: skip
                assert guesser.get(file_url(url, guess)).status_code == 403, guess


def test_a_result_url_stops_working_once_its_age_is_past(restorer, monkeypatch):
    monkeypatch.setattr(ui, "DELETE_CACHE", (1, 3))  # every second, files older than 3 s (the app: 30 min, 1 h)
    restorer.gate.set()
    with served(build_demo(restorer)) as url:
        result, _ = Client(url, verbose=False, download_files=False).predict(
            handle_file(FACE), **ALIGNED, api_name="/restore"
        )
        assert httpx.get(result["url"]).status_code == 200

        deadline = time.monotonic() + WAIT_SECONDS
        while (status := httpx.get(result["url"]).status_code) == 200 and time.monotonic() < deadline:
            time.sleep(0.5)

        assert status == 403


@pytest.fixture
def main_without_serving(monkeypatch):
    """app.main with the page and the server stubbed; returns what `serve` was given."""
    for variable in ("SPACE_ID", "SPACES_ZERO_GPU", "CODEFORMER_AUTH"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("CODEFORMER_CPU_KERNELS", "plain")  # no kernel probe: nothing here runs a network
    served_with = {}
    monkeypatch.setattr(app, "build_demo", lambda restorer, settings, profile: None)
    monkeypatch.setattr(app, "preload_models", lambda pipeline: None)
    monkeypatch.setattr(app, "serve", lambda demo, **options: served_with.update(options))
    return served_with


@pytest.mark.parametrize(
    "argv, environment, warning",
    [
        (["--share"], {}, LINK_IS_PUBLIC),
        (["--host", "0.0.0.0"], {}, NETWORK_REACHES_IT),
        (["--host", "0.0.0.0", "--share"], {}, LINK_IS_PUBLIC),
        ([], {}, None),
        (["--host", "127.0.0.2"], {}, None),
        (["--host", "::1"], {}, None),
        (["--host", "localhost"], {}, None),
        (["--share", "--auth", "ada:pw"], {}, None),
        (["--host", "0.0.0.0"], {"CODEFORMER_AUTH": "ada:pw"}, None),
        ([], {"SPACE_ID": "someone/codeformer"}, None),
        (["--share"], {"SPACE_ID": "someone/codeformer"}, None),
    ],
)  # fmt: skip
def test_an_open_door_is_said_in_one_line_exactly_when_others_can_get_in(
    main_without_serving, monkeypatch, capsys, argv, environment, warning
):
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)

    assert app.main(["--device", "cpu", *argv]) == 0

    assert capsys.readouterr().err.splitlines() == ([warning] if warning else [])


def test_logins_from_the_environment_the_command_line_and_a_private_file_are_all_asked_for(
    main_without_serving, monkeypatch, tmp_path
):
    logins = tmp_path / "logins"
    logins.write_text("# friends\ncy:three:with:colons\n\n  dee : four  \n")
    logins.chmod(0o600)
    monkeypatch.setenv("CODEFORMER_AUTH", "ada:one")

    assert app.main(["--device", "cpu", "--auth", "bob:two", "--auth-file", str(logins), "--max-per-visitor", "3"]) == 0

    assert main_without_serving["auth"] == (
        Login("ada", "one"), Login("bob", "two"), Login("cy", "three:with:colons"), Login("dee", "four"))  # fmt: skip
    assert main_without_serving["max_per_visitor"] == 3


@pytest.mark.parametrize(
    "argv, file_text, mode, message",
    [
        (["--auth", "ada=s3cret"], None, None, "--auth value 1 is not user:password"),
        (["--auth", "ada:s3cret", "--auth", "ada:other"], None, None,
         "the user 'ada' is given two different passwords: keep one"),
        (["--auth-file", "{file}"], "ada:s3cret\nbob s3cret\n", 0o600, "line 2 of {file} is not user:password"),
        (["--auth-file", "{file}"], "ada:s3cret\n", 0o644,
         "{file} can be read or changed by other users of this machine: make it private with chmod 600 {file}"),
        (["--auth-file", "{file}"], "# nobody yet\n", 0o600, "{file} has no user:password line"),
        (["--auth-file", "{file}"], None, None, "{file} cannot be read: No such file or directory"),
    ],
)  # fmt: skip
def test_a_bad_login_stops_the_app_in_one_line_that_never_shows_a_password(
    main_without_serving, capsys, tmp_path, argv, file_text, mode, message
):
    file = tmp_path / "logins"
    if file_text is not None:
        file.write_text(file_text)
        file.chmod(mode)

    code = app.main(["--device", "cpu", *(arg.format(file=file) for arg in argv)])

    printed = capsys.readouterr()
    assert code == 2 and printed.err.splitlines() == [f"error: {message.format(file=file)}"]
    assert "s3cret" not in printed.out + printed.err and not main_without_serving
