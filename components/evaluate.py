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
    """Test-split metrics, predictions.csv and ROC of one trained model, shown in the KFP UI; ``masked`` adds
    an evaluation with the lungs blacked out."""
    import math
    from pathlib import Path

    from cxrtl.data import CLASS_NAMES
    from cxrtl.evaluate import evaluate as evaluate_model
    from cxrtl.store import open_store

    evaluation = evaluate_model(
        Path(data.path), Path(model.path), Path(results.path), store=open_store(store), masked=masked
    )
    for name, value in evaluation.metrics.items():
        if math.isfinite(value):
            metrics.log_metric(name, value)
    c = evaluation.result.confusion
    classification.log_confusion_matrix(list(CLASS_NAMES), [[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    if evaluation.roc["fpr"]:
        classification.log_roc_curve(evaluation.roc["fpr"], evaluation.roc["tpr"], evaluation.roc["thresholds"])
    results.metadata["source"] = evaluation.result.model.source
