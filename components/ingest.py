from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def ingest(source: str, store: str, raw: Output[Dataset]) -> str:
    """Fetch the COVID-19 Radiography Database (Kaggle, a zip or a folder), check it, cache it in the store.

    ``raw`` names the cached archive in the store (cxrtl.artifacts), so that KFP's own store does not receive
    the dataset. Returns the dataset's record (version, sha256, counts) as JSON, so that later steps can read it
    without downloading the dataset.
    """
    import json
    import tempfile
    from pathlib import Path

    from cxrtl import signals
    from cxrtl.ingest import ingest as ingest_dataset
    from cxrtl.ingest import stored_reference
    from cxrtl.store import open_store

    signals.install()  # SIGTERM takes Ctrl-C's clean-up: no upload parts or temporary files left

    kept = open_store(store)
    with tempfile.TemporaryDirectory(prefix="cxrtl-ingest-") as tmp:
        result = ingest_dataset(source, Path(tmp) / "raw", store=kept)
    ref = stored_reference(kept, result)
    ref.write(Path(raw.path))
    raw.metadata.update({**ref.metadata(), **result.to_dict()})
    return json.dumps(result.to_dict(), sort_keys=True)
