use super::*;

fn crontab() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
                }}},
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}
                ]
            }]
        }
    })
}

fn messages(crd: &Value) -> Vec<String> {
    let mut crd = crd.clone();
    apply_defaults(&mut crd);
    validate_crd(&crd).iter().map(FieldError::message).collect()
}

#[test]
fn a_good_crd_is_valid_and_defaulted() {
    let mut crd = crontab();
    apply_defaults(&mut crd);
    assert_eq!(crd["spec"]["names"]["singular"], "crontab");
    assert_eq!(crd["spec"]["names"]["listKind"], "CronTabList");
    assert!(validate_crd(&crd).is_empty());
}

/// An edit that breaks a good CRD.
type Breakage = fn(&mut Value);

#[test]
fn bad_crds_name_the_field() {
    let cases: Vec<(Breakage, &str)> = vec![
        (|c| c["metadata"]["name"] = json!("x.stable.example.com"),
         r#"metadata.name: Invalid value: "x.stable.example.com": must be spec.names.plural+"."+spec.group"#),
        (|c| c["spec"]["group"] = json!("nodot"),
         r#"spec.group: Invalid value: "nodot": should be a domain with at least one dot"#),
        (|c| c["spec"]["group"] = json!("networking.k8s.io"),
         r#"spec.group: Invalid value: "networking.k8s.io": is a group this server serves itself"#),
        (|c| c["spec"]["scope"] = json!("Global"),
         r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#),
        (|c| c["spec"]["versions"][0]["storage"] = json!(false),
         r#"spec.versions: Invalid value: 0 storage versions: must have exactly one version marked as storage version"#),
        (|c| { c["spec"]["versions"][0].as_object_mut().unwrap().remove("schema"); },
         "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"),
        (|c| c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["x"] = json!({}),
         "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[x].type: Required value: must not be empty for specified object fields"),
    ];
    for (edit, want) in cases {
        let mut crd = crontab();
        edit(&mut crd);
        assert!(
            messages(&crd).contains(&want.to_string()),
            "{:?}",
            messages(&crd)
        );
    }
    let mut crd = crontab();
    crd["spec"]["names"]["plural"] = json!("");
    assert!(messages(&crd).contains(&"spec.names.plural: Required value".to_string()));
}

#[test]
fn served_versions_become_resources() {
    let mut crd = crontab();
    apply_defaults(&mut crd);
    let served = served_versions(&crd);
    assert_eq!(served.len(), 1);
    let r = served[0];
    assert_eq!(
        (r.group, r.version, r.plural, r.kind),
        ("stable.example.com", "v1", "crontabs", "CronTab")
    );
    assert!(r.namespaced);
    assert_eq!(r.short_names, &["ct"]);
    assert_eq!(r.subresources, &["status", "scale"]);
    // The same definition is interned, not leaked again.
    assert!(std::ptr::eq(r, served_versions(&crd)[0]));
    let custom = r.custom.unwrap();
    let cols: Vec<&str> = custom.table_columns().iter().map(|c| c.0).collect();
    assert_eq!(cols, vec!["Name", "Replicas"]);
    let row = custom.table_row(
        &json!({"metadata": {"name": "a"}, "spec": {"replicas": 3}}),
        Utc::now(),
    );
    assert_eq!(row, vec![json!("a"), json!(3)]);
}

#[test]
fn status_is_established_and_records_stored_versions() {
    let mut crd = crontab();
    set_status(&mut crd, None, Utc::now());
    assert_eq!(crd["status"]["conditions"][1]["type"], "Established");
    assert_eq!(crd["status"]["conditions"][1]["status"], "True");
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab");
}

#[test]
fn json_paths() {
    let obj = json!({"a": {"b": [{"c": 1}]}});
    assert_eq!(json_path(&obj, ".a.b[0].c"), Some(&json!(1)));
    assert_eq!(json_path(&obj, ".a.x"), None);
    let mut o = json!({});
    set_json_path(&mut o, ".spec.replicas", json!(2));
    assert_eq!(o, json!({"spec": {"replicas": 2}}));
}
