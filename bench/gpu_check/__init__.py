"""Issue 15's one-command GPU check: golden bounds, fp16 drift, network latency against the reference path, and
the whole-photo pipeline on one CUDA device, written to bench/results-cuda.md.

    bash bench/gpu_check.sh              # on a lent GPU machine, after `make gpu-check-prep` here
    bash bench/gpu_check.sh --dry-run    # here, on the CPU: tiny sizes, the same code path

See bench/README.md ("GPU check") for the carry list and the time budget.
"""
