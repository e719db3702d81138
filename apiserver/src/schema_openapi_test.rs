//! Tests for the OpenAPI v3 documents.

use super::*;

fn doc(path: &str) -> Value {
    let bytes = v3_document(path).expect("document exists");
    serde_json::from_slice(&bytes).expect("document parses")
}

#[test]
fn index_lists_every_group_version_with_a_hash() {
    let index = v3_index();
    let core = index["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    assert!(core.starts_with("/openapi/v3/api/v1?hash="));
    let hash = core.rsplit('=').next().unwrap();
    assert_eq!(hash.len(), 64);
    let bytes = v3_document("api/v1").unwrap();
    assert_eq!(hash, hex::encode_upper(Sha256::digest(bytes.as_slice())));
    assert!(index["paths"]["apis/coordination.k8s.io/v1"].is_object());
    assert!(v3_document("apis/nope/v1").is_none());
}

#[test]
fn core_document_has_pod_schema_and_patch_field_validation() {
    let d = doc("api/v1");
    assert_eq!(d["openapi"], "3.0.0");
    let pod = &d["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "version": "v1", "kind": "Pod"}])
    );
    assert!(
        d["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object()
    );
    assert!(d["components"]["schemas"]["io.k8s.api.core.v1.PodList"].is_object());
    // Every $ref points into components.schemas and resolves.
    fn walk(v: &Value, schemas: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let name = r
                        .strip_prefix(REF_PREFIX)
                        .unwrap_or_else(|| panic!("bad ref {r}"));
                    assert!(schemas.get(name).is_some(), "dangling ref {r}");
                }
                m.values().for_each(|x| walk(x, schemas));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, schemas)),
            _ => {}
        }
    }
    walk(&d, &d["components"]["schemas"]);
    // cli-runtime's supportsQueryParamV3: every patch operation of the GVK has fieldValidation.
    let mut seen = 0;
    for (_, item) in d["paths"].as_object().unwrap() {
        if let Some(patch) = item.get("patch") {
            if patch["x-kubernetes-group-version-kind"]
                == json!({"group": "", "version": "v1", "kind": "Pod"})
            {
                seen += 1;
                let params = patch["parameters"].as_array().unwrap();
                assert!(params.iter().any(|p| p["name"] == "fieldValidation"));
            }
        }
    }
    assert_eq!(seen, 2, "item and status patch operations");
    let item = &d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    for op in ["get", "put", "patch", "delete"] {
        assert!(item[op].is_object(), "{op}");
    }
    // kubectl explain finds the GVK on the all-namespaces list path.
    assert_eq!(
        d["paths"]["/api/v1/pods"]["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Pod"
    );
    assert_eq!(
        d["paths"]["/api/v1/nodes"]["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Node"
    );
}

#[test]
fn lease_document() {
    let d = doc("apis/coordination.k8s.io/v1");
    let lease = &d["components"]["schemas"]["io.k8s.api.coordination.v1.Lease"];
    assert_eq!(
        lease["x-kubernetes-group-version-kind"][0]["group"],
        "coordination.k8s.io"
    );
    assert!(
        d["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"]["patch"]
            .is_object()
    );
}

#[test]
fn apps_document_has_scale_and_deployment_schemas() {
    let d = doc("apis/apps/v1");
    let scale = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["put"]["x-kubernetes-group-version-kind"]["kind"],
        "Scale"
    );
    assert!(d["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
    let deployment = &d["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"][0]["kind"],
        "Deployment"
    );
    let core = doc("api/v1");
    let eviction = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"];
    assert_eq!(
        eviction["post"]["x-kubernetes-group-version-kind"]["group"],
        "policy"
    );
    for gv in [
        "apis/rbac.authorization.k8s.io/v1",
        "apis/autoscaling/v1",
        "apis/autoscaling/v2",
        "apis/batch/v1",
    ] {
        assert!(
            doc(gv)["paths"].as_object().is_some_and(|p| !p.is_empty()),
            "{gv}"
        );
    }
}
