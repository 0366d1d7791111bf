"""The files under cluster/ are valid for the tools that read them (no cloud needed).

The launcher YAMLs go through Ray's own ``prepare_config`` + ``validate_config`` (what
``ray up`` does before touching a provider); the runtime env through ``RuntimeEnv``; the
KubeRay manifests are checked for what a user would otherwise find out at deploy time: the
Ray version, token auth, and an entrypoint whose pipeline file exists and is a valid config.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import ray
import yaml

from clul_ray.config import PipelineConfig

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
REPO = CLUSTER.parent


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


@pytest.mark.parametrize("name", ["aws.yaml", "local.yaml"])
def test_launcher_yaml_passes_ray_validation(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(load(name))
    validate_config(cfg)
    assert cfg["provider"]["type"] == {"aws.yaml": "aws", "local.yaml": "local"}[name]
    cmds = " ".join(cfg.get("setup_commands", []) + cfg.get("head_setup_commands", []))
    assert "clul" in cmds  # the project is installed on the nodes


def test_runtime_env_is_a_valid_ray_runtime_env():
    from ray.runtime_env import RuntimeEnv

    env = RuntimeEnv(**load("runtime_env.yaml"))
    assert env["working_dir"] == "."
    # pip runs in its own folder: only the agent's placeholder names the uploaded tree
    assert env["pip"]["packages"] == ["${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"]
    assert env["env_vars"]["RAY_USAGE_STATS_ENABLED"] == "0"


def _cluster_spec(doc: dict) -> dict:
    return {"RayJob": lambda: doc["spec"]["rayClusterSpec"],
            "RayService": lambda: doc["spec"]["rayClusterConfig"]}.get(
        doc["kind"], lambda: doc["spec"])()


@pytest.mark.parametrize("name", ["kuberay-raycluster.yaml", "kuberay-rayjob.yaml",
                                  "kuberay-rayservice.yaml", "kuberay-rayjob-sweep.yaml"])
def test_kuberay_manifests(name):
    doc = load(name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in ("RayCluster", "RayJob",
                                                                 "RayService")
    spec = _cluster_spec(doc)
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"] == {"mode": "token"}
    pods = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
    for group in pods:
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"]
    head_env = {e["name"]: e.get("value") for e in
                spec["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert head_env["MLFLOW_TRACKING_URI"].startswith("http")  # lineage via a server


def test_rayjob_entrypoint_runs_a_pipeline_from_pipelines():
    doc = load("kuberay-rayjob.yaml")
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:2] == ["clul-ray", "train"]
    config = argv[argv.index("--config") + 1]
    assert config.startswith("pipelines/")
    PipelineConfig.from_yaml(REPO / config)  # exists and validates
    root = argv[argv.index("--root") + 1]
    assert "://" in root  # object storage: every pod sees it


def test_rayservice_serves_the_deletion_service_from_object_storage():
    """The RayService's serveConfigV2 is a valid Serve config whose import path builds the
    service: a writer and the configured number of prediction replicas over an
    object-storage root; a config without a root is refused in one line."""
    from ray.serve.schema import ServeDeploySchema

    from clul_ray.errors import ClulError
    from clul_ray.serve.app import APP_NAME, build

    config = ServeDeploySchema(**yaml.safe_load(load("kuberay-rayservice.yaml")["spec"][
        "serveConfigV2"]))
    (app,) = config.applications
    assert app.import_path == "clul_ray.serve.app:build" and app.name == APP_NAME
    assert "://" in app.args["root"] and app.args["replicas"] >= 2
    built = build(app.args)
    assert built._bound_deployment.name == "Reader"
    assert built._bound_deployment.num_replicas == app.args["replicas"]
    with pytest.raises(ClulError, match="must name the root"):
        build({"replicas": 2})


def test_sweep_rayjob_entrypoint_is_a_tune_command_to_object_storage():
    import typer

    from clul_ray.cli.tune import tune

    doc = load("kuberay-rayjob-sweep.yaml")
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:2] == ["clul-ray", "tune"]
    app = typer.Typer()
    app.command()(tune)
    cmd = typer.main.get_command(app)
    known = {o for p in cmd.params for o in getattr(p, "opts", [])}
    flags = [a for a in argv[2:] if a.startswith("--")]
    assert flags and set(flags) <= known, set(flags) - known
    params = cmd.make_context("tune", argv[2:]).params  # the values parse (types)
    assert params["num_samples"] == 32
    # object storage: every pod reaches it (Tune's storage_path), no --shared-storage needed
    assert params["out_dir"].startswith("s3://") and not params["shared_storage"]
    spec = _cluster_spec(doc)
    # the trials run on the workers: the head holds the driver only
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert sum(g["replicas"] for g in spec["workerGroupSpecs"]) >= 2


def test_dockerfile_matches_ray_version():
    text = (CLUSTER / "Dockerfile").read_text()
    assert f"rayproject/ray:{ray.__version__}" in text
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignore or ".venv/" in ignore
