"""A real Kubernetes control plane on loopback for tests: :class:`~.server.ControlPlane`.

- ``assets``: the pinned versions (``versions.env``) and where the binaries are;
- ``process``: one component as a child process, its log, stopped by PID;
- ``server``: ``ControlPlane``, which starts etcd, kube-apiserver,
  kube-controller-manager and CoreDNS;
- ``cluster``: the helpers that make a test read like a cluster (Nodes, Pods with a
  status, Services, waiting for the slices);
- ``podnet`` + ``podserver``: the pods' network namespace and their gRPC backends.
"""
