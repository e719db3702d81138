"""The official Python `kubernetes` client against a Skiff API server.

Driven by `apiserver/tests/python_client.rs`, which starts a real server
and runs `python3 client_matrix.py KUBECONFIG`. The script uses the client
the way users do (typed `CoreV1Api`/`AppsV1Api`, the `watch` module, the
`dynamic` client) and needs nothing from the server beyond the
Kubernetes API, with one exception: to get 410 Gone it prints the line
`@@compact` and waits for `ok` on stdin, and the driver compacts the
store to its current revision in between (an API server cannot be asked
to compact over HTTP; kube-apiserver compacts on a 5-minute timer).

Every check is an `assert` with a message; the script prints `ok <step>`
after each step so that a failure shows how far it came.
"""

import json
import sys
from contextlib import contextmanager

from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

NS = "default"


def step(name):
    print(f"ok {name}", flush=True)


def compact():
    """Asks the driver to compact the store; returns after it has."""
    print("@@compact", flush=True)
    answer = sys.stdin.readline().strip()
    assert answer == "ok", f"driver answered {answer!r} to @@compact"


@contextmanager
def content_type(api_client, ct):
    """The generated client picks strategic merge for a dict PATCH body and
    JSON patch for a list; a default header overrides that (the usual way
    to send a merge patch or server-side apply with this client)."""
    api_client.set_default_header("Content-Type", ct)
    try:
        yield
    finally:
        api_client.default_headers.pop("Content-Type", None)


def api_error(fn, *args, **kwargs):
    """Calls `fn`, which must fail with an ApiException; returns it and its
    decoded `metav1.Status` body."""
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        body = json.loads(e.body) if e.body else {}
        assert body.get("kind") == "Status", f"error body is not a Status: {e.body!r}"
        assert body.get("code") == e.status, f"Status.code {body.get('code')} != HTTP {e.status}"
        return e, body
    raise AssertionError(f"{fn.__name__} succeeded, expected an ApiException")


def configmap(name, labels=None, data=None):
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        data=data or {},
    )


def pod(name, labels=None):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="c", image="busybox", command=["sleep", "3600"])]
        ),
    )


def deployment(name, replicas):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="busybox")]),
            ),
        ),
    )


def configmap_crud(v1):
    created = v1.create_namespaced_config_map(NS, configmap("cm", {"app": "a"}, {"k": "v"}))
    assert created.metadata.uid, "create returns the stored object with a uid"
    assert created.metadata.resource_version, "and a resourceVersion"
    got = v1.read_namespaced_config_map("cm", NS)
    assert got.data == {"k": "v"}, got.data

    got.data["k2"] = "v2"
    replaced = v1.replace_namespaced_config_map("cm", NS, got)
    assert replaced.data == {"k": "v", "k2": "v2"}, replaced.data
    assert int(replaced.metadata.resource_version) > int(got.metadata.resource_version)

    # Strategic merge (the client's default for a dict body).
    smp = v1.patch_namespaced_config_map("cm", NS, {"data": {"smp": "1"}})
    assert smp.data["smp"] == "1" and smp.data["k"] == "v", smp.data
    # JSON patch (a list body).
    jp = v1.patch_namespaced_config_map(
        "cm", NS, [{"op": "remove", "path": "/data/k2"}, {"op": "add", "path": "/data/jp", "value": "2"}]
    )
    assert "k2" not in jp.data and jp.data["jp"] == "2", jp.data
    # Merge patch: null deletes a key.
    with content_type(v1.api_client, "application/merge-patch+json"):
        mp = v1.patch_namespaced_config_map("cm", NS, {"data": {"smp": None, "mp": "3"}})
    assert "smp" not in mp.data and mp.data["mp"] == "3", mp.data
    # Server-side apply (JSON is YAML).
    with content_type(v1.api_client, "application/apply-patch+yaml"):
        ssa = v1.patch_namespaced_config_map(
            "cm",
            NS,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"ssa": "4"}},
            field_manager="python",
        )
    assert ssa.data["ssa"] == "4", ssa.data
    managers = {m.manager for m in ssa.metadata.managed_fields or []}
    assert "python" in managers, managers

    status = v1.delete_namespaced_config_map("cm", NS)
    assert status is not None
    e, body = api_error(v1.read_namespaced_config_map, "cm", NS)
    assert e.status == 404 and body["reason"] == "NotFound", body
    step("configmap crud")


def pod_crud_and_status(v1):
    created = v1.create_namespaced_pod(NS, pod("p1", {"app": "web"}))
    assert created.status.phase == "Pending", created.status
    assert created.spec.restart_policy == "Always", "defaults applied"
    got = v1.read_namespaced_pod("p1", NS)
    got.metadata.annotations = {"a": "1"}
    replaced = v1.replace_namespaced_pod("p1", NS, got)
    assert replaced.metadata.annotations == {"a": "1"}
    # Strategic merge on a list with a merge key: containers merge by name.
    smp = v1.patch_namespaced_pod(
        "p1", NS, {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}
    )
    assert [c.image for c in smp.spec.containers] == ["busybox:2"], smp.spec.containers
    assert smp.spec.containers[0].command == ["sleep", "3600"], "other container fields kept"

    # The status subresource: a status patch changes only status, a main
    # resource write cannot change status.
    st = v1.patch_namespaced_pod_status("p1", NS, {"status": {"phase": "Running", "podIP": "10.0.0.7"}})
    assert st.status.phase == "Running" and st.status.pod_ip == "10.0.0.7", st.status
    read_status = v1.read_namespaced_pod_status("p1", NS)
    assert read_status.status.phase == "Running"
    again = v1.patch_namespaced_pod("p1", NS, {"status": {"phase": "Failed"}})
    assert again.status.phase == "Running", "status ignored on the main resource"

    v1.delete_namespaced_pod("p1", NS, grace_period_seconds=0)
    e, _ = api_error(v1.read_namespaced_pod, "p1", NS)
    assert e.status == 404
    step("pod crud and status")


def deployment_crud_status_scale(apps):
    created = apps.create_namespaced_deployment(NS, deployment("web", 2))
    assert created.spec.replicas == 2
    assert created.spec.strategy.type == "RollingUpdate", "defaults applied"
    got = apps.read_namespaced_deployment("web", NS)
    got.spec.template.spec.containers[0].image = "busybox:2"
    replaced = apps.replace_namespaced_deployment("web", NS, got)
    assert replaced.spec.template.spec.containers[0].image == "busybox:2"
    assert replaced.metadata.generation == 2, replaced.metadata.generation
    with content_type(apps.api_client, "application/merge-patch+json"):
        mp = apps.patch_namespaced_deployment("web", NS, {"metadata": {"labels": {"tier": "front"}}})
    assert mp.metadata.labels == {"tier": "front"}, mp.metadata.labels
    jp = apps.patch_namespaced_deployment(
        "web", NS, [{"op": "add", "path": "/spec/minReadySeconds", "value": 5}]
    )
    assert jp.spec.min_ready_seconds == 5

    # Status subresource.
    st = apps.patch_namespaced_deployment_status(
        "web", NS, {"status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 1}}
    )
    assert st.status.ready_replicas == 1, st.status
    got = apps.read_namespaced_deployment_status("web", NS)
    got.status.ready_replicas = 2
    st = apps.replace_namespaced_deployment_status("web", NS, got)
    assert st.status.ready_replicas == 2

    # Scale subresource: read, replace, patch.
    scale = apps.read_namespaced_deployment_scale("web", NS)
    assert scale.spec.replicas == 2 and scale.status.selector == "app=web", scale
    scale.spec.replicas = 3
    scale = apps.replace_namespaced_deployment_scale("web", NS, scale)
    assert scale.spec.replicas == 3
    scale = apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 4}})
    assert scale.spec.replicas == 4
    assert apps.read_namespaced_deployment("web", NS).spec.replicas == 4

    apps.delete_namespaced_deployment("web", NS)
    e, _ = api_error(apps.read_namespaced_deployment, "web", NS)
    assert e.status == 404
    step("deployment crud, status and scale")


def names(lst):
    return sorted(i.metadata.name for i in lst.items)


def selectors(v1):
    for name, labels in [
        ("s-prod", {"env": "prod", "tier": "web"}),
        ("s-dev", {"env": "dev"}),
        ("s-test", {"env": "test", "tier": "db"}),
        ("s-none", {"tier": "web"}),
    ]:
        labels["sel"] = "yes"
        v1.create_namespaced_config_map(NS, configmap(name, labels))
    cases = [
        ("env=prod", ["s-prod"]),
        ("env==prod", ["s-prod"]),
        ("env!=prod", ["s-dev", "s-none", "s-test"]),
        ("env in (dev,test)", ["s-dev", "s-test"]),
        ("env notin (dev,test)", ["s-none", "s-prod"]),
        ("env", ["s-dev", "s-prod", "s-test"]),
        ("!env", ["s-none"]),
        ("env,tier=web", ["s-prod"]),
        ("tier in (web),env notin (prod)", ["s-none"]),
    ]
    for sel, want in cases:
        got = names(v1.list_namespaced_config_map(NS, label_selector=f"sel=yes,{sel}"))
        assert got == want, f"label selector {sel!r}: {got} != {want}"

    got = names(v1.list_namespaced_config_map(NS, field_selector="metadata.name=s-dev"))
    assert got == ["s-dev"], got
    got = names(
        v1.list_namespaced_config_map(NS, label_selector="sel=yes", field_selector="metadata.name!=s-dev")
    )
    assert got == ["s-none", "s-prod", "s-test"], got
    # Field selectors on pods, across namespaces.
    v1.create_namespaced_pod(NS, pod("f1"))
    v1.create_namespaced_pod(NS, pod("f2"))
    v1.patch_namespaced_pod_status("f2", NS, {"status": {"phase": "Running"}})
    got = names(v1.list_pod_for_all_namespaces(field_selector="status.phase=Running"))
    assert got == ["f2"], got
    got = names(v1.list_namespaced_pod(NS, field_selector="status.phase!=Running,metadata.namespace=default"))
    assert got == ["f1"], got
    e, body = api_error(v1.list_namespaced_pod, NS, field_selector="spec.noSuchField=x")
    assert e.status == 400 and body["reason"] == "BadRequest", body
    e, _ = api_error(v1.list_namespaced_config_map, NS, label_selector="env in (")
    assert e.status == 400, e.status
    for p in ["f1", "f2"]:
        v1.delete_namespaced_pod(p, NS, grace_period_seconds=0)
    v1.delete_collection_namespaced_config_map(NS, label_selector="sel=yes")
    assert names(v1.list_namespaced_config_map(NS, label_selector="sel=yes")) == []
    step("label and field selectors")


def pagination(v1):
    want = [f"page-{i:02}" for i in range(11)]
    for n in want:
        v1.create_namespaced_config_map(NS, configmap(n, {"page": "yes"}))
    seen, cont, pages = [], None, 0
    while True:
        lst = v1.list_namespaced_config_map(NS, label_selector="page=yes", limit=4, _continue=cont)
        pages += 1
        assert len(lst.items) <= 4, len(lst.items)
        seen += [i.metadata.name for i in lst.items]
        cont = lst.metadata._continue
        # (kube-apiserver leaves remainingItemCount out under a selector;
        # Skiff never sets it.)
        if not cont:
            break
    assert seen == want and pages == 3, (seen, pages)

    # A page continues at the first page's snapshot: later writes stay out.
    first = v1.list_namespaced_config_map(NS, label_selector="page=yes", limit=4)
    v1.create_namespaced_config_map(NS, configmap("page-99", {"page": "yes"}))
    v1.delete_namespaced_config_map("page-10", NS)
    rest = []
    cont = first.metadata._continue
    while cont:
        lst = v1.list_namespaced_config_map(NS, label_selector="page=yes", limit=4, _continue=cont)
        rest += [i.metadata.name for i in lst.items]
        cont = lst.metadata._continue
    assert [i.metadata.name for i in first.items] + rest == want, rest

    # A continue token older than a compaction is 410 Expired.
    first = v1.list_namespaced_config_map(NS, label_selector="page=yes", limit=2)
    v1.patch_namespaced_config_map("page-00", NS, {"data": {"x": "1"}})
    compact()
    e, body = api_error(
        v1.list_namespaced_config_map, NS, label_selector="page=yes", limit=2, _continue=first.metadata._continue
    )
    assert e.status == 410 and body["reason"] == "Expired", body
    e, body = api_error(v1.list_namespaced_config_map, NS, _continue="not-a-token")
    assert e.status == 400, body
    v1.delete_collection_namespaced_config_map(NS, label_selector="page=yes")
    step("pagination with limit and continue")


def watches(v1):
    start = v1.list_namespaced_config_map(NS).metadata.resource_version
    v1.create_namespaced_config_map(NS, configmap("w1", {"w": "yes"}))
    v1.patch_namespaced_config_map("w1", NS, {"data": {"a": "1"}})
    v1.delete_namespaced_config_map("w1", NS)

    def collect(rv, n):
        w = watch.Watch()
        out = []
        for ev in w.stream(
            v1.list_namespaced_config_map, NS, label_selector="w=yes", resource_version=rv, timeout_seconds=10
        ):
            out.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
            if len(out) == n:
                w.stop()
        return out

    events = collect(start, 3)
    assert [t for t, _, _ in events] == ["ADDED", "MODIFIED", "DELETED"], events
    # Resume from the middle: only what came after.
    resumed = collect(events[0][2], 2)
    assert [t for t, _, _ in resumed] == ["MODIFIED", "DELETED"], resumed
    assert resumed == events[1:], (resumed, events)

    # After a compaction, an older resourceVersion is 410 Gone: the watch
    # module raises it as an ApiException when the caller set a timeout.
    v1.create_namespaced_config_map(NS, configmap("w2", {"w": "yes"}))
    compact()
    try:
        collect(start, 1)
        raise AssertionError("watch from a compacted resourceVersion did not fail")
    except ApiException as e:
        assert e.status == 410, e
        assert e.reason.startswith("Expired: too old resource version"), e.reason
    # A fresh watch from the current resourceVersion works again.
    now = v1.list_namespaced_config_map(NS).metadata.resource_version
    v1.patch_namespaced_config_map("w2", NS, {"data": {"b": "2"}})
    fresh = collect(now, 1)
    assert fresh[0][:2] == ("MODIFIED", "w2"), fresh
    v1.delete_namespaced_config_map("w2", NS)
    step("watch, resume and 410 Gone")


def errors(v1):
    v1.create_namespaced_config_map(NS, configmap("dup"))
    e, body = api_error(v1.create_namespaced_config_map, NS, configmap("dup"))
    assert e.status == 409 and body["reason"] == "AlreadyExists", body
    assert body["details"]["name"] == "dup" and body["details"]["kind"] == "configmaps", body

    cm = v1.read_namespaced_config_map("dup", NS)
    v1.patch_namespaced_config_map("dup", NS, {"data": {"x": "1"}})
    e, body = api_error(v1.replace_namespaced_config_map, "dup", NS, cm)
    assert e.status == 409 and body["reason"] == "Conflict", body
    assert "the object has been modified" in body["message"], body["message"]

    e, body = api_error(v1.read_namespaced_config_map, "missing", NS)
    assert e.status == 404 and body["reason"] == "NotFound", body
    assert body["message"] == 'configmaps "missing" not found', body["message"]
    e, body = api_error(v1.read_namespace, "no-such-ns")
    assert e.status == 404, body

    e, body = api_error(v1.create_namespaced_config_map, NS, configmap("Bad_Name"))
    assert e.status == 422 and body["reason"] == "Invalid", body
    causes = body["details"]["causes"]
    assert any(c["field"] == "metadata.name" and c["reason"] == "FieldValueInvalid" for c in causes), causes

    bad = pod("badpod")
    bad.spec.containers[0].name = ""
    bad.spec.restart_policy = "Sometimes"
    e, body = api_error(v1.create_namespaced_pod, NS, bad)
    assert e.status == 422 and body["reason"] == "Invalid", body
    fields = {c["field"] for c in body["details"]["causes"]}
    assert "spec.restartPolicy" in fields and "spec.containers[0].name" in fields, fields

    e, body = api_error(v1.patch_namespaced_config_map, "dup", NS, [{"op": "test", "path": "/data/x", "value": "2"}])
    assert e.status in (409, 422), body
    v1.delete_namespaced_config_map("dup", NS)
    step("errors as ApiException")


def dynamic_client(api_client):
    """The dynamic client discovers resources from /api and /apis."""
    dyn = dynamic.DynamicClient(api_client)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    cms.create(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn"}, "data": {"a": "1"}}, namespace=NS)
    got = cms.patch(
        body={"data": {"a": None, "b": "2"}},
        name="dyn",
        namespace=NS,
        content_type="application/merge-patch+json",
    )
    assert dict(got.data) == {"b": "2"}, got.data
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deps.namespaced and "scale" in deps.subresources, deps.subresources
    cms.delete(name="dyn", namespace=NS)
    step("dynamic client")


def main():
    config.load_kube_config(config_file=sys.argv[1])
    api_client = client.ApiClient()
    v1 = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    version = client.VersionApi(api_client).get_code()
    assert version.major == "1", version
    step(f"version {version.git_version}")
    configmap_crud(v1)
    pod_crud_and_status(v1)
    deployment_crud_status_scale(apps)
    selectors(v1)
    pagination(v1)
    watches(v1)
    errors(v1)
    dynamic_client(api_client)
    print("@@done", flush=True)


if __name__ == "__main__":
    main()
