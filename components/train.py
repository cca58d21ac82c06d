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
    model: Output[Model],
):
    """Fine-tune ResNet50 from one weight source with one training seed; checkpoints to the store and resumes
    from them.

    SIGTERM (a pre-empted pod) checkpoints after the step under way and exits non-zero, so KFP retries."""
    from pathlib import Path

    from cxrtl import signals
    from cxrtl.settings import RunSettings
    from cxrtl.store import keys, open_store
    from cxrtl.train import config_for_data
    from cxrtl.train import train as train_model

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
    config = config_for_data(Path(data.path), **settings.training_overrides())
    training_run = keys.training_run_id(run_id, seed, repeats)
    result = train_model(Path(data.path), source, Path(model.path), config, open_store(store), training_run)
    model.metadata.update(result.metadata.artifact_metadata())
