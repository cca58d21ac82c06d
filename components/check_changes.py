from typing import NamedTuple

from kfp import dsl

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def check_changes(
    dataset: str,
    store: str,
    run_id: str,
    sources: list,
    recipe: str,
    image_size: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    force: bool,
    skip_missing_weights: bool,
) -> NamedTuple("Checked", [("changed", bool), ("sources", list), ("skipped", list)]):
    """Settings valid, weights in the store, and has anything changed since the last successful run?

    All before any GPU is asked for. ``changed`` False ends the run early; ``sources`` are those to train
    (``skipped`` left out for want of verified weights, only with ``skip_missing_weights``).
    """
    import json

    from cxrtl.retrain import check_for_changes, check_settings, run_fingerprint, sources_to_train
    from cxrtl.store import open_store

    target = open_store(store)
    settings = {
        "sources": sources,
        "recipe": recipe,
        "image_size": image_size,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
    }
    check_settings(settings)  # a typo in a submitted parameter fails here
    trained, skipped = sources_to_train(target, sources, skip_missing_weights)
    # The fingerprint holds what trains: weights put in later make the next run retrain.
    fingerprint = run_fingerprint(json.loads(dataset), {**settings, "sources": trained})
    check = check_for_changes(target, fingerprint, run_id, force)
    print(check.reason)
    return check.changed, trained, skipped
