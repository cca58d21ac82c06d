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
    blacked out."""
    from pathlib import Path

    from cxrtl import signals
    from cxrtl.evaluate import evaluate as evaluate_model
    from cxrtl.store import open_store
    from cxrtl.ui_outputs import ui_outputs

    signals.install()  # SIGTERM takes Ctrl-C's clean-up: no upload parts or temporary files left

    evaluation = evaluate_model(
        Path(data.path), Path(model.path), Path(results.path), store=open_store(store), masked=masked
    )
    ui = ui_outputs(Path(results.path))
    for name, value in ui.scalars.items():
        metrics.log_metric(name, value)
    classification.log_confusion_matrix(ui.classes, ui.confusion)
    if ui.roc["fpr"]:
        classification.log_roc_curve(ui.roc["fpr"], ui.roc["tpr"], ui.roc["thresholds"])
    results.metadata["source"] = evaluation.result.model.source
