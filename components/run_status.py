from kfp import dsl

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def run_status(summary: str):
    """The run's last step: fails the run, in one line naming each training that failed, once the others are
    reported (cxrtl.failures)."""
    import json
    import sys

    from cxrtl.failures import RunFailed, TrainingFailure, check_run

    record = json.loads(summary)
    try:
        check_run([TrainingFailure(**f) for f in record["failures"]], record["report"] or None)
    except RunFailed as exc:
        print(f"run-status: error: {exc}", file=sys.stderr)
        sys.exit(1)
