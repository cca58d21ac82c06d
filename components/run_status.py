from kfp import dsl

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def run_status(summary: str, store: str, prune: bool):
    """The run's last step: with ``prune``, applies the store's retention policy (cxrtl.prune); then fails the
    run, in one line naming each training that failed, once the others are reported (cxrtl.failures)."""
    import json

    from cxrtl.failures import TrainingFailure, check_run
    from cxrtl.prune import PrunePolicy
    from cxrtl.prune import prune as prune_store
    from cxrtl.store import open_store

    if prune:
        pruned = prune_store(open_store(store), PrunePolicy(), apply=True)
        print(f"store pruned: {len(pruned.delete)} keys deleted, {pruned.kept} kept")
    record = json.loads(summary)
    # RunFailed, a CxrtlError: a local run shows its message as the run's last line, like any task's.
    check_run([TrainingFailure(**f) for f in record["failures"]], record["report"] or None)
