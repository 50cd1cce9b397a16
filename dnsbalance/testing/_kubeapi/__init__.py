"""FakeKubernetesAPI (:mod:`.server`): a small Kubernetes API server over real HTTP, for
the official client.

Tests run the **unmodified** ``kubernetes`` Python client (``CoreV1Api``,
``DiscoveryV1Api``, ``AuthorizationV1Api``, ``kubernetes.watch.Watch``) against this server
on ``127.0.0.1``, where a fault must be injected or a real control plane
(:class:`~dnsbalance.testing.ControlPlane`) would be too slow::

    with FakeKubernetesAPI(tokens={"t1"}) as api:
        api.apply_slice("greeter-abc", "app", "greeter",
                        endpoints=[("10.0.0.1", True), ("10.0.0.2", False)],
                        ports=[("grpc", 50051, "TCP")])
        with api.api_client(token="t1") as client:
            slices = DiscoveryV1Api(client).list_namespaced_endpoint_slice(
                "app", label_selector="kubernetes.io/service-name=greeter")

Every claim below is held to kube-apiserver v1.37.2 by a differential test
(tests/cluster/test_fake_vs_real*.py: the same requests to both servers, side by side;
tests/cluster/test_fake_claims.py maps each claim to its rows, or says why a claim is not
compared).

Served
------
- ``/api/v1/namespaces/{ns}/services[/{name}]``, ``/api/v1/services`` (all namespaces,
  list and watch), and the same for ``discovery.k8s.io/v1`` ``endpointslices``.
  Verbs: get, list, watch (``?watch=true`` or ``1``; for slices also the deprecated
  ``/apis/discovery.k8s.io/v1/watch/...`` path kuberesolver v6 uses), create (POST,
  201), update (PUT), patch (PATCH) and delete. Also ``POST
  /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``, ``/version``, ``/api``,
  ``/apis``, the group and group-version discovery documents and ``/healthz``.
- ``/api/v1/nodes[/{name}]``: cluster-scoped Nodes with labels (same verbs; see
  ``_kubeapi/nodes.py``), for the client's zone label; :meth:`apply_node` puts one.
- Objects get ``metadata.uid``, ``creationTimestamp`` and a ``resourceVersion`` from ONE
  counter shared by every kind and bumped by every write (as etcd's revision); lists
  carry the counter in ``metadata.resourceVersion``. EndpointSlices also get a
  ``generation`` (moved by a change to anything but metadata, or to labels); Services and
  Nodes have none, as their strategies set none. Empty ``labels``, ``annotations`` and
  ``finalizers`` are not written (``omitempty``). A write
  that changes nothing is not written (same resourceVersion, no watch event), as on a
  real server. ``generateName`` works. List items carry no ``kind``/``apiVersion``; single
  objects and watch event objects do.
- Errors are real ``metav1.Status`` bodies: 404 NotFound, 409 AlreadyExists, 409 Conflict
  (PUT or PATCH whose ``metadata.resourceVersion`` is stale; an empty one updates
  unconditionally; also DELETE preconditions, in ``rest.BeforeDelete``'s words), 422
  Invalid with ``details.causes`` (also ``ListOptions.meta.k8s.io`` for the list and watch
  options ``ValidateListOptions`` refuses), 400 BadRequest (malformed selector, body/URL
  name or namespace mismatch, bad JSON), 401, 403, 405, 410, 415. Creating an object that
  carries a resourceVersion answers the server's 500 ``resourceVersion should not be set
  on objects to be created``.
- DELETE answers the deleted object for Services and a Status ``Success`` (with
  ``details``) for EndpointSlices, as kube-apiserver does (``ReturnDeletedObject``).
- PATCH: ``application/merge-patch+json`` (RFC 7386), ``application/json-patch+json``
  (RFC 6902; a failing op is 422 ``the server rejected our request due to an error in our
  request``) and ``application/strategic-merge-patch+json`` (the client's default for dict
  bodies), implemented as a merge patch that also merges Service ``spec.ports`` by
  ``port`` (an entry without ``port`` is the server's 500 ``map: map[...] does not
  contain declared merge key: port``) and honours ``$patch: delete``/``replace``; other
  lists are replaced (right for EndpointSlice ``endpoints``/``ports``, which are atomic).
  Server-side apply (``apply-patch+yaml``) answers 415.
- ``dryRun=All`` on create/update/patch/delete runs defaulting, validation and
  allocation and answers as if done, storing nothing (a held delete answers the object
  with ``deletionTimestamp`` set). Where it is read: the query for create, update and
  patch; for DELETE, as ``handlers/delete.go``, the body's DeleteOptions when the body is
  not empty (``{}`` counts: the query is then ignored, ``?dryRun=All`` included), the
  query only when there is no body.
- Services: defaults as the v1 defaulters (``sessionAffinityConfig`` for ``ClientIP``
  included) and the Service REST's IP families (a headless Service without selector is
  ``RequireDualStack`` with both families, even on this IPv4-only cluster);
  ``spec.clusterIP``/``clusterIPs`` allocated from 10.96.0.0/12 (sequentially from
  10.96.0.11, IPv4 only; 10.96.0.1 is the ``kubernetes`` Service's) unless headless
  (``None``) or ExternalName; a requested IP must be free and in range (``failed to
  allocate IP X: the provided network does not match the current range``); nodePorts
  30000-32767 for NodePort/LoadBalancer ports; headless NodePort/LoadBalancer is 422
  ``spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort
  services``; changing the cluster IP on update is 422 ``spec.clusterIPs[0]: Invalid
  value: ["None"]: may not change once set`` (after the Service REST's
  patchAllocatedValues/normalizeClusterIPs, so a PUT without clusterIP keeps it). Type
  changes release or allocate as the real server.
  No EndpointSlice controller: tests write slices themselves.
- Selectors: ``labelSelector`` with the full apimachinery grammar (``=``, ``==``, ``!=``,
  ``in``, ``notin``, ``key``, ``!key``, ``>``, ``<``; commas AND) and its error texts;
  ``fieldSelector`` on the fields each resource serves: ``metadata.name`` and
  ``metadata.namespace``, Services also ``spec.clusterIP`` and ``spec.type``, Nodes only
  ``metadata.name`` and ``spec.unschedulable`` (others: 400 ``field label not supported:
  X``, for EndpointSlices ``"X" is not a known field selector: only "metadata.name",
  "metadata.namespace"``). ``limit``/``continue`` paginate lists (with
  ``remainingItemCount``).
- Watch: ``resourceVersion=RV`` replays every retained event newer than RV, then streams
  live events; no RV (or ``0``) starts with synthetic ADDED events for the current
  objects. Lines are ``{"type": ..., "object": ...}`` in a chunked 200 response, flushed
  per event. A filtered watch sees an object that stops matching as DELETED and one that
  starts matching as ADDED (the watch cache's rule). Each kind keeps its last ``history``
  events (the watch cache's window); a watch from an older RV gets one ERROR event with
  Status ``{"reason":"Expired","code":410,"message":"too old resource version: RV
  (OLDEST)"}`` and the stream ends (HTTP 200); after a :meth:`compact` (an etcd compaction
  seen by a kube-apiserver that serves watches from etcd) the message is etcd's ``The
  resourceVersion for the provided watch is too old.``. With ``expired_as_http_410=True``
  it is a plain HTTP 410 with that Status instead (a fault for clients to survive:
  kube-apiserver 1.37 answers 200 and the ERROR event). ``list`` with
  ``resourceVersionMatch=Exact`` answers the state at that RV, or 410 ``The
  resourceVersion for the provided list is too old.`` when it is older than the history;
  a continue token that old is 410 too, whose Status carries a ``metadata.continue`` token
  that goes on from the latest state (etcd3's answer). ``allowWatchBookmarks=true`` adds
  BOOKMARKs, never without the flag: one ending the initial ADDED events (no RV, ``0`` or
  ``sendInitialEvents=true``), annotated ``k8s.io/initial-events-end``; one every
  ``bookmark_interval`` seconds; and one 2 s before ``timeoutSeconds`` ends the stream when
  the resourceVersion moved past what the stream sent (the cacher's ``nextBookmarkTime``).
  A BOOKMARK's object is the kind's empty object (``{"kind", "apiVersion", "metadata":
  {"resourceVersion"}, "addressType": "", "endpoints": null, "ports": null}`` for an
  EndpointSlice). ``sendInitialEvents`` needs ``resourceVersionMatch=NotOlderThan`` (422
  otherwise, as ``resourceVersionMatch`` without ``sendInitialEvents``);
  ``sendInitialEvents=false`` watches from now. ``timeoutSeconds=N`` ends the stream
  cleanly after N s (default ``max_watch_timeout``).
  :meth:`cut_watches` ends open streams now: abruptly (connection closed mid-body; the
  client sees ``urllib3.exceptions.ProtocolError``) or with ``clean=True`` as a normal end
  of stream (the client's ``Watch.stream`` then re-watches from its last RV by itself).
- Auth: ``tokens={"t1"}`` demands ``Authorization: Bearer <token>`` (scheme in any case,
  as the in-cluster loader sends ``bearer``) on every path, else 401 with the real
  Status; :meth:`rotate_token`/:meth:`set_tokens` act at once. ``deny(verb, resource,
  namespace=, group=, code=403)`` answers the real Forbidden Status, e.g.
  ``endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:app:dnsbalance"
  cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace
  "app"``; a 403 on a watch is an HTTP 403, not an event. SelfSubjectAccessReviews answer
  ``status.allowed`` by the same rules.
- Finalizers: DELETE of an object with ``metadata.finalizers`` only sets
  ``deletionTimestamp`` (once; a MODIFIED event) and answers the object; it stays
  readable until an update removes the last finalizer (then a DELETED event, carrying the
  object as it was stored, instead of a MODIFIED one), e.g.
  :meth:`remove_finalizers` playing the cloud controller. Adding a finalizer to an
  object being deleted is 422 ``Forbidden: no new finalizers can be added ...``.
- Request bodies in protobuf (``application/vnd.kubernetes.protobuf``), YAML or any media
  type but JSON are answered 415 UnsupportedMediaType: this fake decodes JSON only, and
  says so as the server does for a media type it does not accept (listing what the fake
  accepts).
- Faults: :meth:`fail_next` (the next n matching requests get that code and a Status,
  ``InternalError`` for 500; 429 always with ``Retry-After``; ``dry_run=True``/``False``
  matches only dry-run or only real writes), :meth:`clear_failures`,
  :meth:`delay` (sleep before answering). A watch denied while list is allowed:
  ``deny("watch", "endpointslices")``. Order per request:
  delay, authentication, authorization, injected failure, then the real work.
- Store helpers (:meth:`put`, :meth:`apply_slice`, :meth:`delete`, :meth:`get_object`,
  :meth:`objects`) go through the same admission and produce the same watch events as
  HTTP writes; they raise :class:`FakeKubernetesAPI.StatusError` (``.status`` is the body).
  :attr:`requests` logs every answered request as (method, path, query, verb, resource,
  status, field_manager): the last, for a create, update or patch, is the manager the
  real server would record in ``managedFields`` (``?fieldManager=``, else the
  User-Agent before its first ``/``: ``OpenAPI-Generator`` for the Python client).

Simplified or left out
----------------------
Namespaces are not objects (any namespace exists); no managedFields (the request log
says which field manager each write would be recorded under), server-side apply, status
subresource, deletecollection, protobuf/CBOR/YAML (always JSON; other bodies get 415),
admission webhooks; Endpoints are a read-only view of the slices
(``endpoints.py``). A watch from a future RV waits for it instead of the real "Too large
resource version" 504. Continue tokens read the current state, not a snapshot.
Validation covers names, types, ports, addresses and the Service rules above, not
everything; EndpointSlice addresses in 127.0.0.0/8 (and other loopback or link-local
ones) are accepted, where kube-apiserver refuses them (``may not be in the loopback
range``), so that tests can run their backends on loopback. Nodes are stored as written
(no ``node.kubernetes.io/not-ready`` taint or empty status from admission). The 415 for
an unknown PATCH type lists the patch types (kube-apiserver: ``415: Unsupported Media
Type``); a SelfSubjectAccessReview's ``status.reason`` is the fake's own; an unsupported
``dryRun`` value is 400 BadRequest (kube-apiserver: 422 Invalid on ``CreateOptions``
and its kin). The watch history is the last ``history`` events per kind (a watch
cache's window is by count and age). Periodic bookmarks come every
``bookmark_interval`` s (60 by default, as the real server's about once a minute)
whether or not the resourceVersion moved (the real cacher sends one only past the
stream's resourceVersion). ``/version`` says v1.37.2. Injected failures use the reason
of their code.

Clients
-------
- :meth:`api_client` returns a ``kubernetes.client.ApiClient`` for :attr:`url` (close it:
  ``with api.api_client() as client:``). :meth:`write_kubeconfig` writes a kubeconfig for
  ``kubernetes.config.load_kube_config(config_file=...)`` or ``new_client_from_config``.
- In-cluster config: :meth:`write_service_account` writes ``token``, ``namespace`` and a
  dummy ``ca.crt`` like /var/run/secrets/kubernetes.io/serviceaccount.
  ``InClusterConfigLoader(token_filename=..., cert_filename=..., environ=
  api.incluster_environ())`` loads them but always builds an ``https://`` host, so set
  ``loader.host = api.url`` as well as ``configuration.host`` after ``load_and_set``: with
  ``try_refresh_token=True`` (the default) its refresh hook re-applies ``loader.host`` and
  the token on EVERY request. It re-reads the token file only once ``token_expires_at``
  (a naive ``datetime.now()`` + 1 minute) has passed; to test rotation without waiting,
  write the new token and set ``loader.token_expires_at = datetime.datetime.now()``.
  :meth:`incluster_config` does all this and returns ``(configuration, loader)``.

What the official client (kubernetes 37) does with these answers
-------------------------------------------------------------------
Pinned by tests/testing/test_fake_api.py:

- ``Watch().stream(list_fn, ..., resource_version=RV)`` without ``timeout_seconds``: when
  a stream ends cleanly it calls again from the last resourceVersion it saw (from
  ADDED/MODIFIED/DELETED objects and BOOKMARKs alike). On an ERROR 410 event it retries
  once from the same RV, and on a second 410 raises ``ApiException(status=410,
  reason="Expired: <the Status message>")``: two watch requests. With
  ``timeout_seconds`` it neither resumes nor retries: one request, then the generator
  ends (or raises that 410 at once).
- An HTTP 410 (``expired_as_http_410``) raises ``ApiException(410)`` with the Status as
  ``body`` on the first request: no retry.
- An abrupt cut raises ``urllib3.exceptions.ProtocolError("Response ended
  prematurely")`` out of the generator; ``Watch.resource_version`` still holds the last
  RV seen, and a new stream from it misses nothing retained. ``Watch.stop()`` called
  from another thread shuts the socket and surfaces the same ``ProtocolError``; call it
  from the consuming loop instead.
- BOOKMARK events reach the caller with ``object`` left a dict (not deserialized).
- A 401/403 on a watch raises ``ApiException`` from the first call, before any event.
"""
