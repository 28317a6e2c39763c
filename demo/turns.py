"""Fair turns: each visitor has at most a few unfinished jobs (waiting or running) in the pipeline's queue.

A visitor is a Gradio session: a browser tab, or one `gradio_client.Client` (a request sent without a session, to
Gradio's plain HTTP route, is a visitor of its own). A job beyond the limit is refused as it is submitted, before it
takes a place in the queue, so the others' jobs keep their order and nothing queued is lost. The count is read from
the queue itself each time: a job that leaves it for any reason (finished, failed, cancelled, its client gone) stops
counting at once, with no counter of ours to fall out of step.

Gradio has no public hook that sees the queue as a job joins it: an event's `validator=` runs first, but with
awaits between it and the joining, so jobs sent together would all pass. So this wraps the queue's `push`: the count
and the joining run under one lock, on the server's event loop. It relies on these Gradio internals, checked by
`check_queue_internals` when the app starts (an upgrade that moves them stops the app with this module's name,
rather than silently lifting the limit):
- `Blocks._queue`, the `gradio.queueing.Queue` that `Blocks.queue()` makes, and its coroutine
  `push(body, request, username)` returning (accepted, event id or refusal, state);
- `body.fn_index`, `body.session_hash`, and `Blocks.fns[fn_index].concurrency_id`;
- `Queue.event_queue_per_concurrency_id[id].queue` (the waiting `Event`s) and `Queue.active_jobs` (the running ones:
  a list of lists of `Event`s, or None), each `Event` with its `session_hash` and `concurrency_id`;
- a refusal in the state "validator_error" with a list of `gr.validate` values: Gradio answers it with HTTP 422, the
  page shows the message at the event's first input, and gradio_client raises `ValidationError` with it.
"""

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr
from gradio import queueing

from .widgets import PIPELINE_GROUP

REFUSED_AS = "queue"
"""The name gradio_client prints before the refusal ("- queue: You already have ...")."""


def too_many_jobs(limit: int) -> str:
    return f"You already have {limit} jobs waiting or running, the most one visitor may have: wait for one to finish."


def limit_jobs_per_visitor(demo: gr.Blocks, limit: int, group: str = PIPELINE_GROUP) -> None:
    """Refuse a job of concurrency group `group` to a session that already has `limit` unfinished ones there.
    Call after `demo.queue()`, before `demo.launch()`."""
    queue = check_queue_internals(demo)
    push = queue.push
    joining = asyncio.Lock()

    async def push_in_turn(body: Any, request: Any, username: str | None) -> tuple[bool, Any, str]:
        fn = demo.fns.get(body.fn_index)
        if fn is None or fn.concurrency_id != group:
            return await push(body, request, username)
        async with joining:
            if unfinished_jobs(queue, body.session_hash, group) >= limit:
                refusal = {**gr.validate(False, too_many_jobs(limit)), "parameter_name": REFUSED_AS}
                return False, [refusal], "validator_error"
            return await push(body, request, username)

    queue.push = push_in_turn


def unfinished_jobs(queue: queueing.Queue, session_hash: str | None, group: str) -> int:
    """The session's jobs of `group` waiting in the queue or running."""
    waiting = queue.event_queue_per_concurrency_id.get(group)
    running = [event for job in queue.active_jobs if job for event in job]
    events = [*(waiting.queue if waiting is not None else []), *running]
    return sum(event.session_hash == session_hash and event.concurrency_id == group for event in events)


def check_queue_internals(demo: gr.Blocks) -> queueing.Queue:
    """The demo's queue, once the internals listed in this module's docstring are where it expects them."""
    queue = getattr(demo, "_queue", None)
    event = _built(lambda: queueing.Event("probe-session", _ProbeFunction(), None, None))
    event_queue = _built(lambda: queueing.EventQueue("probe", 1))
    push_parameters = _built(lambda: list(inspect.signature(queueing.Queue.push).parameters))
    found = {
        "Blocks._queue": isinstance(queue, queueing.Queue),
        "Blocks.fns": isinstance(getattr(demo, "fns", None), dict),
        "Queue.push(body, request, username)": push_parameters == ["self", "body", "request", "username"],
        "Queue.event_queue_per_concurrency_id": isinstance(getattr(queue, "event_queue_per_concurrency_id", 0), dict),
        "Queue.active_jobs": isinstance(getattr(queue, "active_jobs", None), list),
        "EventQueue.queue": isinstance(getattr(event_queue, "queue", None), list),
        "Event.session_hash": getattr(event, "session_hash", None) == "probe-session",
        "Event.concurrency_id": getattr(event, "concurrency_id", None) == _ProbeFunction.concurrency_id,
    }
    moved = [name for name, present in found.items() if not present]
    if moved:
        raise RuntimeError(
            f"gradio {gr.__version__} moved what demo/turns.py relies on ({', '.join(moved)}): fair turns cannot be"
            " kept; install the gradio version requirements.txt pins, or update demo/turns.py"
        )
    return queue


def _built(build: Callable[[], object]) -> object | None:
    """What `build` makes, or None where a changed Gradio refuses our arguments or lacks the name."""
    try:
        return build()
    except (AttributeError, TypeError):
        return None


class _ProbeFunction:
    """Enough of a BlockFunction for `Event` to be built from."""

    concurrency_id = "probe-group"
