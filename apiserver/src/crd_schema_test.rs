use super::*;
use serde_json::json;

fn widget_schema() -> Schema {
    Schema(json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "minLength": 1, "maxLength": 20},
                    "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                    "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                    "name": {"type": "string", "pattern": "^[a-z]+$"},
                    "port": {"x-kubernetes-int-or-string": true},
                    "ratio": {"type": "number", "nullable": true},
                    "tags": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "ports": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "protocol": {"type": "string", "default": "TCP"}
                            }
                        }
                    }
                }
            },
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
        }
    }))
}

fn messages(obj: Value) -> Vec<String> {
    widget_schema()
        .validate(&obj)
        .iter()
        .map(FieldError::message)
        .collect()
}

#[test]
fn type_errors_read_like_kube_apiserver() {
    let got = messages(json!({"spec": {"image": "nginx", "replicas": "string"}}));
    assert_eq!(
        got,
        vec![
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        ]
    );
    let got = messages(json!({"spec": {"image": "nginx", "replicas": 1.5}}));
    assert_eq!(
        got,
        vec![
            r#"spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#
        ]
    );
    // Not nullable: null is a type error; nullable: accepted.
    let got = messages(json!({"spec": {"image": "nginx", "name": null, "ratio": null}}));
    assert_eq!(
        got,
        vec![
            r#"spec.name: Invalid value: "null": spec.name in body must be of type string: "null""#
        ]
    );
}

#[test]
fn every_constraint_names_its_field() {
    let cases: &[(Value, &str)] = &[
        (json!({"spec": {}}), "spec.image: Required value"),
        (
            json!({"spec": {"image": ""}}),
            r#"spec.image: Invalid value: "": spec.image in body should be at least 1 chars long"#,
        ),
        (
            json!({"spec": {"image": "a-very-long-image-name-indeed"}}),
            "spec.image: Too long: may not be more than 20 bytes",
        ),
        (
            json!({"spec": {"image": "x", "replicas": -1}}),
            "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
        ),
        (
            json!({"spec": {"image": "x", "replicas": 11}}),
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
        ),
        (
            json!({"spec": {"image": "x", "color": "pink"}}),
            r#"spec.color: Unsupported value: "pink": supported values: "red", "blue""#,
        ),
        (
            json!({"spec": {"image": "x", "name": "ABC"}}),
            r#"spec.name: Invalid value: "ABC": spec.name in body should match '^[a-z]+$'"#,
        ),
        (
            json!({"spec": {"image": "x", "tags": []}}),
            "spec.tags: Invalid value: []: spec.tags in body should have at least 1 items",
        ),
        (
            json!({"spec": {"image": "x", "tags": ["a", "b", "c"]}}),
            "spec.tags: Too many: 3: must have at most 2 items",
        ),
        (
            json!({"spec": {"image": "x", "tags": ["a", 1]}}),
            r#"spec.tags[1]: Invalid value: "integer": spec.tags[1] in body must be of type string: "integer""#,
        ),
        (
            json!({"spec": {"image": "x", "labels": {"a": 1}}}),
            r#"spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#,
        ),
        (
            json!({"spec": {"image": "x", "port": true}}),
            r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer or string: "boolean""#,
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(messages(obj.clone()), vec![want.to_string()], "{obj}");
    }
}

#[test]
fn valid_objects_pass() {
    for obj in [
        json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"}, "spec": {"image": "x"}}),
        json!({"spec": {"image": "x", "port": 80, "ratio": 0.5, "tags": ["a"]}}),
        json!({"spec": {"image": "x", "port": "http", "labels": {"a": "b"}}}),
    ] {
        assert!(messages(obj.clone()).is_empty(), "{obj}");
    }
}

#[test]
fn pruning_drops_unknown_fields_but_keeps_preserved_ones() {
    let mut obj = json!({
        "apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
        "spec": {
            "image": "x", "bogus": 1,
            "extra": {"anything": {"goes": true}},
            "labels": {"free": "form"},
            "ports": [{"name": "http", "nope": 2}]
        },
        "top": "level"
    });
    let pruned = widget_schema().prune(&mut obj);
    assert_eq!(pruned, vec!["spec.bogus", "spec.ports[0].nope", "top"]);
    assert_eq!(
        obj,
        json!({
            "apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {
                "image": "x",
                "extra": {"anything": {"goes": true}},
                "labels": {"free": "form"},
                "ports": [{"name": "http"}]
            }
        })
    );
    // unknown_fields reports without changing.
    let obj = json!({"spec": {"image": "x", "bogus": 1}});
    assert_eq!(widget_schema().unknown_fields(&obj), vec!["spec.bogus"]);
}

#[test]
fn defaults_fill_absent_fields_in_nested_objects_and_lists() {
    let mut obj = json!({"spec": {"image": "x", "color": "blue", "ports": [{"name": "a"}, {"protocol": "UDP"}]}});
    widget_schema().apply_defaults(&mut obj);
    assert_eq!(
        obj,
        json!({"spec": {
            "image": "x", "color": "blue", "replicas": 1,
            "ports": [{"name": "a", "protocol": "TCP"}, {"protocol": "UDP"}]
        }})
    );
    // No spec: nothing to default inside it.
    let mut obj = json!({"metadata": {"name": "a"}});
    widget_schema().apply_defaults(&mut obj);
    assert_eq!(obj, json!({"metadata": {"name": "a"}}));
}

#[test]
fn string_formats_are_checked_as_kube_openapi_words_them() {
    let schema = Schema(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "when": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "id": {"type": "string", "format": "uuid"},
            "ip": {"type": "string", "format": "ipv4"},
            "ip6": {"type": "string", "format": "ipv6"},
            "net": {"type": "string", "format": "cidr"},
            "mac": {"type": "string", "format": "mac"},
            "host": {"type": "string", "format": "hostname"},
            "mail": {"type": "string", "format": "email"},
            "data": {"type": "string", "format": "byte"},
            "secret": {"type": "string", "format": "password"},
            "other": {"type": "string", "format": "no-such-format"}
        }}}
    }));
    let good = json!({"spec": {
        "when": "2026-11-24T05:00:00Z", "day": "2026-11-24",
        "id": "123e4567-e89b-12d3-a456-426614174000", "ip": "10.0.0.1", "ip6": "fd00::1",
        "net": "10.0.0.0/8", "mac": "02:42:ac:11:00:02", "host": "node-1.example.com",
        "mail": "a@example.com", "data": "aGVsbG8=", "secret": "anything", "other": "x"
    }});
    assert!(
        schema.validate(&good).is_empty(),
        "{:?}",
        schema.validate(&good)
    );
    let bad = json!({"spec": {
        "when": "yesterday", "day": "2026-13-01", "id": "123", "ip": "10.0.0.256",
        "ip6": "fd00:::1:::", "net": "10.0.0.0/33", "mac": "02:42", "host": "-bad-.com",
        "mail": "nobody", "data": "%%%"
    }});
    let messages: Vec<String> = schema.validate(&bad).iter().map(|e| e.message()).collect();
    assert_eq!(messages.len(), 10, "{messages:?}");
    assert!(messages.contains(
        &r#"spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday""#.to_string()
    ), "{messages:?}");
}
