from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def preprocess(
    raw: Input[Dataset], recipe: str, image_size: int, seed: int, store: str, run_id: str, data: Output[Dataset]
):
    """COVID vs Normal, decoded and resized once into arrays, with the recipe's seeded stratified split. ``raw``
    and ``data`` name files in the store (cxrtl.artifacts): the ingested archive, the arrays."""
    import tempfile
    from pathlib import Path

    from cxrtl import artifacts
    from cxrtl.ingest import fetch_ingested
    from cxrtl.preprocess import preprocess as preprocess_dataset
    from cxrtl.store import keys, open_store

    kept = open_store(store)
    with tempfile.TemporaryDirectory(prefix="cxrtl-preprocess-") as tmp:
        raw_dir = fetch_ingested(kept, artifacts.StoredFolder.read(Path(raw.path)), Path(tmp) / "raw")
        prepared_dir = Path(tmp) / "data"
        prepared = preprocess_dataset(raw_dir, prepared_dir, recipe=recipe, image_size=image_size, seed=seed)
        ref = artifacts.publish(kept, prepared_dir, keys.prepared_prefix(run_id))
    ref.write(Path(data.path))
    data.metadata.update({"recipe": recipe, "image_size": image_size, "images": len(prepared.ids), **ref.metadata()})
