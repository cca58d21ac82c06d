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
    repeats: int,
    model: Output[Model],
):
    """Fine-tune ResNet50 from one weight source with one training seed; checkpoints each epoch to the store
    and resumes from them."""
    from pathlib import Path

    from cxrtl.settings import RunSettings
    from cxrtl.store import keys, open_store
    from cxrtl.train import config_for_data
    from cxrtl.train import train as train_model

    settings = RunSettings.from_pipeline(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed)
    config = config_for_data(Path(data.path), **settings.training_overrides())
    training_run = keys.training_run_id(run_id, seed, repeats)
    result = train_model(Path(data.path), source, Path(model.path), config, open_store(store), training_run)
    model.metadata.update(result.metadata.artifact_metadata())
