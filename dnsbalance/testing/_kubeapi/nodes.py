"""core/v1 Nodes in FakeKubernetesAPI: cluster-scoped, with labels, for the client's zone.

dnsbalance reads one Node (``CoreV1Api.read_node``) for its
``topology.kubernetes.io/zone`` label; tests put Nodes with :func:`node` and deny
``get`` on ``nodes`` to play a Role without ``manifests/rbac-topology.yaml``.

Served as the real server does where a client can tell: ``/api/v1/nodes`` (list, watch,
create) and ``/api/v1/nodes/{name}`` (get, update, patch, delete); no namespace in the
path or the object (a namespaced URL such as ``/api/v1/namespaces/x/nodes`` is 404); a
Forbidden message says ``at the cluster scope``; DELETE answers a Status ``Success``
(``pkg/registry/core/node/storage`` sets no ``ReturnDeletedObject``); the name is a DNS
subdomain (``ValidateNodeName``) and labels follow ``ValidateLabels`` (qualified keys,
label values). The kubelet's status updates, leases, taints and the node lifecycle
controller are not modelled: a Node is what the test writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .kinds import NODES, validate_name
from .selectors import label_value_errors, qualified_name_errors
from .status import FieldError

__all__ = ["default_node", "node", "validate_node"]

JSON = dict[str, Any]
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def node(
    name: str,
    *,
    zone: str | None = None,
    region: str | None = None,
    labels: Mapping[str, str] | None = None,
    ready: bool = True,
) -> JSON:
    """A v1 Node dict as the kubelet registers it: ``kubernetes.io/hostname`` (and
    ``topology.kubernetes.io/zone``/``region`` when given, as the cloud provider sets
    them) in its labels, a ``Ready`` condition."""
    all_labels = {HOSTNAME_LABEL: name, "kubernetes.io/os": "linux"}
    if zone is not None:
        all_labels[ZONE_LABEL] = zone
    if region is not None:
        all_labels[REGION_LABEL] = region
    all_labels.update(labels or {})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                }
            ]
        },
    }


def default_node(obj: JSON) -> None:
    obj.setdefault("spec", {})
    obj.setdefault("status", {})


def validate_node(obj: Mapping[str, Any]) -> list[FieldError]:
    metadata = obj.get("metadata") or {}
    errors = validate_name(NODES, metadata)
    labels = metadata.get("labels") or {}
    if not isinstance(labels, Mapping):
        return [*errors, FieldError.invalid("metadata.labels", labels, "must be an object")]
    for key, value in labels.items():  # ValidateLabels, with apimachinery's texts
        for message in qualified_name_errors(str(key)):
            errors.append(FieldError.invalid("metadata.labels", key, message))
        if not isinstance(value, str):
            errors.append(FieldError.invalid("metadata.labels", value, "must be a string"))
            continue
        for message in label_value_errors(value):
            errors.append(FieldError.invalid("metadata.labels", value, message))
    return errors
