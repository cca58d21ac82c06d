from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def preprocess(raw: Input[Dataset], recipe: str, image_size: int, seed: int, data: Output[Dataset]):
    """COVID vs Normal, decoded and resized once into arrays, with the recipe's seeded stratified split."""
    from pathlib import Path

    from cxrtl.preprocess import preprocess as preprocess_dataset

    prepared = preprocess_dataset(Path(raw.path), Path(data.path), recipe=recipe, image_size=image_size, seed=seed)
    data.metadata.update({"recipe": recipe, "image_size": image_size, "images": len(prepared.ids)})
