"""Many photos and long videos on a Ray cluster: the shared pipeline in Ray Data actors, one per GPU (or per CPU
share), fed and drained as streams by the process that started the job.

`arguments` (the `--ray` options and the actors they ask for), `archive` (inputs, outputs, what is already done),
`workers` (what an actor does) and `summary` import no Ray; `sources` and `job` do, and the command line imports
them only when `--ray` is given, so Ray stays an optional extra (`requirements-ray.txt`).
"""
