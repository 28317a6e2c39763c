"""The command line's `--ray` options, and the actors they ask of the cluster.

No Ray here: the parser is built whether or not Ray is installed.
"""

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InvalidOptionError

LOCAL = "local"
"""`--ray` without an address: start a Ray instance on this machine for the job, listening on loopback only."""


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("on a Ray cluster (needs requirements-ray.txt)")
    group.add_argument(
        "--ray", nargs="?", const=LOCAL, metavar="ADDRESS",
        help="run on Ray: without ADDRESS a local instance; 'auto' joins the cluster this machine belongs to;"
        " or the head's HOST:PORT. Inputs may also be quoted globs and .txt lists of paths. Put it after the"
        " inputs (or write --ray=auto).",
    )  # fmt: skip
    group.add_argument("--actors", type=int, metavar="N",
                       help="pipelines running at once (default: one per GPU, else one per --cpus-per-actor CPUs)")
    group.add_argument("--cpus-per-actor", type=int, default=1, metavar="N",
                       help="CPUs (and torch threads) each CPU actor reserves (default 1)")
    group.add_argument("--chunk-frames", type=int, metavar="N",
                       help="video frames sent to an actor at once (default: about 32 MB of frames)")


def check_address(address: str) -> str:
    """`address` when Ray can be asked to join it; InvalidOptionError naming it otherwise."""
    if address.startswith("ray://"):
        raise InvalidOptionError(
            f"--ray {address}: Ray Client addresses are not supported, since the job reads and writes files where it"
            " runs; run it on a node of the cluster with --ray auto."
        )
    if address not in (LOCAL, "auto") and ":" not in address:
        raise InvalidOptionError(
            f"--ray takes auto or a head's HOST:PORT; got {address!r} (an input? put --ray after the inputs, or"
            " write --ray=auto)."
        )
    return address


@dataclass(frozen=True)
class ActorPlan:
    """How many actors run the pipeline and what each reserves; device: what their pipelines run on."""

    actors: int
    gpus: int
    cpus: int
    device: str


def plan_actors(
    resources: Mapping[str, float], actors: int | None, cpus_per_actor: int, device: str | None
) -> ActorPlan:
    """One actor per GPU of the cluster (`resources`, as `ray.cluster_resources()` gives them) unless `device` is
    cpu; else CPU actors of `cpus_per_actor` CPUs each, as many as fit unless `actors` says how many."""
    if actors is not None and actors < 1:
        raise InvalidOptionError(f"--actors must be at least 1; got {actors}")
    if cpus_per_actor < 1:
        raise InvalidOptionError(f"--cpus-per-actor must be at least 1; got {cpus_per_actor}")
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if device not in (None, "", "auto", "cpu", "cuda"):
        raise InvalidOptionError(
            f"--device {device} with --ray: each actor gets a GPU of its own; use --device cuda, cpu or leave it out."
        )
    if device == "cuda" and gpus == 0:
        raise InvalidOptionError("--device cuda: the Ray cluster has no GPU; use --device cpu or leave it out.")
    if gpus > 0 and device != "cpu":
        count = actors or gpus
        if count > gpus:
            raise InvalidOptionError(f"--actors {count}: the Ray cluster has {gpus} GPU(s), one per actor.")
        return ActorPlan(count, gpus=1, cpus=1, device="cuda")
    count = actors or max(1, cpus // cpus_per_actor)
    if count * cpus_per_actor > cpus:
        raise InvalidOptionError(
            f"--actors {count} x --cpus-per-actor {cpus_per_actor} needs {count * cpus_per_actor} CPUs;"
            f" the Ray cluster has {cpus}."
        )
    return ActorPlan(count, gpus=0, cpus=cpus_per_actor, device="cpu")
