"""Serve the CodeFormer web app:
`python app.py [--host H] [--port P] [--share] [--auth USER:PASS] [--auth-file FILE] [--device D] [--backend B]
[--fast-precision P] [--weights-dir DIR] [--max-queue N] [--max-per-visitor N] [--concurrency N]`.

With no arguments this is what a Hugging Face Space runs. `main()` reads the settings, decides what the hardware
can do (shown in the page), and builds the engine and the page; importing this module loads nothing. Locally each
model loads on the first request that needs it; on a Space (SPACE_ID is set) the models visitors will likely use
are loaded before the app listens, so the first visitor does not wait; on ZeroGPU (SPACES_ZERO_GPU is set)
`spaces` is imported before anything touches CUDA and every network call runs inside a `spaces.GPU` function.
"""

import argparse
import dataclasses
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import gradio as gr
import httpx
from gradio.networking import GRADIO_API_SERVER

from codeformer_core.commands.engine_arguments import add_engine_arguments, with_overrides
from codeformer_core.credentials import Login, merge_logins, read_logins_file
from codeformer_core.device import resolve_device
from codeformer_core.errors import CodeFormerError, WeightsError
from codeformer_core.hardware import HardwareProfile
from codeformer_core.images import DEFAULT_MAX_BYTES
from codeformer_core.pipeline import ImageRestorer, Pipeline
from codeformer_core.settings import Settings
from demo import build_demo
from demo.notices import LIKELY_REQUESTS
from demo.turns import limit_jobs_per_visitor
from demo.zerogpu import zero_gpu_restorer

DEFAULT_MAX_QUEUE = 16
DEFAULT_MAX_PER_VISITOR = 2
SHARE_CHECK_TIMEOUT = 5.0
LOOPBACK_NAMES = {"localhost", "localhost."}
ADD_A_PASSWORD = "add one with --auth USER:PASS or --auth-file FILE"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 on a Hugging Face Space)")
    parser.add_argument("--port", type=int, help="port (default $GRADIO_SERVER_PORT, else the first free from 7860)")
    parser.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link")
    parser.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                        help="ask for this user name and password (repeatable; added to $CODEFORMER_AUTH's). Other "
                             "users of this machine can see it in the process list: --auth-file cannot be seen")
    parser.add_argument("--auth-file", type=Path, metavar="FILE",
                        help="ask for the user:password pairs of FILE, one a line (# comments and blank lines "
                             "skipped); FILE must be private to its owner (chmod 600)")
    add_engine_arguments(parser)
    parser.add_argument("--max-queue", type=positive_int, default=DEFAULT_MAX_QUEUE,
                        help=f"requests that may wait in the queue; more are turned away (default {DEFAULT_MAX_QUEUE})")
    parser.add_argument("--max-per-visitor", type=positive_int, default=DEFAULT_MAX_PER_VISITOR,
                        help="jobs one visitor (a browser tab, an API client) may have waiting or running at once; "
                             f"a further one is refused at once (default {DEFAULT_MAX_PER_VISITOR})")
    parser.add_argument("--concurrency", type=positive_int,
                        help="requests processed at the same time (default: what the hardware affords; 1 on a CPU, "
                             "where one run already uses every core)")
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more; got {value}")
    return value


def default_host(settings: Settings) -> str:
    """Every interface on a Hugging Face Space (its proxy must reach the app), else this machine only."""
    return "0.0.0.0" if settings.on_space else "127.0.0.1"


def serve(
    demo: gr.Blocks,
    *,
    host: str,
    port: int | None,
    share: bool = False,
    auth: Sequence[Login] = (),
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_per_visitor: int = DEFAULT_MAX_PER_VISITOR,
    concurrency: int = 1,
    block: bool = True,
) -> str:
    """Queue and launch `demo`, asking for one of `auth`'s logins when there are any; returns the local URL (with
    block=False, while the server runs in a thread)."""
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    limit_jobs_per_visitor(demo, max_per_visitor)
    share_problem = share_server_problem() if share else None
    _, local_url, _ = demo.launch(
        server_name=host,
        server_port=port,
        share=share and share_problem is None,
        auth=[(login.user, login.password) for login in auth] or None,
        max_file_size=DEFAULT_MAX_BYTES,
        show_error=True,
        prevent_thread_lock=True,
        quiet=share_problem is not None,  # Gradio would add "set share=True to create a public link"
    )
    if share_problem is not None:
        print(f"--share: no public link ({share_problem}); the app runs at {local_url} only.", file=sys.stderr)
    if block:
        demo.block_thread()
    return local_url


def share_server_problem() -> str | None:
    """Why Gradio's share server cannot be reached (one phrase), or None when it answers. Asked before launching
    so that a machine without internet gets one line instead of Gradio's several-line failure."""
    host = urlsplit(GRADIO_API_SERVER).hostname
    try:
        httpx.get(GRADIO_API_SERVER, timeout=SHARE_CHECK_TIMEOUT).raise_for_status()
    except httpx.HTTPError as error:
        return f"{host} is not reachable ({type(error).__name__})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = with_overrides(Settings.from_env(), args)
        settings = dataclasses.replace(settings, auth=command_line_logins(settings, args))
        if settings.zero_gpu:
            import spaces  # noqa: F401 - ZeroGPU patches torch's CUDA: it must come before anything touches CUDA
        profile = HardwareProfile.detect(resolve_device(args.device), settings)
        # The profile's precision, not "auto": on ZeroGPU it is known without asking CUDA, which only a GPU call may.
        settings = dataclasses.replace(settings, fast_precision=profile.fast_precision)
        pipeline = Pipeline.from_settings(settings, device=args.device)
    except CodeFormerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if settings.on_space or settings.zero_gpu:
        preload_models(pipeline)
    host = args.host or default_host(settings)
    if warning := open_door_warning(host, args.share, settings):
        print(warning, file=sys.stderr)
    serve(
        build_demo(app_restorer(pipeline, settings), settings, profile),
        host=host,
        port=args.port,
        share=args.share,
        auth=settings.auth,
        max_queue=args.max_queue,
        max_per_visitor=args.max_per_visitor,
        concurrency=args.concurrency or profile.concurrency,
    )
    return 0


def command_line_logins(settings: Settings, args: argparse.Namespace) -> tuple[Login, ...]:
    """The environment's logins with --auth's and --auth-file's; a refusal names the entry, never its text."""
    given = [Login.parse(text, f"--auth value {number}") for number, text in enumerate(args.auth, 1)]
    from_file = read_logins_file(args.auth_file) if args.auth_file is not None else ()
    return merge_logins(settings.auth, given, from_file)


def open_door_warning(host: str, share: bool, settings: Settings) -> str | None:
    """One line saying who can use an app served without a password beyond this machine; None when it asks for
    one, listens on loopback only, or is a Space (whose own visibility settings decide who reaches it)."""
    if settings.auth or settings.on_space:
        return None
    if share:
        who = "anyone with the gradio.live link"
    elif not is_loopback(host):
        who = f"anyone who can reach this machine on the network (it listens on {host})"
    else:
        return None
    return f"warning: {who} can use this app, no password asked: {ADD_A_PASSWORD}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; any other name may resolve to an address the network reaches."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def preload_models(pipeline: Pipeline) -> None:
    """Load what visitors will likely use before serving; a file that cannot be had is left to the page's banner."""
    try:
        pipeline.preload(LIKELY_REQUESTS)
    except WeightsError as error:
        print(f"warning: models not loaded ahead: {error}", file=sys.stderr)


def app_restorer(pipeline: Pipeline, settings: Settings) -> ImageRestorer:
    """The pipeline itself, or on ZeroGPU the pipeline behind `spaces.GPU` calls."""
    if not settings.zero_gpu:
        return pipeline
    return zero_gpu_restorer(pipeline)


if __name__ == "__main__":
    sys.exit(main())
