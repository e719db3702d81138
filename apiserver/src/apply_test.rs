use super::*;
use crate::fieldpath::kind_shape;

fn writer(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        api_version: "apps/v1",
        time: "2026-01-01T00:00:00Z",
        subresource: None,
    }
}

fn shape() -> Shape {
    kind_shape("apps/v1", "Deployment")
}

fn deployment(image: &str, replicas: Option<i64>, extra_env: bool) -> Value {
    let mut env = vec![json!({"name": "A", "value": "1"})];
    if extra_env {
        env.push(json!({"name": "B", "value": "2"}));
    }
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": image,
                    "ports": [{"containerPort": 80}],
                    "env": env
                }]}
            }
        }
    });
    if let Some(r) = replicas {
        d["spec"]["replicas"] = json!(r);
    }
    d
}

fn fields_of(obj: &Value, manager: &str) -> Value {
    managed_fields(obj)
        .into_iter()
        .find(|e| e["manager"] == manager)
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn first_apply_creates_and_owns_what_it_set() {
    let cfg = deployment("busybox:1", Some(2), false);
    let out = apply(None, &cfg, &writer("kubectl"), false, shape()).unwrap();
    assert_eq!(out["spec"]["replicas"], 2);
    let f = fields_of(&out, "kubectl");
    assert_eq!(f["f:spec"]["f:replicas"], json!({}));
    // LabelSelector is atomic: owned as one value.
    assert_eq!(f["f:spec"]["f:selector"], json!({}));
    let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(c["."], json!({}));
    assert_eq!(c["f:image"], json!({}));
    // Ports are keyed by containerPort and the defaulted protocol.
    assert!(c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"].is_object());
    assert!(f.get("f:metadata").unwrap().get("f:name").is_none());
    let e = &managed_fields(&out)[0];
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["fieldsType"], "FieldsV1");
}

/// Table: (what, first manager's write, second apply, force, expected
/// conflict fields or the resulting image/replicas).
#[test]
fn conflicts_and_force() {
    struct Case {
        name: &'static str,
        second: Value,
        force: bool,
        conflicts: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "same values are shared, no conflict",
            second: deployment("busybox:1", Some(2), false),
            force: false,
            conflicts: &[],
        },
        Case {
            name: "a changed image conflicts",
            second: deployment("busybox:2", Some(2), false),
            force: false,
            conflicts: &[".spec.template.spec.containers[name=\"web\"].image"],
        },
        Case {
            name: "two changed fields",
            second: deployment("busybox:2", Some(5), false),
            force: false,
            conflicts: &[
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"web\"].image",
            ],
        },
        Case {
            name: "force takes them",
            second: deployment("busybox:2", Some(5), false),
            force: true,
            conflicts: &[],
        },
        Case {
            name: "a field nobody owns is free",
            second: deployment("busybox:1", Some(2), true),
            force: false,
            conflicts: &[],
        },
    ];
    let first = apply(
        None,
        &deployment("busybox:1", Some(2), false),
        &writer("alice"),
        false,
        shape(),
    )
    .unwrap();
    for c in cases {
        match apply(Some(&first), &c.second, &writer("bob"), c.force, shape()) {
            Ok(out) if c.conflicts.is_empty() => {
                assert_eq!(
                    out["spec"]["template"]["spec"]["containers"][0]["image"],
                    c.second["spec"]["template"]["spec"]["containers"][0]["image"],
                    "{}",
                    c.name
                );
                if c.force {
                    // Alice lost the fields bob forced.
                    let a = fields_of(&out, "alice");
                    assert!(a["f:spec"].get("f:replicas").is_none(), "{}", c.name);
                    let b = fields_of(&out, "bob");
                    assert_eq!(b["f:spec"]["f:replicas"], json!({}), "{}", c.name);
                }
            }
            Ok(_) => panic!("{}: expected conflicts {:?}", c.name, c.conflicts),
            Err(got) => {
                let fields: Vec<&str> = got.iter().map(|g| g.field.as_str()).collect();
                assert_eq!(fields, c.conflicts, "{}", c.name);
                assert!(got.iter().all(|g| g.manager == "\"alice\""), "{}", c.name);
            }
        }
    }
}

#[test]
fn reapply_without_a_field_removes_it() {
    let one = apply(
        None,
        &deployment("busybox:1", Some(2), true),
        &writer("kubectl"),
        false,
        shape(),
    )
    .unwrap();
    // Second apply drops env B and replicas.
    let two = apply(
        Some(&one),
        &deployment("busybox:1", None, false),
        &writer("kubectl"),
        false,
        shape(),
    )
    .unwrap();
    let env = &two["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env, &json!([{"name": "A", "value": "1"}]));
    assert!(two["spec"].get("replicas").is_none());
    let f = fields_of(&two, "kubectl");
    assert!(f["f:spec"].get("f:replicas").is_none());
}

#[test]
fn fields_another_manager_owns_stay_on_reapply() {
    let one = apply(
        None,
        &deployment("busybox:1", Some(2), false),
        &writer("kubectl"),
        false,
        shape(),
    )
    .unwrap();
    // A controller (Update) sets replicas to the same value: shared.
    let mut scaled = one.clone();
    scaled["spec"]["replicas"] = json!(2);
    scaled["metadata"]["managedFields"] =
        Value::Array(update(Some(&one), &scaled, &writer("hpa"), shape()));
    // No change by the update: hpa gets no entry.
    assert!(fields_of(&scaled, "hpa").is_null());
    let mut scaled2 = one.clone();
    scaled2["spec"]["replicas"] = json!(4);
    scaled2["metadata"]["managedFields"] =
        Value::Array(update(Some(&one), &scaled2, &writer("hpa"), shape()));
    // The updater took replicas from the applier.
    assert_eq!(
        fields_of(&scaled2, "hpa")["f:spec"]["f:replicas"],
        json!({})
    );
    assert!(fields_of(&scaled2, "kubectl")["f:spec"]
        .get("f:replicas")
        .is_none());
    // Re-applying without replicas leaves hpa's value alone.
    let two = apply(
        Some(&scaled2),
        &deployment("busybox:1", None, false),
        &writer("kubectl"),
        false,
        shape(),
    )
    .unwrap();
    assert_eq!(two["spec"]["replicas"], 4);
    // And applying replicas again conflicts with hpa.
    let err = apply(
        Some(&scaled2),
        &deployment("busybox:1", Some(3), false),
        &writer("kubectl"),
        false,
        shape(),
    )
    .unwrap_err();
    assert_eq!(err[0].field, ".spec.replicas");
    assert!(err[0].manager.starts_with("\"hpa\" using apps/v1"));
    assert!(
        conflict_message(&err).starts_with("Apply failed with 1 conflict: conflict with \"hpa\"")
    );
}

#[test]
fn update_tracks_create_and_changes() {
    let obj = deployment("busybox:1", Some(1), false);
    let mf = update(None, &obj, &writer("kubectl-create"), shape());
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0]["operation"], "Update");
    assert_eq!(mf[0]["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    // Status and server metadata are not tracked on the main resource.
    let mut with_status = obj.clone();
    with_status["status"] = json!({"replicas": 1});
    with_status["metadata"]["uid"] = json!("u");
    let mf = update(None, &with_status, &writer("x"), shape());
    assert!(mf[0]["fieldsV1"].get("f:status").is_none());
    assert!(mf[0]["fieldsV1"]["f:metadata"].get("f:uid").is_none());
    // On the status subresource only status is.
    let w = Writer {
        subresource: Some("status"),
        ..writer("ctrl")
    };
    let mf = update(Some(&obj), &with_status, &w, shape());
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0]["subresource"], "status");
    assert_eq!(mf[0]["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
}

#[test]
fn field_sets_round_trip_fields_v1() {
    let obj = deployment("busybox:1", Some(2), true);
    let set = fieldpath::of_object(&tracked(&obj, None), shape());
    let v1 = set.to_fields_v1();
    assert_eq!(FieldSet::from_fields_v1(&v1), set);
    assert!(!set.paths().is_empty());
}

#[test]
fn conflict_messages_group_by_manager() {
    let cs = vec![
        Conflict {
            manager: "\"b\"".into(),
            field: ".spec.x".into(),
        },
        Conflict {
            manager: "\"a\"".into(),
            field: ".spec.y".into(),
        },
    ];
    assert_eq!(
        conflict_message(&cs),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.y\nconflicts with \"b\":\n- .spec.x"
    );
}
