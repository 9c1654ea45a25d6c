"""The deployment manifests (deploy/): Kubernetes' schemas accept them, and what they
tell Kubernetes and Prometheus holds on a real server: the server arguments parse, the
probe paths answer 200 once the model is loaded, and the annotated metrics path carries
the inference gateway's series."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import Server, parse_prometheus

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFEST = DEPLOY / "kubernetes" / "hearth.yaml"
VALIDATE = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")


def validate(path):
    return subprocess.run([VALIDATE, "--strict", "--quiet", str(path)], capture_output=True, text=True)


def test_the_manifests_pass_the_kubernetes_schemas(tmp_path):
    p = validate(MANIFEST)
    assert p.returncode == 0, p.stdout + p.stderr
    # The check can fail: a misspelt probe field is refused.
    broken = tmp_path / "broken.yaml"
    broken.write_text(MANIFEST.read_text().replace("failureThreshold: 150", "failureTreshold: 150"))
    p = validate(broken)
    assert p.returncode != 0 and "failureTreshold" in p.stdout + p.stderr, p.stdout + p.stderr


def container():
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return deployment["spec"]["template"], deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_deployment_runs_on_a_real_server():
    template, c = container()
    args = list(c["args"])
    assert args[0] == "serve"
    # The image's default command is the same server.
    cmd = re.search(r'^CMD (\[.*\])', (DEPLOY / "Containerfile").read_text(), re.M).group(1)
    assert yaml.safe_load(cmd) == args[:len(yaml.safe_load(cmd))]
    port = c["ports"][0]["containerPort"]
    assert args[args.index("--port") + 1] == str(port)
    # Loopback and a free port here; every other argument as the manifest gives it.
    rest, i = [], 1
    while i < len(args):
        if args[i] in ("--host", "--port"):
            i += 2
            continue
        rest.append(args[i])
        i += 1
    server = Server(rest)
    try:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["port"] == c["ports"][0]["name"]
            status, _ = server.request("GET", get["path"])
            assert status == 200, probe
        ann = template["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == port
        status, text = server.request("GET", ann["prometheus.io/path"])
        assert status == 200
        m = parse_prometheus(text)
        for name in ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"):
            assert name in m, name
    finally:
        server.stop()
