from kfp import dsl
from kfp.dsl import HTML, Dataset, Output

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def predict(images: str, store: str, run_id: str, predictions: Output[Dataset], page: Output[HTML]) -> str:
    """The champion's COVID probability for every image under ``images`` (an s3:// prefix): predictions.csv and
    predictions.html, kept in the store under predictions/RUN_ID/, the page shown in the KFP UI. Returns how
    many were predicted and refused; each refusal is a line of the log."""
    import shutil
    import tempfile
    from pathlib import Path

    from cxrtl import signals
    from cxrtl.predict import PAGE_FILE, PREDICTIONS_FILE, champion_model, predict_images
    from cxrtl.store import keys, open_store

    signals.install()
    target = open_store(store)
    out = Path(predictions.path)
    with tempfile.TemporaryDirectory(prefix="cxrtl-predict-") as tmp:
        model = champion_model(target, Path(tmp))
        result = predict_images(model, [images], out)
    for name in (PREDICTIONS_FILE, PAGE_FILE):
        target.put_file(keys.predictions_key(run_id, name), out / name)
    shutil.copyfile(out / PAGE_FILE, page.path)
    for line in result.refused:
        print(f"refused {line}")
    predictions.metadata.update({"model": model.name, "model_sha256": model.sha256})
    return f"{len(result.predictions)} image(s) predicted with {model.name}, {len(result.refused)} refused"
