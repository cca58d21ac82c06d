from kfp import dsl
from kfp.dsl import Dataset, Input

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def promote(data: Input[Dataset], results: Input[list[Dataset]], store: str, metric: str, margin: float) -> str:
    """Make the run's best model the champion if it beats the current one, on the test images neither has seen,
    by more than the margin and by a paired test."""
    from pathlib import Path

    from cxrtl import signals
    from cxrtl.evaluate import load_evaluation
    from cxrtl.promote import promote as promote_best
    from cxrtl.store import open_store

    signals.install()  # SIGTERM takes Ctrl-C's clean-up: no upload parts or temporary files left

    evaluations = [load_evaluation(Path(r.path)) for r in results]
    decision = promote_best(open_store(store), Path(data.path), evaluations, metric=metric, margin=margin)
    print(decision.note())
    return decision.to_json()
