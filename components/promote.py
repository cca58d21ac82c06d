from kfp import dsl
from kfp.dsl import Dataset, Input

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def promote(
    data: Input[Dataset],
    results: Input[list[Dataset]],
    store: str,
    metric: str,
    margin: float,
    despite_failures: bool,
) -> str:
    """Make the run's best model the champion if it beats the current one, on the test images neither has seen,
    by more than the margin and by a paired test. When a training failed, only with ``despite_failures``
    (among those that finished); else nothing is promoted, and the decision is empty."""
    import tempfile
    from pathlib import Path

    from cxrtl import artifacts, signals
    from cxrtl.evaluate import load_evaluation
    from cxrtl.failures import promotion_withheld_note, read_failure
    from cxrtl.promote import promote as promote_best
    from cxrtl.store import open_store

    signals.install()  # SIGTERM takes Ctrl-C's clean-up: no upload parts or temporary files left

    folders = [Path(r.path) for r in results]
    failures = [f for f in map(read_failure, folders) if f is not None]
    finished = [f for f in folders if read_failure(f) is None]
    if not finished or (failures and not despite_failures):
        print(promotion_withheld_note(failures, len(finished)))
        return ""
    target = open_store(store)
    with tempfile.TemporaryDirectory(prefix="cxrtl-promote-") as tmp:
        data_dir = artifacts.fetch(target, artifacts.StoredFolder.read(Path(data.path)), Path(tmp) / "data")
        evaluations = [load_evaluation(f) for f in finished]
        decision = promote_best(target, data_dir, evaluations, metric=metric, margin=margin)
    print(decision.note())
    return decision.to_json()
