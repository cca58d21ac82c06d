from kfp import dsl
from kfp.dsl import Markdown, Output

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
    repeats: int,
    force: bool,
    reason: Output[Markdown],
) -> bool:
    """Has the dataset, a source's weights, the code or a setting changed since the last successful run? False ends
    the run early; ``reason`` says why, in the KFP UI and at the end of a local run (an output parameter would do,
    but kfp.local cannot resolve a condition on a hyphenated task's named output). A damaged champion fails the run
    here, before any training."""
    import json

    from cxrtl.retrain import check_for_changes, run_fingerprint, weights_fingerprint
    from cxrtl.settings import RunSettings
    from cxrtl.store import open_store

    # A typo in a submitted parameter fails here, before any GPU is asked for.
    settings = RunSettings.from_pipeline(
        sources=sources,
        recipe=recipe,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        repeats=repeats,
        force=force,
    )
    target = open_store(store)
    weights = weights_fingerprint(target, settings.sources)
    fingerprint = run_fingerprint(json.loads(dataset), settings.fingerprint(), weights)
    check = check_for_changes(target, fingerprint, run_id, settings.force)
    print(check.reason)
    with open(reason.path, "w") as f:
        f.write(check.reason + "\n")
    return check.changed
