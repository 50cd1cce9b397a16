"""What a write request's body must be, as kube-apiserver checks it before storage:
kind and apiVersion of the URL's resource, the URL's namespace and name; and a
delete's preconditions (uid, resourceVersion)."""

from __future__ import annotations

import copy
from typing import Any

from .kinds import Resource
from .status import bad_request, conflict

JSON = dict[str, Any]
_OMIT_EMPTY = ("labels", "annotations", "finalizers", "ownerReferences")


def prepare_body(res: Resource, namespace: str, body: Any, *, name: str | None) -> JSON:
    if not isinstance(body, dict):
        raise bad_request(f"the body of the request was in an unknown format - expected {res.kind}")
    kind = body.get("kind")
    if kind and kind != res.kind:
        raise bad_request(
            f"the API version in the data ({body.get('apiVersion')}) does not match the "
            f"expected API version ({res.api_version})"
            if body.get("apiVersion") != res.api_version
            else f"the kind in the data ({kind}) does not match the expected kind ({res.kind})"
        )
    obj = copy.deepcopy(body)
    obj["kind"] = res.kind
    obj["apiVersion"] = res.api_version
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    body_ns = meta.get("namespace")
    if body_ns and body_ns != namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if name is not None:
        body_name = meta.get("name") or ""
        if body_name != name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
    meta["namespace"] = namespace
    if not res.namespaced:
        del meta["namespace"]
    for key in _OMIT_EMPTY:  # empty maps and lists are not written (omitempty)
        if meta.get(key) in ({}, []):
            del meta[key]
    return obj


def check_preconditions(res: Resource, current: JSON, pre: JSON) -> None:
    """rest.BeforeDelete's checks: a 409 naming the Kind (``EndpointSlice.discovery.k8s.io``)."""
    meta = current["metadata"]
    name = meta["name"]
    if pre.get("uid") and pre["uid"] != meta.get("uid"):
        raise conflict(
            res.kind,
            res.group,
            name,
            f"the UID in the precondition ({pre['uid']}) does not match the UID in record "
            f"({meta.get('uid')}). The object might have been deleted and then recreated",
        )
    if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
        raise conflict(
            res.kind,
            res.group,
            name,
            f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does not match "
            f"the ResourceVersion in record ({meta.get('resourceVersion')}). The object might "
            "have been modified",
        )
