from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def evaluate(
    data: Input[Dataset],
    model: Input[Model],
    store: str,
    masked: bool,
    results: Output[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
):
    """Test-split metrics, predictions.csv, ROC and Grad-CAM of one trained model; every scalar of metrics.json,
    the confusion matrix and the ROC curve shown in the KFP UI; ``masked`` adds an evaluation with the lungs
    blacked out. A training that failed is handed on as it came (cxrtl.failures)."""
    import tempfile
    from pathlib import Path

    from cxrtl import artifacts, signals
    from cxrtl.evaluate import evaluate as evaluate_model
    from cxrtl.failures import read_failure, write_failure
    from cxrtl.store import open_store
    from cxrtl.ui_outputs import ui_outputs

    signals.install()  # SIGTERM takes Ctrl-C's clean-up: no upload parts or temporary files left

    failure = read_failure(Path(model.path))
    if failure is not None:
        write_failure(Path(results.path), failure)
        results.metadata.update({"source": failure.source, "failed": failure.error})
        print(f"{failure.label()}: not evaluated, its training failed: {failure.error}")
        return
    target = open_store(store)
    with tempfile.TemporaryDirectory(prefix="cxrtl-evaluate-") as tmp:
        data_dir = artifacts.fetch(target, artifacts.StoredFolder.read(Path(data.path)), Path(tmp) / "data")
        model_dir = artifacts.fetch(target, artifacts.StoredFolder.read(Path(model.path)), Path(tmp) / "model")
        evaluation = evaluate_model(data_dir, model_dir, Path(results.path), store=target, masked=masked)
    ui = ui_outputs(Path(results.path))
    for name, value in ui.scalars.items():
        metrics.log_metric(name, value)
    classification.log_confusion_matrix(ui.classes, ui.confusion)
    if ui.roc["fpr"]:
        classification.log_roc_curve(ui.roc["fpr"], ui.roc["tpr"], ui.roc["thresholds"])
    results.metadata["source"] = evaluation.result.model.source
