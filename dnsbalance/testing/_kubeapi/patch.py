"""The three PATCH formats kube-apiserver accepts for built-in types (not server-side apply).

- ``application/merge-patch+json``: RFC 7386 JSON merge patch (``null`` deletes a key,
  lists are replaced whole).
- ``application/strategic-merge-patch+json``: a merge patch that merges the lists whose
  patch strategy is ``merge`` by their merge key (for our two kinds: Service
  ``spec.ports`` by ``port``, ``metadata.ownerReferences`` by ``uid``) and honours
  ``$patch: delete|replace``; the other directives (``$setElementOrder/...``,
  ``$retainKeys``, ``$deleteFromPrimitiveList/...``) are dropped. Every other list is
  replaced, which is what the real strategy does for atomic lists such as EndpointSlice
  ``endpoints`` and ``ports``.
- ``application/json-patch+json``: RFC 6902 (add, remove, replace, move, copy, test).
"""

from __future__ import annotations

import copy
from typing import Any

from .status import StatusError, bad_request

__all__ = ["PatchError", "apply_patch", "json_patch", "merge_patch", "strategic_merge_patch"]

JSON = dict[str, Any]

# (path of the list, merge key): lists merged by key in a strategic merge patch
MERGE_KEYS: dict[tuple[str, ...], str] = {
    ("spec", "ports"): "port",
    ("metadata", "ownerReferences"): "uid",
}


class PatchError(ValueError):
    """The patch cannot be applied (422 Invalid), parsed (400 BadRequest), or (a strategic
    merge list entry without its merge key) is a 500, as in kube-apiserver."""

    def __init__(self, message: str, *, bad_request: bool = False, internal: bool = False) -> None:
        super().__init__(message)
        self.bad_request = bad_request
        self.internal = internal


def _go(value: Any) -> str:
    """A decoded JSON value as Go's ``%v`` prints it (maps sorted, strings bare)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    return str(value)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """A strategic merge patch restricted to what Services and EndpointSlices use."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys, $deleteFromPrimitiveList/...
        sub = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and sub in MERGE_KEYS:
            result[key] = _merge_list(result.get(key), value, MERGE_KEYS[sub], sub)
        else:
            merged = strategic_merge_patch(result.get(key), value, sub)
            if merged is None and isinstance(value, dict):
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _merge_list(current: Any, patch: list[Any], key: str, path: tuple[str, ...]) -> list[Any]:
    items = [copy.deepcopy(i) for i in current] if isinstance(current, list) else []
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [
            {k: v for k, v in p.items() if not k.startswith("$")}
            for p in patch
            if isinstance(p, dict) and p.get("$patch") != "replace"
        ]
    for entry in patch:
        if not isinstance(entry, dict) or key not in entry:
            raise PatchError(
                f"map: {_go(entry)} does not contain declared merge key: {key}", internal=True
            )
        index = next(
            (
                i
                for i, item in enumerate(items)
                if isinstance(item, dict) and item.get(key) == entry[key]
            ),
            None,
        )
        if entry.get("$patch") == "delete":
            if index is not None:
                del items[index]
        elif index is None:
            items.append({k: copy.deepcopy(v) for k, v in entry.items() if not k.startswith("$")})
        else:
            items[index] = strategic_merge_patch(items[index], entry, path)
    return items


# -- RFC 6902 -------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r} in {path}")
    index = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise PatchError(f"array index out of bounds: {path}")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"doc is missing path: {path}: missing value")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, path, allow_end=False)]
        else:
            raise PatchError(f"doc is missing path: {path}: missing value")
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"doc is missing key: {path}: missing value")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, path, allow_end=False)]
    raise PatchError(f"doc is missing path: {path}: missing value")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), value)
    else:
        raise PatchError(f"add operation does not apply: doc is missing path: {path}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("remove operation does not apply: cannot remove the root")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"remove operation does not apply: doc is missing path: {path}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, path, allow_end=False))
    raise PatchError(f"remove operation does not apply: doc is missing path: {path}")


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 on a copy of ``doc``."""
    if not isinstance(operations, list):
        raise PatchError(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
            bad_request=True,
        )
    result = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise PatchError("invalid JSON patch operation", bad_request=True)
        kind, path = op.get("op"), op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"{kind} operation has no value: {path}")
        value = copy.deepcopy(op.get("value"))
        if kind == "add":
            result = _add(result, path, value)
        elif kind == "remove":
            result, _ = _remove(result, path)
        elif kind == "replace":
            try:
                result, _ = _remove(result, path)
            except PatchError:
                raise PatchError(
                    f"replace operation does not apply: doc is missing key: {path}: missing value"
                ) from None
            result = _add(result, path, value)
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise PatchError(f"{kind} operation has no from: {path}")
            if kind == "move":
                result, moved = _remove(result, source)
            else:
                moved = copy.deepcopy(_get(result, source))
            result = _add(result, path, moved)
        elif kind == "test":
            try:
                actual = _get(result, path)
            except PatchError:
                actual = None
            if actual != value:
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return result


def apply_patch(content_type: str, current: Any, patch: Any) -> Any:
    """``patch`` in the format ``content_type`` names, applied to ``current``;
    a malformed patch is 400, one that cannot apply 422 (as StatusError)."""
    try:
        if content_type == "application/json-patch+json":
            return json_patch(current, patch)
        if content_type == "application/merge-patch+json":
            return merge_patch(current, patch)
        return strategic_merge_patch(current, patch)
    except PatchError as exc:
        if exc.bad_request:
            raise bad_request(str(exc)) from None
        head: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        if exc.internal:  # the strategic patch's error, as is: no reason, no details
            raise StatusError({**head, "message": str(exc), "code": 500}) from None
        # a JSON patch that does not apply: NewGenericServerResponse(422), whose message
        # says nothing of the failing operation
        raise StatusError(
            {
                **head,
                "message": "the server rejected our request due to an error in our request",
                "reason": "Invalid",
                "details": {},
                "code": 422,
            }
        ) from None
