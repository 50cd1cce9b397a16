"""The Kubernetes manifests (``manifests/``, ``examples/``), the demo's Dockerfiles, its kind
end-to-end script and workflow, checked offline.

- Every Kubernetes document validates with kubernetes-validate in strict mode (unknown
  fields are errors) against Kubernetes 1.29 and against the newest schema it ships.
- The Roles grant exactly the documented verbs, on exactly the documented resources,
  namespace-scoped, with no wildcard; the bindings bind what the comments say.
- Each kustomization lists files that exist, inside its own folder (kustomize's load
  restrictor), and nothing is forgotten; with ``kubectl`` installed, the kustomizations are
  rendered (``kubectl kustomize``, offline) and the output validated too.
- The demo's Deployments fit server.py and client.py (drain + grace < termination grace,
  the probes, the ServiceAccount, the images e2e-kind.sh loads).
- ``e2e-kind.sh`` passes shellcheck (required under CI=true), the workflow is valid YAML.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dnsbalance.cli.check import RBAC_MANIFEST
from dnsbalance.cli.convert_access import RBAC_CONVERT_MANIFEST, VERBS

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
EXAMPLES = ROOT / "examples"
DEMO = EXAMPLES / "demo"
DEMO_K8S = DEMO / "k8s"
E2E_SCRIPT = DEMO / "e2e-kind.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "e2e-kind.yml"

OLDEST = "1.29"
NEWEST = kubernetes_validate.utils.latest_version()
K8S_VERSIONS = sorted({OLDEST, ".".join(NEWEST.split(".")[:2])})

LIBRARY_RULES = [
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": {"get", "list", "watch"},
    }
]
# What convert-service asks for (its SelfSubjectAccessReviews and its RBAC hint): the
# union over both strategies, and get on endpoints (a selector-less Service's Endpoints,
# which a replace would lose: issue 22). Nothing more: no list, no patch.
CONVERT_VERBS = {verb for verbs in VERBS.values() for verb in verbs}
CONVERT_RULES = [
    {"apiGroups": [""], "resources": ["services"], "verbs": CONVERT_VERBS},
    {"apiGroups": [""], "resources": ["endpoints"], "verbs": {"get"}},
]
CLUSTER_SCOPED_RBAC = {"ClusterRole", "ClusterRoleBinding"}
# The one exception (issue 18): Nodes are cluster-scoped, so reading the client's own
# Node for its zone takes a ClusterRole; it grants get on nodes and nothing else.
TOPOLOGY_RBAC = "manifests/rbac-topology.yaml"
TOPOLOGY_RULES = [{"apiGroups": [""], "resources": ["nodes"], "verbs": {"get"}}]
# Optional too: a pod's readiness read from the pod, before its slice (issue 24). Apart
# from rbac.yaml because `list pods` reads the pods' specs (their environment).
PODS_RBAC = "manifests/rbac-pods.yaml"
PODS_RULES = [
    {"apiGroups": [""], "resources": ["services"], "verbs": {"get"}},
    {"apiGroups": [""], "resources": ["pods"], "verbs": {"list", "watch"}},
]


def yaml_files() -> list[Path]:
    """Every YAML file under manifests/ and examples/."""
    found = [
        path
        for base in (MANIFESTS, EXAMPLES)
        for pattern in ("*.yaml", "*.yml")
        for path in base.rglob(pattern)
    ]
    return sorted(found)


def is_kustomization(path: Path) -> bool:
    return path.name in ("kustomization.yaml", "kustomization.yml", "Kustomization")


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        docs = [doc for doc in yaml.safe_load_all(f) if doc is not None]
    assert all(isinstance(doc, dict) for doc in docs), path
    return docs


def resource_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in yaml_files():
        if not is_kustomization(path):
            for doc in documents(path):
                yield path, doc


def by_kind(path: Path, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents(path) if doc.get("kind") == kind]


def one(path: Path, kind: str, name: str | None = None) -> dict[str, Any]:
    docs = [d for d in by_kind(path, kind) if name is None or d["metadata"]["name"] == name]
    assert len(docs) == 1, f"{path.name}: expected one {kind} {name or ''}, found {len(docs)}"
    return docs[0]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- schema ---------------------------------------------------------------------------


def test_the_manifests_are_there() -> None:
    names = {rel(p) for p in yaml_files()}
    for expected in (
        "manifests/rbac.yaml",
        "manifests/rbac-convert.yaml",
        "manifests/headless-service.example.yaml",
        "manifests/kustomization.yaml",
        "examples/demo/k8s/kustomization.yaml",
    ):
        assert expected in names
    assert (ROOT / RBAC_MANIFEST).is_file(), "the path dnsbalance check names"
    assert (ROOT / RBAC_CONVERT_MANIFEST).is_file(), "the path convert-service names"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    "path", [p for p in yaml_files() if not is_kustomization(p)], ids=lambda p: rel(p)
)
def test_every_manifest_validates_strictly(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs, f"{rel(path)} holds no document"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{rel(path)}: {doc['kind']} {doc['metadata']['name']}: {where}: {exc}")


def test_strict_validation_is_not_vacuous() -> None:
    """The check above would catch a typo: an unknown field fails in strict mode."""
    role = one(MANIFESTS / "rbac.yaml", "Role")
    typo = {**role, "rules": [{**role["rules"][0], "verb": ["get"]}]}
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(role, version, strict=True)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(typo, version, strict=True)


def test_nothing_is_cluster_scoped_or_namespaced_by_hand() -> None:
    """Least privilege: Roles only, never ClusterRoles (but the optional get on nodes,
    see test_the_topology_role_reads_nodes_only); the namespace comes from
    `kubectl -n` or a kustomization, except in the demo (namespace "example")."""
    for path, doc in resource_documents():
        assert doc["kind"] not in CLUSTER_SCOPED_RBAC or rel(path) == TOPOLOGY_RBAC, rel(path)
        if doc["kind"] == "Namespace":
            assert path.parent == DEMO_K8S, rel(path)
        assert "namespace" not in doc["metadata"], f"{rel(path)}: set the namespace outside"


# -- RBAC -----------------------------------------------------------------------------


def normalized_rules(role: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, (
            f"unexpected rule fields (resourceNames, nonResourceURLs?): {sorted(rule)}"
        )
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}"
            assert len(set(rule[field])) == len(rule[field]), f"duplicate in {field}"
        out.append({**rule, "verbs": set(rule["verbs"])})
    return out


@pytest.mark.parametrize(
    ("file", "name", "rules"),
    [
        ("rbac.yaml", "dnsbalance", LIBRARY_RULES),
        ("rbac-convert.yaml", "dnsbalance-convert", CONVERT_RULES),
    ],
)
def test_roles_grant_exactly_the_documented_verbs(
    file: str, name: str, rules: list[dict[str, Any]]
) -> None:
    path = MANIFESTS / file
    assert sorted(doc["kind"] for doc in documents(path)) == [
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    role = one(path, "Role", name)
    assert normalized_rules(role) == rules
    account = one(path, "ServiceAccount", name)
    binding = one(path, "RoleBinding", name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    # No namespace on the subject: a RoleBinding's ServiceAccount subject without one
    # means the binding's own namespace, so `kubectl apply -n NS` works unchanged.
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]


def test_the_library_role_can_never_write() -> None:
    library = one(MANIFESTS / "rbac.yaml", "Role")
    verbs = {verb for rule in library["rules"] for verb in rule["verbs"]}
    assert not verbs & {"create", "update", "patch", "delete", "deletecollection"}
    assert {"list", "watch"} <= verbs  # what `dnsbalance check` asks for


def test_the_comments_name_the_verbs_the_roles_grant() -> None:
    text = (MANIFESTS / "rbac-convert.yaml").read_text(encoding="utf-8")
    for strategy, verbs in VERBS.items():
        assert re.search(rf"--strategy {strategy}\b.*: {', '.join(verbs)}\n", text), strategy
    assert "get, list and watch" in (MANIFESTS / "rbac.yaml").read_text(encoding="utf-8")


def test_every_role_in_the_repository_is_one_of_these() -> None:
    """No other file grants anything (the demo uses a copy of rbac.yaml, checked below)."""
    roles = [
        (rel(path), doc["metadata"]["name"])
        for path, doc in resource_documents()
        if doc["kind"] in ("Role", "ClusterRole")
    ]
    assert sorted(roles) == [
        ("examples/demo/k8s/rbac.yaml", "dnsbalance"),
        ("manifests/rbac-convert.yaml", "dnsbalance-convert"),
        ("manifests/rbac-pods.yaml", "dnsbalance-pods"),
        ("manifests/rbac-topology.yaml", "dnsbalance-topology"),
        ("manifests/rbac.yaml", "dnsbalance"),
    ]


def test_the_topology_role_reads_nodes_only() -> None:
    """rbac-topology.yaml: a ClusterRole with get on nodes, nothing else, bound to the
    ServiceAccount rbac.yaml creates (a ClusterRoleBinding must name its namespace)."""
    path = ROOT / TOPOLOGY_RBAC
    assert sorted(doc["kind"] for doc in documents(path)) == ["ClusterRole", "ClusterRoleBinding"]
    role = one(path, "ClusterRole", "dnsbalance-topology")
    assert normalized_rules(role) == TOPOLOGY_RULES
    binding = one(path, "ClusterRoleBinding", "dnsbalance-topology")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "dnsbalance-topology",
    }
    account = one(MANIFESTS / "rbac.yaml", "ServiceAccount")
    (subject,) = binding["subjects"]
    assert subject == {
        "kind": "ServiceAccount",
        "name": account["metadata"]["name"],
        "namespace": "default",
    }
    text = path.read_text(encoding="utf-8")
    assert "sed 's/namespace: default/namespace: app/' manifests/rbac-topology.yaml" in text


def test_the_pods_role_reads_the_service_and_its_pods_only() -> None:
    """rbac-pods.yaml: a Role (namespaced, as rbac.yaml) with get on services and list,
    watch on pods, nothing else, bound to the ServiceAccount rbac.yaml creates."""
    path = ROOT / PODS_RBAC
    assert sorted(doc["kind"] for doc in documents(path)) == ["Role", "RoleBinding"]
    role = one(path, "Role", "dnsbalance-pods")
    assert normalized_rules(role) == PODS_RULES
    binding = one(path, "RoleBinding", "dnsbalance-pods")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "dnsbalance-pods",
    }
    account = one(MANIFESTS / "rbac.yaml", "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]
    text = path.read_text(encoding="utf-8")
    assert "kubectl apply -n NAMESPACE -f manifests/rbac-pods.yaml" in text


# -- kustomizations ---------------------------------------------------------------------


def kustomization(folder: Path) -> dict[str, Any]:
    (doc,) = documents(folder / "kustomization.yaml")
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert doc["kind"] == "Kustomization"
    return doc


@pytest.mark.parametrize("folder", [MANIFESTS, DEMO_K8S], ids=rel)
def test_kustomization_lists_files_that_exist_in_its_folder(folder: Path) -> None:
    resources = kustomization(folder)["resources"]
    assert len(set(resources)) == len(resources)
    for entry in resources:
        target = (folder / entry).resolve()
        assert target.is_file(), f"{rel(folder)}/kustomization.yaml: {entry} does not exist"
        # kustomize's default load restrictor refuses files outside the folder.
        assert target.parent == folder.resolve(), f"{entry}: outside {rel(folder)}"


def test_manifests_kustomization_leaves_only_rbac_convert_out() -> None:
    listed = set(kustomization(MANIFESTS)["resources"])
    present = {p.name for p in MANIFESTS.glob("*.yaml") if not is_kustomization(p)}
    assert "rbac.yaml" in listed
    assert "rbac-convert.yaml" not in listed, "write access to Services is opt-in"
    assert "rbac-topology.yaml" not in listed, "reading Nodes (cluster-wide) is opt-in"
    assert "rbac-pods.yaml" not in listed, "reading pods (their specs) is opt-in"
    assert present - listed == {"rbac-convert.yaml", "rbac-pods.yaml", "rbac-topology.yaml"}
    assert "namespace" not in kustomization(MANIFESTS), "the namespace comes from -n"


def test_demo_kustomization_is_complete_and_in_namespace_example() -> None:
    doc = kustomization(DEMO_K8S)
    assert doc["namespace"] == "example"
    present = {p.name for p in DEMO_K8S.glob("*.yaml") if not is_kustomization(p)}
    assert set(doc["resources"]) == present


def test_demo_rbac_is_a_copy_of_manifests_rbac() -> None:
    """Kustomize cannot load ../../../manifests/rbac.yaml (outside the folder): the
    demo keeps a copy, which must stay identical."""
    assert (DEMO_K8S / "rbac.yaml").read_bytes() == (MANIFESTS / "rbac.yaml").read_bytes()


def kubectl_kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        hint = "kubectl is required under CI (kustomize rendering not checked)"
        if os.environ.get("CI") == "true":
            pytest.fail(hint)
        pytest.skip(hint.replace("required under CI", "not installed"))
    done = subprocess.run(
        [kubectl, "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


@pytest.mark.parametrize("folder", [MANIFESTS, DEMO_K8S], ids=rel)
def test_kustomize_renders_valid_objects(folder: Path) -> None:
    rendered = kubectl_kustomize(folder)
    listed = [
        doc for name in kustomization(folder)["resources"] for doc in documents(folder / name)
    ]
    assert len(rendered) == len(listed)
    for doc in rendered:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    if folder == DEMO_K8S:
        for doc in rendered:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "example", doc["metadata"]["name"]
        binding = next(doc for doc in rendered if doc["kind"] == "RoleBinding")
        assert binding["subjects"][0]["namespace"] == "example"


# -- the demo's workloads -----------------------------------------------------------------


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def flag(args: list[str], name: str) -> str | None:
    for arg in args:
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def demo_module(name: str) -> Any:
    """examples/demo/NAME.py, imported as ``demo_example_NAME`` (demo_pb2 is importable:
    tests/kits/backends.py puts examples/demo on sys.path)."""
    module_name = f"demo_example_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, DEMO / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[module_name] = module
    return sys.modules[module_name]


def test_server_deployment_drains_within_its_termination_grace() -> None:
    deployment = one(DEMO_K8S / "server.yaml", "Deployment", "grpc-server")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    server = container(deployment)
    defaults = demo_module("server").parse_args([])
    drain = float(flag(server.get("args", []), "--drain-seconds") or defaults.drain_seconds)
    grace = float(flag(server.get("args", []), "--grace") or defaults.grace)
    assert drain > 0
    assert pod["terminationGracePeriodSeconds"] > drain + grace
    assert server["readinessProbe"]["grpc"] == {"port": 8000}
    assert {"name": "grpc", "containerPort": 8000, "protocol": "TCP"} in server["ports"]
    env = {e["name"]: e for e in server.get("env", [])}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_server_service_is_headless_and_selects_the_server_pods() -> None:
    deployment = one(DEMO_K8S / "server.yaml", "Deployment", "grpc-server")
    service = one(DEMO_K8S / "server.yaml", "Service", "grpc-server-service")
    assert service["spec"]["clusterIP"] == "None"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("grpc", 8000, "grpc")


def test_example_headless_service_has_a_named_grpc_port() -> None:
    service = one(MANIFESTS / "headless-service.example.yaml", "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["grpc"]


def test_client_deployment_uses_the_dnsbalance_service_account() -> None:
    deployment = one(DEMO_K8S / "client.yaml", "Deployment", "grpc-client")
    pod = deployment["spec"]["template"]["spec"]
    account = one(MANIFESTS / "rbac.yaml", "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    client = container(deployment)
    client_module = demo_module("client")
    args = client.get("args", [])
    assert (flag(args, "--target") or client_module.DEFAULT_TARGET) == (
        "kubernetes:///grpc-server-service.example:8000"
    )
    assert client["readinessProbe"]["httpGet"]["path"] == "/healthz"
    service = one(DEMO_K8S / "client.yaml", "Service", "grpc-client-service")
    assert service["spec"]["ports"][0]["port"] == 8080
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("file", ["server.yaml", "client.yaml"])
def test_demo_pods_run_restricted(file: str) -> None:
    """The namespace enforces the "restricted" Pod Security Standard; the pods meet it."""
    (deployment,) = by_kind(DEMO_K8S / file, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(deployment)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    namespace = one(DEMO_K8S / "namespace.yaml", "Namespace", "example")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def e2e_images() -> dict[str, str]:
    text = E2E_SCRIPT.read_text(encoding="utf-8")
    return dict(re.findall(r"^(SERVER|CLIENT)_IMAGE=(\S+)$", text, re.MULTILINE))


@pytest.mark.parametrize(("file", "role"), [("server.yaml", "SERVER"), ("client.yaml", "CLIENT")])
def test_demo_images_are_those_e2e_loads_into_kind(file: str, role: str) -> None:
    (deployment,) = by_kind(DEMO_K8S / file, "Deployment")
    c = container(deployment)
    assert c["image"] == e2e_images()[role]
    assert c["imagePullPolicy"] == "IfNotPresent", "kind-loaded images must not be pulled"


# -- Dockerfiles ------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerignore_allows(patterns: list[str], path: str) -> bool:
    """Whether a context path survives an allow-list .dockerignore (``*`` then ``!path``)."""
    assert patterns[0] == "*"
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    return any(path == a or path.startswith(f"{a}/") for a in allowed)


@pytest.mark.parametrize(("name", "port"), [("server", 8000), ("client", 8080)])
def test_dockerfile_copies_what_exists_runs_as_non_root_and_exposes(name: str, port: int) -> None:
    dockerfile = DEMO / f"Dockerfile.{name}"
    ignore = [
        line.strip()
        for line in (DEMO / f"Dockerfile.{name}.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    instructions = dockerfile_instructions(dockerfile)
    bases = [rest.split()[0] for word, rest in instructions if word == "FROM"]
    assert bases
    assert set(bases) == {"python:3.11-slim"}
    users = [rest for word, rest in instructions if word == "USER"]
    assert users[-1:] == ["10001:10001"], "the last USER wins: numeric, not root"
    assert ("EXPOSE", str(port)) in instructions
    copied = 0
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: missing"
                assert dockerignore_allows(ignore, source), f"{source} is not in the context"
                copied += 1
    assert copied >= 4
    entry = next(rest for word, rest in instructions if word == "ENTRYPOINT")
    assert f"{name}.py" in entry


# -- the kind end-to-end script and its workflow ----------------------------------------------


def test_e2e_script_is_strict_bash() -> None:
    text = E2E_SCRIPT.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(E2E_SCRIPT, os.X_OK)
    done = subprocess.run(
        ["bash", "-n", str(E2E_SCRIPT)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    for path in ("manifests", "examples/demo/k8s", "examples/demo/Dockerfile.server"):
        assert path in text


@pytest.mark.parametrize("script", [E2E_SCRIPT, DEMO / "generate.sh"], ids=lambda p: p.name)
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        hint = "shellcheck is required under CI: apt-get install -y shellcheck"
        if os.environ.get("CI") == "true":
            pytest.fail(hint)
        pytest.skip(hint.replace("required under CI", "not installed"))
    done = subprocess.run(
        [shellcheck, "--shell=bash", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflow_runs_the_script_on_a_kind_cluster() -> None:
    with WORKFLOW.open(encoding="utf-8") as f:
        workflow = yaml.safe_load(f)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "workflow_dispatch" in triggers
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert 0 < job["timeout-minutes"] <= 60
    steps = job["steps"]
    kind = next(s for s in steps if s.get("uses", "").startswith("helm/kind-action@"))
    run = next(s for s in steps if "e2e-kind.sh" in s.get("run", ""))
    assert run["env"]["KIND_CLUSTER"] == kind["with"]["cluster_name"]
    assert steps.index(kind) < steps.index(run)
    assert all("uses" in s or "run" in s for s in steps)


# -- e2e-kind.sh's control flow, against fake docker, kind and kubectl ---------------------

# The fakes: docker builds nothing; kind keeps a list of clusters; kubectl records what is
# applied (following kustomizations) and answers `auth can-i` by evaluating the applied
# Roles and RoleBindings, `get pods` and a port-forward with FAKE_PODS server pods (new
# names after `rollout restart`), of which /getResponse names FAKE_ANSWERS.
FAKE_TOOLS = r"""
import http.server, json, os, sys, time

STATE = os.environ["FAKE_STATE"]
tool, args = sys.argv[1], sys.argv[2:]


def load():
    try:
        with open(STATE) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"clusters": [], "namespaces": [], "objects": [], "generation": 0, "log": []}


def save(state):
    with open(STATE + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(STATE + ".tmp", STATE)


def opt(name):
    return args[args.index(name) + 1] if name in args else None


def pods(state):
    n = int(os.environ.get("FAKE_PODS", "3"))
    return [f"grpc-server-{state['generation']}-{i}" for i in range(n)]


def docs(path):
    import yaml

    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


state = load()
state["log"].append([tool, *args])
save(state)
if tool == "docker":
    sys.exit(0)
if tool == "kind":
    if args[:2] == ["get", "clusters"]:
        print("\n".join(state["clusters"]))
    elif args[:2] == ["create", "cluster"]:
        state["clusters"].append(opt("--name"))
    elif args[:2] == ["delete", "cluster"]:
        state["clusters"].remove(opt("--name"))
    save(state)
    sys.exit(0)

assert args[0] == "--context", args
args = args[2:]
ns = opt("-n")
if args[:2] == ["get", "namespace"]:
    sys.exit(0 if args[2] in state["namespaces"] else 1)
if args[:2] == ["create", "namespace"]:
    state["namespaces"].append(args[2])
elif args[0] == "apply":
    if "-k" in args:
        folder = opt("-k")
        (kust,) = docs(os.path.join(folder, "kustomization.yaml"))
        ns = kust.get("namespace", ns)
        files = [os.path.join(folder, r) for r in kust["resources"]]
    else:
        files = [opt("-f")]
    for path in files:
        for doc in docs(path):
            if doc["kind"] == "Namespace":
                state["namespaces"].append(doc["metadata"]["name"])
            else:
                state["objects"].append([ns, doc])
    assert ns in state["namespaces"], ns
elif args[:2] == ["auth", "can-i"]:
    verb, resource = args[2], args[3]
    resource, _, group = resource.partition(".")
    _, _, sa_ns, sa = opt("--as").split(":")
    roles = {(n, d["metadata"]["name"]): d for n, d in state["objects"] if d["kind"] == "Role"}
    allowed = False
    for n, d in state["objects"]:
        if d["kind"] != "RoleBinding" or n != ns:
            continue
        for subject in d["subjects"]:
            if (subject["kind"], subject["name"], subject.get("namespace", n)) != (
                "ServiceAccount", sa, sa_ns):
                continue
            for rule in roles[n, d["roleRef"]["name"]]["rules"]:
                if (group in rule["apiGroups"] and resource in rule["resources"]
                        and verb in rule["verbs"]):
                    allowed = True
    print("yes" if allowed else "no")
    sys.exit(0 if allowed else 1)
elif args[:2] == ["rollout", "restart"]:
    state["generation"] += 1
elif args[:2] == ["rollout", "status"]:
    time.sleep(0.3)
elif args[:2] == ["get", "pods"]:
    ready = [{"type": "Ready", "status": "True"}]
    items = [{"metadata": {"name": p}, "status": {"conditions": ready}} for p in pods(state)]
    print(json.dumps({"items": items}))
elif args[0] == "port-forward":
    state["port_forward_pid"] = os.getpid()
    save(state)
    local = int(args[-1].split(":")[0])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/healthz":
                body = b"ok"
            else:
                names = pods(load())[: int(os.environ.get("FAKE_ANSWERS", "3"))]
                body = json.dumps(names).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", local), Handler)
    server.timeout = 0.2
    deadline = time.monotonic() + 60  # bounded, even if nobody kills it
    while time.monotonic() < deadline:
        server.handle_request()
    sys.exit(0)
save(state)
"""


def run_e2e_with_fakes(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    if shutil.which("curl") is None:
        hint = "curl is required under CI: apt-get install -y curl"
        if os.environ.get("CI") == "true":
            pytest.fail(hint)
        pytest.skip(hint.replace("required under CI", "not installed"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = tmp_path / "fake_tools.py"
    fake.write_text(FAKE_TOOLS, encoding="utf-8")
    for tool in ("docker", "kind", "kubectl"):
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" {tool} "$@"\n')
        wrapper.chmod(0o755)
    state_file = tmp_path / "state.json"
    full_env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_STATE": str(state_file),
        "LOCAL_PORT": str(free_loopback_port()),
        **env,
    }
    try:
        done = subprocess.run(
            ["bash", str(E2E_SCRIPT)],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    finally:
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        pid = state.get("port_forward_pid")
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # only the fake port-forward this test started
    return done, state


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_e2e_script_passes_against_fake_tools(tmp_path: Path) -> None:
    done, state = run_e2e_with_fakes(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[e2e] PASS" in done.stderr
    commands = [" ".join(entry) for entry in state["log"]]
    assert any(c.startswith("docker build -f") and "Dockerfile.server" in c for c in commands)
    assert any(c.startswith("kind load docker-image") for c in commands)
    assert any(
        "apply -k" in c and c.endswith("/manifests -n dnsbalance-manifests") for c in commands
    )
    assert any("apply -k" in c and c.endswith("/examples/demo/k8s") for c in commands)
    assert any("rollout restart -n example deployment/grpc-server" in c for c in commands)
    assert state["clusters"] == [], "the cluster it made is deleted"
    # The RBAC checks ran against the real manifests' rules.
    assert "dnsbalance list endpointslices.discovery.k8s.io in dnsbalance-manifests: yes" in (
        done.stderr
    )
    assert "dnsbalance-convert patch services in dnsbalance-manifests: no" in done.stderr


def test_e2e_script_fails_when_a_pod_is_not_reached(tmp_path: Path) -> None:
    done, state = run_e2e_with_fakes(tmp_path, FAKE_ANSWERS="2", E2E_ATTEMPTS="1")
    assert done.returncode == 1
    assert "FAIL: /getResponse did not name the 3 server pods" in done.stderr
    assert "[e2e] diagnostics" in done.stderr
    assert state["clusters"] == [], "cleaned up after a failure too"
