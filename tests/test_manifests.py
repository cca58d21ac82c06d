"""The Kubernetes manifests: every overlay renders with kustomize and passes kubernetes-validate --strict,
the check fails on the mistakes it is there for, and the rendered objects keep the properties the
pipeline relies on (namespaces, names, keys, non-root pods, no secret values, GPU settings, images).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from refusal import one_error_line

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
OVERLAYS = sorted(p for p in (MANIFESTS / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
# Pinned, so that a newer kubernetes-validate (or its default version) cannot change the verdict: the
# oldest Kubernetes the README asks for and a recent one. Its schemas ship in the package: no network.
KUBERNETES_VERSIONS = ("1.29.0", "1.35.0")

STORAGE_NAMESPACE = "cxrtl"
SECRET_KEYS = {
    "cxrtl-minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"},
    "cxrtl-kaggle": {"KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"},
}
# What the namespace the pipeline runs in may read: the restricted user, never MinIO's root.
PIPELINE_SECRET_KEYS = {"MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"}
SECRET_LIKE = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|^KEY$|CREDENTIAL", re.IGNORECASE)
TAINT_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}
KFP_ARTIFACTS_OPT_IN = MANIFESTS / "components" / "kfp-artifacts-in-minio"
KFP_ARTIFACTS_BUCKET = re.search(
    r"defaultPipelineRoot=minio://([a-z0-9.-]+)/", (KFP_ARTIFACTS_OPT_IN / "kustomization.yaml").read_text()
).group(1)


def render(kustomization_dir: Path) -> str:
    result = subprocess.run([KUBECTL, "kustomize", str(kustomization_dir)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"kubectl kustomize {kustomization_dir} failed:\n{result.stderr}"
    return result.stdout


def validate(manifest_yaml: str) -> list[str]:
    """What kubernetes-validate --strict reports about the YAML documents, one problem a line.

    A resource it has no schema for only draws a WARN and exit 0 from it; here that is a problem too,
    since every kind we render is built in: a CRD kind or a misspelt kind or apiVersion must not pass.
    """
    problems = []
    # One run per version: it reads standard input once.
    for version in KUBERNETES_VERSIONS:
        result = subprocess.run(
            [str(KUBERNETES_VALIDATE), "--strict", "--quiet", "-k", version, "-"],
            input=manifest_yaml,
            capture_output=True,
            text=True,
            check=False,
        )
        # --quiet leaves only the WARN, ERROR and FATAL lines.
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        if result.returncode != 0 and not lines:
            lines.append(f"kubernetes-validate -k {version} exited {result.returncode} without a message")
        problems += lines
    return problems


def documents(manifest_yaml: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(manifest_yaml) if doc]


def find(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_specs(docs: list[dict]) -> list[tuple[str, str, dict]]:
    """(kind/name, namespace, pod spec) of every workload."""
    specs = []
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"):
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            specs.append((where, doc["metadata"]["namespace"], spec["template"]["spec"]))
    return specs


def deploys_minio(overlay: Path) -> bool:
    components = yaml.safe_load((overlay / "kustomization.yaml").read_text()).get("components", [])
    return any(Path(c).name == "minio" for c in components)


MINIO_OVERLAYS = [p for p in OVERLAYS if deploys_minio(p)]


def pipelines_namespace(overlay: Path) -> str:
    """The namespace KFP runs the pipeline in, as the overlay sets it (its pipelines/kustomization.yaml)."""
    return yaml.safe_load((overlay / "pipelines" / "kustomization.yaml").read_text())["namespace"]


@pytest.fixture(scope="module", params=OVERLAYS, ids=[p.name for p in OVERLAYS])
def overlay(request) -> tuple[Path, str, list[dict]]:
    rendered = render(request.param)
    return request.param, rendered, documents(rendered)


def test_there_are_the_overlays_the_readme_names():
    assert {"dev", "gpu-cloud", "external-minio"} <= {p.name for p in OVERLAYS}


@pytest.mark.slow
def test_overlay_renders_and_passes_strict_validation(overlay):
    _, rendered, docs = overlay
    assert docs, "the overlay rendered no objects"
    assert validate(rendered) == []


def test_validation_rejects_an_unknown_field_in_a_rendered_overlay(tmp_path):
    # The same render-then-validate path as above, on the dev overlay with one misspelt field added.
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                # kustomize takes no absolute path here.
                "resources": [os.path.relpath(MANIFESTS / "overlays" / "dev", tmp_path)],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "cxrtl-minio"},
                        "patch": '[{"op": "add", "path": "/spec/template/spec/containers/0/imagePullPolicyy",'
                        ' "value": "Always"}]',
                    }
                ],
            }
        )
    )
    problems = validate(render(tmp_path))
    assert len(problems) == len(KUBERNETES_VERSIONS)
    assert all("deployment/cxrtl-minio" in p and "imagePullPolicyy" in p for p in problems), problems


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        pytest.param(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicaz: 1\n"
            "  selector: {matchLabels: {a: b}}\n"
            "  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i:1}]}}\n",
            "replicaz",
            id="unknown-field",
        ),
        pytest.param(
            "apiVersion: kubeflow.org/v1\nkind: Profile\nmetadata: {name: p}\nspec: {}\n",
            "Profile",
            id="crd-kind",
        ),
        pytest.param("apiVersion: v1\nkind: ConfigMapp\nmetadata: {name: c}\n", "ConfigMapp", id="unknown-kind"),
        pytest.param(
            "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata: {name: c}\nspec: {}\n",
            "batch/v1beta1",
            id="removed-api-version",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: nine}]}\n",
            "nine",
            id="wrong-type",
        ),
    ],
)
def test_validation_rejects_broken_manifests(manifest, expected):
    problems = validate(manifest)
    assert problems, f"{expected!r} passed validation"
    assert any(expected in p for p in problems), problems


def test_no_secret_objects_and_no_literal_credentials(overlay):
    _, rendered, docs = overlay
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created by hand, never rendered"
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert not [k for k in doc.get("data", {}) if SECRET_LIKE.search(k)], doc["metadata"]["name"]
    for where, _, spec in pod_specs(docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            for env in container.get("env", []):
                if SECRET_LIKE.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{where}: {env['name']} is not from a Secret"
    for name, keys in SECRET_KEYS.items():
        for key in keys:
            assert not re.search(rf"^\s*{key}\s*[:=]\s*\S", rendered, re.MULTILINE), f"a value for {name}.{key}"


def test_secret_references_use_the_documented_names_and_keys(overlay):
    path, _, docs = overlay
    for where, namespace, spec in pod_specs(docs):
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in SECRET_KEYS[ref["name"]], f"{where}: {ref}"
                    if namespace == pipelines_namespace(path):
                        assert ref["key"] in PIPELINE_SECRET_KEYS, f"{where} reads {ref['key']}"


def test_namespaces(overlay):
    path, _, docs = overlay
    pipelines = pipelines_namespace(path)
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "cxrtl", doc["metadata"]["name"]
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == STORAGE_NAMESPACE, "only our own namespace is created"
            assert doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
            continue
        expected = STORAGE_NAMESPACE if labels["app.kubernetes.io/component"] == "storage" else pipelines
        assert doc["metadata"].get("namespace") == expected, f"{doc['kind']}/{doc['metadata']['name']}"
    binding = find(docs, "RoleBinding", "cxrtl-submitter")
    assert [s["namespace"] for s in binding["subjects"]] == [pipelines]


def test_jobs_opt_out_of_istio_sidecars(overlay):
    # In an Istio-injected (Kubeflow profile) namespace a Job's pod with a sidecar never completes.
    _, _, docs = overlay
    jobs = [d for d in docs if d["kind"] in ("Job", "CronJob")]
    assert jobs
    for doc in jobs:
        spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        annotations = spec["template"]["metadata"].get("annotations", {})
        assert annotations.get("sidecar.istio.io/inject") == "false", f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("manifests/secrets/cxrtl-minio.env", True),
        ("manifests/secrets/cxrtl-kaggle.env", True),
        ("manifests/secrets/cxrtl-minio.env.example", False),
        ("manifests/base/cxrtl.env", False),  # settings, not secrets
        ("manifests/overlays/gpu-cloud/pipelines/gpu.env", False),
    ],
)
def test_filled_in_secret_files_stay_out_of_git(path: str, ignored: bool):
    # --no-index: the rules alone decide, whether or not such a file exists or is tracked.
    check = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False)
    assert check.returncode == (0 if ignored else 1), f"{path}: git check-ignore exited {check.returncode}"
    tracked = subprocess.run(
        ["git", "ls-files", "manifests/secrets/"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked and all(name.endswith(".env.example") for name in tracked), tracked


def test_least_privilege_rbac(overlay):
    _, _, docs = overlay
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = find(docs, "Role", "cxrtl-submitter")
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["pipelines.kubeflow.org"]
        assert "*" not in rule["resources"] + rule["verbs"]
    for doc in docs:
        if doc["kind"] == "ServiceAccount":
            assert doc["automountServiceAccountToken"] is False, doc["metadata"]["name"]


def test_pods_run_as_non_root_with_limits(overlay):
    _, _, docs = overlay
    specs = pod_specs(docs)
    assert specs
    for where, _, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        assert spec.get("serviceAccountName", "default") != "default", where
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert security["readOnlyRootFilesystem"] is True, where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "memory" in container["resources"]["limits"], where


def test_overlays_leave_kfp_launcher_to_kfp(overlay):
    # KFP's manifests (and, in multi-user KFP, its profile controller) own kfp-launcher: by default KFP's
    # artifacts stay in KFP's object store, where its UI reads them.
    _, _, docs = overlay
    assert not [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kfp-launcher"]


def render_with_kfp_artifacts_opt_in(tmp_path: Path, overlay: Path) -> list[dict]:
    """The overlay's pipelines part with the opt-in component added, as the README says to add it."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "namespace": pipelines_namespace(overlay),
                "resources": [os.path.relpath(overlay / "pipelines", tmp_path)],
                "components": [os.path.relpath(KFP_ARTIFACTS_OPT_IN, tmp_path)],
            }
        )
    )
    rendered = render(tmp_path)
    assert validate(rendered) == []
    return documents(rendered)


def test_the_opt_in_points_kfp_artifacts_at_the_store_server(tmp_path: Path):
    dev = MANIFESTS / "overlays" / "dev"
    docs = render_with_kfp_artifacts_opt_in(tmp_path, dev)
    launcher = find(docs, "ConfigMap", "kfp-launcher")
    config = find(docs, "ConfigMap", "cxrtl-config")["data"]
    assert launcher["metadata"]["namespace"] == pipelines_namespace(dev)
    assert launcher["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cxrtl"
    root = re.fullmatch(r"minio://([a-z0-9.-]+)/(\S+)", launcher["data"]["defaultPipelineRoot"])
    assert root, launcher["data"]["defaultPipelineRoot"]
    assert root.group(1) == KFP_ARTIFACTS_BUCKET
    provider = yaml.safe_load(launcher["data"]["providers"])["minio"]["default"]
    assert provider["endpoint"] == config["MINIO_ENDPOINT"], "kfp-launcher and cxrtl-config disagree"
    assert provider["disableSSL"] is (config["MINIO_SECURE"] == "false")
    assert provider["credentials"] == {
        "fromEnv": False,
        "secretRef": {
            "secretName": "cxrtl-minio",
            "accessKeyKey": "MINIO_ACCESS_KEY",
            "secretKeyKey": "MINIO_SECRET_KEY",
        },
    }


def test_the_store_url_is_an_s3_bucket(overlay):
    _, _, docs = overlay
    config = find(docs, "ConfigMap", "cxrtl-config")["data"]
    assert re.fullmatch(r"s3://[a-z0-9.-]+(/\S*)?", config["CXRTL_STORE"]), config["CXRTL_STORE"]


@pytest.mark.parametrize("path", MINIO_OVERLAYS, ids=[p.name for p in MINIO_OVERLAYS])
def test_deployed_minio_serves_the_configured_endpoint_and_buckets(path):
    docs = documents(render(path))
    find(docs, "Deployment", "cxrtl-minio")
    config = find(docs, "ConfigMap", "cxrtl-config")["data"]
    service = find(docs, "Service", "cxrtl-minio")
    s3_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "s3")
    assert config["MINIO_ENDPOINT"] == f"cxrtl-minio.{STORAGE_NAMESPACE}.svc.cluster.local:{s3_port}"

    job = find(docs, "Job", "cxrtl-bucket-init")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MINIO_URL"] == f"http://{config['MINIO_ENDPOINT']}"
    store_bucket = config["CXRTL_STORE"].removeprefix("s3://").split("/")[0]
    # The opt-in's bucket is made here too, so that opting in is one line in an overlay.
    root_bucket = KFP_ARTIFACTS_BUCKET
    assert set(env["BUCKETS"].split()) == {store_bucket, root_bucket}

    scripts = find(docs, "ConfigMap", "cxrtl-bucket-init")["data"]
    granted = {r for s in json.loads(scripts["policy.json"])["Statement"] for r in s["Resource"]}
    for bucket in (store_bucket, root_bucket):
        assert {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"} <= granted
    assert not [r for r in granted if "*" in r.removesuffix("/*")], "the policy reaches beyond our buckets"
    syntax = subprocess.run(["sh", "-n"], input=scripts["init.sh"], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr


def test_external_minio_overlay_deploys_no_minio():
    assert set(OVERLAYS) - set(MINIO_OVERLAYS) == {MANIFESTS / "overlays" / "external-minio"}
    docs = documents(render(MANIFESTS / "overlays" / "external-minio"))
    assert not [d for d in docs if d["metadata"].get("namespace") == STORAGE_NAMESPACE or d["kind"] == "Namespace"]
    endpoint = find(docs, "ConfigMap", "cxrtl-config")["data"]["MINIO_ENDPOINT"]
    assert not endpoint.startswith("cxrtl-minio."), "it must name the existing server"


def test_gpu_settings(overlay):
    path, _, docs = overlay
    gpu = find(docs, "ConfigMap", "cxrtl-gpu")["data"]
    assert gpu["GPU_RESOURCE"] == "nvidia.com/gpu"
    selectors = [s for s in gpu["GPU_NODE_SELECTOR"].split(",") if s]
    tolerations = [t for t in gpu["GPU_TOLERATIONS"].split(",") if t]
    for selector in selectors:
        assert re.fullmatch(r"[\w./-]+=[\w.-]*", selector), selector
    for toleration in tolerations:
        assert re.fullmatch(r"[\w./-]+(=[\w.-]+)?:(\w+)", toleration), toleration
        assert toleration.rsplit(":", 1)[1] in TAINT_EFFECTS, toleration
    if path.name == "gpu-cloud":
        assert selectors and tolerations, "the GPU overlay must select and tolerate its GPU nodes"
    if path.name == "dev":
        assert not selectors and not tolerations, "a single-node cluster has no GPU pool to select"


def test_gpu_overlay_uses_a_profile_namespace_and_a_bigger_volume():
    dev = documents(render(MANIFESTS / "overlays" / "dev"))
    cloud = documents(render(MANIFESTS / "overlays" / "gpu-cloud"))

    def size(docs: list[dict]) -> float:
        claim = find(docs, "PersistentVolumeClaim", "cxrtl-minio-data")["spec"]["resources"]["requests"]["storage"]
        return float(claim.removesuffix("Gi"))

    assert size(cloud) > size(dev)
    assert find(cloud, "PersistentVolumeClaim", "cxrtl-minio-data")["spec"]["storageClassName"]
    assert pipelines_namespace(MANIFESTS / "overlays" / "gpu-cloud") != "kubeflow"


def test_manifests_and_pipeline_read_the_same_image_names(overlay, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from components.images import CPU, image

    _, _, docs = overlay
    fetch = find(docs, "CronJob", "cxrtl-fetch-weights")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert fetch["containers"][0]["image"] == image(CPU)


def test_images_module_reads_the_kustomization(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from components.images import CPU, KUSTOMIZATION, TRAIN, image

    block = {e["name"]: e for e in yaml.safe_load(KUSTOMIZATION.read_text())["images"]}
    for name in (TRAIN, CPU):
        assert image(name) == f"{block[name]['newName']}:{block[name]['newTag']}"
    cli = subprocess.run(
        [sys.executable, "-m", "components.images", TRAIN], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert (cli.returncode, cli.stdout.strip()) == (0, image(TRAIN))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("images:\n  - name: cxrtl-cpu\n    newName: r/cxrtl-cpu\n", "neither newTag nor digest"),
        ("resources: []\n", "images: must be a list"),
        ("images: [\n", "cannot read"),
    ],
)
def test_images_module_rejects_unpinned_or_missing_images(tmp_path, monkeypatch, text, message):
    monkeypatch.syspath_prepend(str(ROOT))
    from components.images import images
    from cxrtl.errors import CxrtlError

    kustomization = tmp_path / "kustomization.yaml"
    kustomization.write_text(text)
    with pytest.raises(CxrtlError, match=message):
        images(kustomization)


def test_images_module_names_the_file_for_an_unknown_image(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    cli = subprocess.run(
        [sys.executable, "-m", "components.images", "cxrtl-gpu"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    one_error_line(cli.returncode, cli.stderr, "images: error: ", naming=["kustomization.yaml", "'cxrtl-gpu'"])


def test_secret_templates_hold_the_keys_the_pipeline_reads(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import pipeline

    for name, keys in SECRET_KEYS.items():
        template = (MANIFESTS / "secrets" / f"{name}.env.example").read_text()
        named = set(re.findall(r"^#?\s*([A-Z_]+)=", template, re.MULTILINE))
        assert named == keys, name
    assert set(pipeline.KAGGLE_SECRET_KEYS) == SECRET_KEYS["cxrtl-kaggle"]


def test_pipeline_defaults_name_what_the_manifests_create(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import pipeline

    docs = documents(render(MANIFESTS / "base"))
    config = find(docs, "ConfigMap", pipeline.ClusterOptions.config_map)["data"]
    gpu = find(docs, "ConfigMap", "cxrtl-gpu")["data"]
    assert config["CXRTL_STORE"] == pipeline.DEFAULT_STORE
    assert pipeline.ClusterOptions.gpu_resource == gpu["GPU_RESOURCE"]
    assert {pipeline.ClusterOptions.minio_secret, pipeline.ClusterOptions.kaggle_secret} == set(SECRET_KEYS)
