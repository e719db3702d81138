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

/// A pod with most shapes a field set meets: struct fields, maps,
/// associative lists (containers by name, ports by port and protocol,
/// conditions by type), a set list (finalizers), atomic values.
fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p", "namespace": "default", "uid": "u", "resourceVersion": "7",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"a": "1"},
            "finalizers": ["x/one", "x/two"]
        },
        "spec": {
            "nodeName": "n1",
            "containers": [
                {"name": "web", "image": "busybox:1", "args": ["sleep", "1"],
                 "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                 "env": [{"name": "A", "value": "1"}],
                 "resources": {"requests": {"cpu": "100m"}}},
                {"name": "side", "image": "busybox:1"}
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "nodeSelector": {"disk": "ssd"}
        },
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "podIPs": [{"ip": "10.0.0.1"}]
        }
    })
}

/// Every place in `v` (as JSON pointers), containers included.
fn places(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                places(c, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                places(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Changes `v` at one place chosen by `r`: a new scalar, null, an empty
/// or new container, a removed key or item, a new key or item.
fn mutate(v: &mut Value, r: u64) {
    let mut all = Vec::new();
    places(v, String::new(), &mut all);
    let at = all[(r % all.len() as u64) as usize].clone();
    let Some(target) = v.pointer_mut(&at) else {
        return;
    };
    let choice = (r / 7) % 9;
    let replacement = match choice {
        0 => json!(format!("s{}", r % 5)),
        1 => Value::Null,
        2 => json!({}),
        3 => json!([]),
        4 => json!({"name": format!("n{}", r % 3), "type": "Ready", "status": "False"}),
        5 => json!(r % 4),
        _ => Value::Null,
    };
    match (choice, &mut *target) {
        (6, Value::Object(m)) => {
            let key = m.keys().nth((r / 63) as usize % m.len().max(1)).cloned();
            if let Some(k) = key {
                m.remove(&k);
            }
        }
        (6, Value::Array(a)) if !a.is_empty() => {
            a.remove((r / 63) as usize % a.len());
        }
        (7, Value::Object(m)) => {
            m.insert(format!("k{}", r % 3), json!(r % 2));
        }
        (7 | 8, Value::Array(a)) => {
            let item = a.first().cloned().unwrap_or(json!("x"));
            let mut item = item;
            if let Some(o) = item.as_object_mut() {
                for key in ["name", "type", "containerPort", "ip"] {
                    if o.contains_key(key) {
                        o.insert(key.into(), json!(format!("new{}", r % 3)));
                    }
                }
            } else if choice == 8 {
                item = json!(format!("x/{}", r % 4));
            }
            a.push(item);
        }
        _ if !at.is_empty() => *target = replacement,
        _ => {}
    }
}

#[test]
fn one_walk_changes_agree_with_path_by_path_comparison() {
    // Seeded pseudo-random pairs of pods a few mutations apart, on the
    // main resource and the status subresource.
    let shape = kind_shape("v1", "Pod");
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 17
    };
    let (mut compared, mut fell_back) = (0, 0);
    for round in 0..3000 {
        let mut old = pod();
        for _ in 0..(next() % 4) {
            mutate(&mut old, next());
        }
        let mut new = old.clone();
        for _ in 0..(1 + next() % 3) {
            mutate(&mut new, next());
        }
        for sub in [None, Some("status")] {
            let slow = changes_path_by_path(&old, &new, sub, shape);
            match changes(&old, &new, sub, shape) {
                Some(fast) => {
                    assert_eq!(fast, slow, "round {round} {sub:?}\nold {old}\nnew {new}");
                    compared += 1;
                }
                None => fell_back += 1,
            }
        }
    }
    // Most pairs go the fast way; duplicates of a key are the exception.
    assert!(
        compared > 5000,
        "compared {compared}, fell back {fell_back}"
    );
}

#[test]
fn duplicate_list_keys_fall_back_to_path_by_path() {
    let shape = kind_shape("v1", "Pod");
    let old = pod();
    let mut new = pod();
    new["spec"]["containers"][1]["name"] = json!("web");
    new["metadata"]["labels"]["app"] = json!("other");
    assert!(changes(&old, &new, None, shape).is_none());
    // update still answers, the slow way.
    let w = Writer {
        api_version: "v1",
        ..writer("m")
    };
    let mf = update(Some(&old), &new, &w, shape);
    assert_eq!(
        mf[0]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}}})
    );
}

#[test]
fn set_operations_work_node_by_node() {
    let set = |v: Value| FieldSet::from_fields_v1(&v);
    let a = set(json!({"f:a": {}, "f:b": {"f:c": {}, "f:d": {}}, "k:x": {".": {}, "f:e": {}}}));
    let b = set(json!({"f:b": {"f:c": {}}, "k:x": {"f:e": {}}, "f:z": {}}));
    assert_eq!(
        a.difference(&b),
        set(json!({"f:a": {}, "f:b": {"f:d": {}}, "k:x": {".": {}}}))
    );
    assert_eq!(
        a.intersection(&b),
        set(json!({"f:b": {"f:c": {}}, "k:x": {"f:e": {}}}))
    );
    let u = a.union(&b);
    assert_eq!(u.paths().len(), a.paths().len() + 1);
    assert!(u.contains(&["f:z".to_string()]));
    assert_eq!(a.difference(&a), FieldSet::default());
}
