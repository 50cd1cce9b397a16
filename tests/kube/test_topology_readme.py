"""The README's "Staying in your zone" section: its snippets are valid as written."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README.split("### Staying in your zone", 1)[1].split("\n### ", 1)[0]


def test_the_downward_api_snippet_is_a_valid_pod_spec() -> None:
    (snippet,) = re.findall(r"```yaml\n(.*?)```", SECTION, flags=re.DOTALL)
    spec = yaml.safe_load(snippet)
    spec["containers"][0]["image"] = "client:1"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"}, "spec": spec}
    kubernetes_validate.validate(pod, kubernetes_validate.utils.latest_version(), strict=True)
    (env,) = spec["containers"][0]["env"]
    assert env == {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    assert spec["serviceAccountName"] == "dnsbalance"


def test_the_apply_commands_bind_the_namespace_they_name() -> None:
    (snippet,) = re.findall(r"```sh\n(.*?)```", SECTION, flags=re.DOTALL)
    lines = snippet.strip().splitlines()
    assert lines[0] == "kubectl apply -n app -f manifests/rbac.yaml"
    sed = lines[1].split(" | ")[0]
    assert sed.startswith("sed ")
    out = subprocess.run(
        ["sed", "s/namespace: default/namespace: app/", "manifests/rbac-topology.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert sed == "sed 's/namespace: default/namespace: app/' manifests/rbac-topology.yaml"
    docs = list(yaml.safe_load_all(out))
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "dnsbalance", "namespace": "app"}
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.utils.latest_version(), strict=True)


def test_the_metric_named_is_the_one_reported() -> None:
    from dnsbalance import _metrics

    assert "dnsbalance_topology_endpoints" in SECTION
    assert "dnsbalance_topology_endpoints" in (_metrics.__doc__ or "")
    assert hasattr(_metrics.TargetMetrics, "topology")
