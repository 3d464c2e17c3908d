"""Static checks of the deployment configurations in cluster/ (fast; no cluster is started)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.mark.parametrize("path", sorted(CLUSTER.rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_parses(path):
    assert _docs(path), f"{path} is empty"


def test_ray_up_config_is_valid_for_the_installed_ray():
    ray = pytest.importorskip("ray")
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = _docs(CLUSTER / "ray-up" / "gpu-cluster.yaml")[0]
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(cfg, schema)
    validate_config(prepare_config(cfg))
    assert cfg["provider"]["type"] == "aws"
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"] == {"CPU": 0}
    assert any("InstanceType" in t["node_config"] and t["node_config"]["InstanceType"].startswith(("g", "p"))
               for t in cfg["available_node_types"].values())
    start = " ".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert start.count("RAY_AUTH_MODE=token") == 2 and start.count("cluster.env") == 2
    assert "--dashboard-host=127.0.0.1" in start
    assert any("pip install" in c and "seedlab" in c for c in cfg["setup_commands"])


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _check_ray_cluster_spec(spec: dict) -> None:
    assert spec["authOptions"]["mode"] == "token"
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        for c in _containers(group["template"]):
            refs = {e.get("secretRef", {}).get("name") for e in c.get("envFrom", [])}
            assert "seedlab-mlflow" in refs, f"{c['name']} does not get the MLflow credentials Secret"
            for env in c.get("env", []):
                assert not (env["name"].endswith(("PASSWORD", "TOKEN")) and "value" in env), env
    gpu = [g for g in spec["workerGroupSpecs"]
           if any("nvidia.com/gpu" in c["resources"]["limits"] for c in _containers(g["template"]))]
    assert gpu, "no GPU worker group"


def test_kuberay_raycluster_and_rayjob():
    cluster = [d for d in _docs(CLUSTER / "kuberay" / "raycluster.yaml") if d["kind"] == "RayCluster"][0]
    _check_ray_cluster_spec(cluster["spec"])
    job = _docs(CLUSTER / "kuberay" / "rayjob.yaml")[0]
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["entrypoint"] == "python sweeps/bert_sizes.py --profile paper"
    assert (REPO / "sweeps" / "bert_sizes.py").exists()
    assert '"paper"' in (REPO / "sweeps" / "bert_sizes.py").read_text()
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert not any(k.startswith("MLFLOW_") for k in runtime_env.get("env_vars", {})), "no secrets in runtime_env"
    _check_ray_cluster_spec(job["spec"]["rayClusterSpec"])


def test_mlflow_deployments_keep_secrets_out_and_bind_safely():
    compose = _docs(CLUSTER / "mlflow" / "docker-compose.yaml")[0]
    services = compose["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert published == {"mlflow": ["127.0.0.1:5000:5000"]}
    assert compose["networks"]["backend"]["internal"] is True
    for name, svc in services.items():
        for key, val in (svc.get("environment") or {}).items():
            assert not (key.endswith(("PASSWORD", "SECRET_KEY", "SECRET_ACCESS_KEY")) and "FILE" not in key), key
    k8s = _docs(CLUSTER / "mlflow" / "kubernetes.yaml")
    kinds = {d["kind"] for d in k8s}
    assert {"Deployment", "StatefulSet", "Service", "NetworkPolicy"} <= kinds and "Secret" not in kinds
    for svc in (d for d in k8s if d["kind"] == "Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    deploy = next(d for d in k8s if d["kind"] == "Deployment")
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "mlflow.mlflow.svc.cluster.local:5000" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"]


def test_shell_scripts_parse():
    scripts = sorted(CLUSTER.rglob("*.sh"))
    assert scripts
    for script in scripts:
        shell = "sh" if script.read_text().startswith("#!/bin/sh") else "bash"
        subprocess.run([shell, "-n", str(script)], check=True)
        if script.name != "_common.sh":
            assert os.access(script, os.X_OK), f"{script} is not executable"
