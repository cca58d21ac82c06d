"""Serve a model (the champion by default) behind KServe's model server: the open inference protocol (v2).

A request carries encoded images (PNG, JPEG or DICOM files, base64 in JSON) as one BYTES input; each is read
as ``cxrtl predict`` reads it (cxrtl.predict.read_image) and the answer holds each image's COVID probability
and the decision at the model's threshold, with the model's identity in the response's parameters. An image
that cannot be read fails the request with KServe's 400 and the image's index and why.

KServe's SDK is imported here only: ``cxrtl serve`` is the one command that needs it.
"""

from __future__ import annotations

import base64
import binascii
import logging

import kserve
from kserve import InferOutput, InferRequest, InferResponse
from kserve.errors import InvalidInput

from cxrtl import RESEARCH_ONLY
from cxrtl.data import decided
from cxrtl.errors import CxrtlError
from cxrtl.predict import PredictModel, ReadImage, batches_of, covid_probabilities, read_image, threshold_of
from cxrtl.train import load_model

logger = logging.getLogger(__name__)

INPUT = "image"  # one BYTES tensor of shape [n]: the files' bytes, base64-encoded
PROBABILITY_OUTPUT = "covid_probability"  # FP64 [n]
DECISION_OUTPUT = "decision"  # BYTES [n]: "COVID" or "Normal" at the model's threshold
FLAGS_OUTPUT = "flags"  # BYTES [n]: the plausibility rules each image breaks (cxrtl.predict), "; "-joined


class ChestXrayModel(kserve.Model):
    """One trained model (model.pt and model.json in ``model.folder``), loaded once, on ``device``."""

    def __init__(self, name: str, model: PredictModel, device: str = "auto") -> None:
        super().__init__(name)
        self.model = model
        self.device = device
        self.load()

    def load(self) -> bool:
        self.net, self.metadata = load_model(self.model.folder)
        self.threshold = threshold_of(self.metadata)
        self.ready = True
        return self.ready

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None, response_headers: dict | None = None
    ) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidInput("this server speaks the open inference protocol (v2): POST /v2/models/NAME/infer")
        images = [self._read(i, item) for i, item in enumerate(self._encoded(payload))]
        pixels = [image.pixels for image in images]
        probabilities = covid_probabilities(self.net, batches_of(self.metadata, pixels, self.device))
        decisions = [decided(p, self.threshold) for p in probabilities]
        return InferResponse(
            response_id=payload.id,
            model_name=self.name,
            infer_outputs=[
                InferOutput(PROBABILITY_OUTPUT, [len(images)], "FP64", data=[float(p) for p in probabilities]),
                InferOutput(DECISION_OUTPUT, [len(images)], "BYTES", data=decisions),
                InferOutput(FLAGS_OUTPUT, [len(images)], "BYTES", data=["; ".join(i.flags) for i in images]),
            ],
            parameters={
                "model": self.model.name,
                "model_sha256": self.model.sha256,
                "threshold": self.threshold,
                "note": RESEARCH_ONLY,
            },
        )

    @staticmethod
    def _encoded(payload: InferRequest) -> list:
        named = [i for i in payload.inputs if i.name == INPUT]
        if len(named) != 1 or named[0].datatype != "BYTES":
            raise InvalidInput(f"expected one BYTES input named {INPUT!r}: the images' files, base64-encoded")
        data = named[0].data
        if not data:
            raise InvalidInput(f"input {INPUT!r} holds no image")
        return data

    def _read(self, index: int, item: str | bytes) -> ReadImage:
        try:
            content = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise InvalidInput(f"{INPUT}[{index}]: not base64") from None
        try:
            return read_image(content, f"{INPUT}[{index}]", self.metadata.image_size)
        except CxrtlError as exc:
            raise InvalidInput(str(exc)) from None


def serve(model: PredictModel, name: str, http_port: int, device: str) -> None:
    """Answer on ``http_port`` until stopped (SIGTERM or Ctrl-C): REST only, one worker."""
    served = ChestXrayModel(name, model, device)
    logger.info("serving %s (sha256 %s) as %r on port %d", model.name, model.sha256[:12], name, http_port)
    kserve.ModelServer(http_port=http_port, enable_grpc=False, workers=1).start([served])
