from typing import NamedTuple

from kfp import dsl

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def check_weights(store: str, sources: list, skip_missing: bool, seed: int, repeats: int) -> NamedTuple(
    "Weights", [("sources", list), ("skipped", list), ("trainings", list)]
):
    """Every requested source has verified weights in the store, checked before any GPU is asked for.

    Fails naming what to put there; with ``skip_missing``, ``sources`` are those to train and ``skipped``
    those left out. ``trainings``: a ``{"source", "seed"}`` per training, ``repeats`` seeds per source.
    """
    from cxrtl.retrain import sources_to_train
    from cxrtl.settings import RunSettings
    from cxrtl.store import open_store

    ready, skipped = sources_to_train(open_store(store), sources, skip_missing)
    trainings = RunSettings.from_pipeline(seed=seed, repeats=repeats).trainings(ready)
    return ready, skipped, trainings
