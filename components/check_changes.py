from kfp import dsl
from kfp.dsl import Dataset, Input

from components.images import image


@dsl.component(base_image=image("cxrtl-cpu"), install_kfp_package=False)
def check_changes(
    raw: Input[Dataset],
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
) -> bool:
    """Has the dataset, the code or a setting changed since the last successful run? False ends the run early."""
    import json
    from pathlib import Path

    from cxrtl.ingest import INGEST_FILE
    from cxrtl.retrain import check_for_changes, run_fingerprint
    from cxrtl.store import open_store

    settings = {
        "sources": sources, "recipe": recipe, "image_size": image_size, "epochs": epochs,
        "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
    }
    dataset = json.loads((Path(raw.path) / INGEST_FILE).read_text())
    check = check_for_changes(open_store(store), run_fingerprint(dataset, settings), run_id, force)
    print(check.reason)
    return check.changed
