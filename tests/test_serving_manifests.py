"""manifests/serving: the InferenceService that runs `cxrtl serve`, checked offline.

kubernetes-validate has no schema for KServe's CRD, so its pod-spec part (the predictor: containers, volumes,
security context) is validated strictly as the Pod it becomes, and every other field against the KServe
SDK's own model of the resource (the SDK `cxrtl serve` runs on, pinned in pyproject.toml).
"""

from __future__ import annotations

import yaml
from kserve import V1beta1InferenceServiceSpec, V1beta1PredictorSpec, constants
from test_manifests import MANIFESTS, documents, render, validate

from components.images import CPU, image

SERVING = MANIFESTS / "serving"
# The predictor's fields that are KServe's own, not a pod spec's.
KSERVE_ONLY = {"minReplicas", "maxReplicas", "annotations", "labels"}


def rendered() -> dict:
    [isvc] = documents(render(SERVING))
    return isvc


def test_the_inference_service_has_only_fields_kserve_knows():
    isvc = rendered()
    assert (isvc["apiVersion"], isvc["kind"]) == (constants.KSERVE_V1BETA1, constants.KSERVE_KIND_INFERENCESERVICE)
    assert set(isvc["spec"]) <= set(V1beta1InferenceServiceSpec.attribute_map.values())
    assert set(isvc["spec"]["predictor"]) <= set(V1beta1PredictorSpec.attribute_map.values())


def test_the_predictor_is_a_valid_pod_spec_running_cxrtl_serve_on_kserves_port():
    predictor = rendered()["spec"]["predictor"]
    pod_spec = {k: v for k, v in predictor.items() if k not in KSERVE_ONLY}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cxrtl-predictor"}, "spec": pod_spec}
    assert validate(yaml.safe_dump(pod)) == []
    [container] = pod_spec["containers"]
    assert container["command"][:2] == ["cxrtl", "serve"]
    port = container["command"][container["command"].index("--http-port") + 1]
    assert container["ports"] == [{"containerPort": int(port), "protocol": "TCP"}]


def test_the_serving_image_is_the_one_the_base_names():
    [container] = rendered()["spec"]["predictor"]["containers"]
    assert container["image"] == image(CPU)
