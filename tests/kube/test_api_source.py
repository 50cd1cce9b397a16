"""Where a channel's API configuration comes from (``api_source``), the identity part of
the key channels share a watch by: equal only when it is the same configuration, so two
kubeconfigs, two contexts, two versions of one file or two ApiClient objects never
share. ``load_api_client`` loads exactly what the source names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnsbalance._kube.client import api_source, load_api_client, load_source
from dnsbalance.testing import FakeKubernetesAPI


def test_the_same_kubeconfig_and_context_is_one_source(
    kube: FakeKubernetesAPI, tmp_path: Path
) -> None:
    path = kube.write_kubeconfig(tmp_path / "config")
    first = api_source(kubeconfig=path)
    assert first is not None
    assert first == api_source(kubeconfig=str(path))
    assert hash(first) == hash(api_source(kubeconfig=path))
    assert first.kind == "kubeconfig"


def test_two_kubeconfigs_even_alike_are_two_sources(
    kube: FakeKubernetesAPI, tmp_path: Path
) -> None:
    """Identical bytes in two files are still two sources: a kubeconfig's relative paths
    (certificates, token files) are read from its own folder."""
    one = kube.write_kubeconfig(tmp_path / "a" / "config")
    two = kube.write_kubeconfig(tmp_path / "b" / "config")
    assert one.read_bytes() == two.read_bytes()
    assert api_source(kubeconfig=one) != api_source(kubeconfig=two)


def test_two_contexts_of_one_file_are_two_sources(kube: FakeKubernetesAPI, tmp_path: Path) -> None:
    path = kube.write_kubeconfig(tmp_path / "config", token="alice", context="alice")
    config = json.loads(path.read_text())
    config["users"].append({"name": "bob", "user": {"token": "bob"}})
    config["contexts"].append({"name": "bob", "context": {"cluster": "alice", "user": "bob"}})
    path.write_text(json.dumps(config))
    alice = api_source(kubeconfig=path, context="alice")
    assert alice != api_source(kubeconfig=path, context="bob")
    # No context named: the file's current one, which is not the same key as naming it.
    assert api_source(kubeconfig=path) != api_source(kubeconfig=path, context="bob")


def test_a_rewritten_kubeconfig_is_a_new_source(kube: FakeKubernetesAPI, tmp_path: Path) -> None:
    path = kube.write_kubeconfig(tmp_path / "config", token="old")
    before = api_source(kubeconfig=path)
    kube.write_kubeconfig(path, token="new")
    assert api_source(kubeconfig=path) != before


def test_a_given_api_client_is_its_own_source_by_identity(kube: FakeKubernetesAPI) -> None:
    with kube.api_client() as a, kube.api_client() as b:
        assert api_source(api_client=a) == api_source(api_client=a)
        assert api_source(api_client=a) != api_source(api_client=b)  # alike, not the same
        source = api_source(api_client=a)
        assert source is not None
        assert load_source(source) is a
        assert load_api_client(api_client=a) is a


def test_the_default_kubeconfig_and_in_cluster_sources(
    kube: FakeKubernetesAPI, tmp_path: Path
) -> None:
    path = kube.write_kubeconfig(tmp_path / "config")
    environ = {"KUBECONFIG": str(path)}
    empty = tmp_path / "no-account"
    source = api_source(environ=environ, service_account_dir=empty)
    assert source == api_source(kubeconfig=None, environ=dict(environ), service_account_dir=empty)
    # The same file loaded with its current context, however it was found: one identity.
    assert source == api_source(kubeconfig=path)
    assert source != api_source(kubeconfig=path, context="fake")  # a context named: another
    assert api_source(environ={}, service_account_dir=empty, home=tmp_path / "home") is None
    account = kube.write_service_account(tmp_path / "account", "token")
    pod = kube.incluster_environ()
    in_cluster = api_source(environ=pod, service_account_dir=account)
    assert in_cluster is not None
    assert in_cluster.kind == "in-cluster"
    (account / "token").write_text("rotated")  # a rotated token is the same identity
    assert api_source(environ=pod, service_account_dir=account) == in_cluster
    moved = {**pod, "KUBERNETES_SERVICE_PORT": "1"}
    assert api_source(environ=moved, service_account_dir=account) != in_cluster


@pytest.mark.parametrize("how", ["explicit", "KUBECONFIG"])
def test_a_source_loads_a_client_for_its_server(
    kube: FakeKubernetesAPI, tmp_path: Path, how: str
) -> None:
    path = kube.write_kubeconfig(tmp_path / "config")
    empty = tmp_path / "no-account"
    if how == "explicit":
        source = api_source(kubeconfig=path)
    else:
        source = api_source(environ={"KUBECONFIG": str(path)}, service_account_dir=empty)
    assert source is not None
    client = load_source(source)
    try:
        assert client.configuration.host == kube.url
    finally:
        client.close()
