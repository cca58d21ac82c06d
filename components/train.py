from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import TRAIN, image


@dsl.component(base_image=image(TRAIN), install_kfp_package=False)
def train(
    data: Input[Dataset],
    source: str,
    store: str,
    run_id: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    precision: str,
    channels_last: bool,
    cudnn_benchmark: bool,
    compile: bool,
    data_on_device: bool,
    checkpoint_minutes: float,
    keep_checkpoints: int,
    repeats: int,
    force: bool,
    model: Output[Model],
    device: str = "auto",
):
    """Fine-tune ResNet50 from one weight source with one training seed; checkpoints to the store and resumes
    from them, or from another run's with the same data, weights and settings (``force``: only from its own,
    a retry's). ``model``: the model's key in the store (cxrtl.artifacts), or the training's failure.
    ``device``: "cuda" where the task is placed on a GPU node, so that a missing GPU fails the training at
    once (cxrtl.device) instead of training on the node's CPU.

    SIGTERM (a pre-empted pod) checkpoints after the step under way and exits non-zero, so KFP retries. Any
    other failure of the training is recorded and the task ends successfully, so that the run goes on with
    the other sources and fails at its end, naming this one (cxrtl.failures)."""
    import tempfile
    from pathlib import Path

    from cxrtl import artifacts, signals
    from cxrtl.device import require_compiler
    from cxrtl.engine import resolve_device
    from cxrtl.errors import CxrtlError
    from cxrtl.failures import TrainingFailure, clear_failure, record_failure, write_failure
    from cxrtl.settings import RunSettings
    from cxrtl.store import keys, open_store
    from cxrtl.train import config_for_data
    from cxrtl.train import train as train_model

    def fail(exc: Exception) -> None:
        failure = TrainingFailure.of(source, seed, training_run, exc)
        record_failure(target, failure)
        write_failure(Path(model.path), failure)
        model.metadata.update({"source": source, "seed": seed, "failed": failure.error})

    signals.install()
    settings = RunSettings.from_pipeline(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        precision=precision,
        channels_last=channels_last,
        cudnn_benchmark=cudnn_benchmark,
        compile=compile,
        data_on_device=data_on_device,
        checkpoint_minutes=checkpoint_minutes,
        keep_checkpoints=keep_checkpoints,
    )
    target = open_store(store)
    training_run = keys.training_run_id(run_id, seed, repeats)
    try:  # before fetching the data
        resolved = resolve_device(device)
        if settings.compile:
            require_compiler(resolved)
    except CxrtlError as exc:
        fail(exc)
        return
    with tempfile.TemporaryDirectory(prefix="cxrtl-train-") as tmp:
        data_dir = artifacts.fetch(target, artifacts.StoredFolder.read(Path(data.path)), Path(tmp) / "data")
        config = config_for_data(data_dir, device=device, **settings.training_overrides())
        try:
            train_model(data_dir, source, Path(tmp) / "model", config, target, training_run, fresh=force)
        except signals.Terminated:
            raise
        except Exception as exc:  # this source's failure, not the run's
            fail(exc)
            return
        clear_failure(target, training_run, source)
        # train published the model's files under this prefix; the artifact names them.
        ref = artifacts.describe(Path(tmp) / "model", keys.model_prefix(source, training_run))
    ref.write(Path(model.path))
    model.metadata.update({"source": source, "seed": seed, **ref.metadata()})
