#!/usr/bin/env bash
# Issue 15's GPU check in one command (bench/README.md, "GPU check"):
#   bash bench/gpu_check.sh              on a lent GPU machine, with bench/gpu-carry carried (make gpu-check-prep)
#   bash bench/gpu_check.sh --dry-run    here, on the CPU: tiny sizes, the same code path
#   add --profile                        then bench/gpu_profile.py with the same wheels (profile.log, gpu_profile.json)
# The GPU machine reaches no package index: the carried wheels are installed into a temporary folder first.
# With $OUT set, the results table, gpu_check.json and this log land there (they come back from a device call).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
WHEELS=bench/gpu-carry/wheels
HARD_LIMIT_S=${GPU_CHECK_HARD_LIMIT_S:-480}  # issue 15's 8 minutes; the check's own time box ends a minute sooner

# --profile is this script's; --dry-run goes to the check and the profile alike; the rest to the check.
dry_run=0 profile=0 args=() profile_args=()
for arg in "$@"; do
    case "$arg" in
        --profile) profile=1 ;;
        --dry-run) dry_run=1; args+=("$arg"); profile_args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    site=$(mktemp -d /tmp/gpu-check-site.XXXXXX)
    trap 'rm -rf "$site"' EXIT
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
        --target "$site" "$WHEELS"/*.whl
    export GPU_CHECK_SITE=$site PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
elif (( ! dry_run )); then
    echo "gpu_check: no wheels in $WHEELS: run 'make gpu-check-prep' on the development machine and carry bench/gpu-carry" >&2
    exit 2
fi

# About a minute on the H100; a dry run on 2 busy cores takes minutes.
PROFILE_LIMIT_S=${GPU_PROFILE_LIMIT_S:-$(( dry_run ? 600 : 150 ))}
check() { timeout --kill-after=10 "$HARD_LIMIT_S" "$PYTHON" -m bench.gpu_check "$@"; }
run_profile() { timeout --kill-after=10 "$PROFILE_LIMIT_S" "$PYTHON" -m bench.gpu_profile "$@"; }
# With $OUT set, a program's output is also kept there under the given name.
logged() {
    local log=$1; shift
    if [[ -n "${OUT:-}" ]]; then "$@" 2>&1 | tee "$OUT/$log"; else "$@"; fi
}

if [[ -n "${OUT:-}" ]]; then mkdir -p "$OUT"; fi
# The profile runs after the check whatever the check's outcome: it is the diagnosis of what the check found.
# The script exits with the last failing program's status, 0 when both pass.
status=0
logged gpu_check.log check "${args[@]}" || status=$?
if (( profile )); then logged profile.log run_profile "${profile_args[@]}" || status=$?; fi
exit "$status"
