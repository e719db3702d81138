use super::*;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A length-delimited field.
fn field(num: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(num) << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A varint field.
fn int(num: u32, v: i64, out: &mut Vec<u8>) {
    varint(u64::from(num) << 3, out);
    varint(v as u64, out);
}

fn msg(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    build(&mut v);
    v
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let tm = msg(|m| {
        field(1, api_version.as_bytes(), m);
        field(2, kind.as_bytes(), m);
    });
    let mut body = MAGIC.to_vec();
    body.extend(msg(|m| {
        field(1, &tm, m);
        field(2, raw, m);
        field(3, b"", m);
        field(4, b"", m);
    }));
    body
}

/// What client-go sends for `kubectl create namespace demo`, built by
/// hand: empty strings and an empty Time are encoded too (gogo protobuf
/// writes non-pointer fields always).
#[test]
fn namespace_from_kubectl_create() {
    let meta = msg(|m| {
        field(1, b"demo", m);
        field(2, b"", m);
        field(8, b"", m);
        let label = msg(|l| {
            field(1, b"team", l);
            field(2, b"a", l);
        });
        field(11, &label, m);
    });
    let ns = msg(|n| {
        field(1, &meta, n);
        field(2, b"", n);
        field(3, &msg(|s| field(1, b"", s)), n);
    });
    let v = decode(&envelope("v1", "Namespace", &ns)).unwrap();
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["kind"], "Namespace");
    assert_eq!(
        v["metadata"],
        json!({"name": "demo", "labels": {"team": "a"}})
    );
    assert_eq!(v["spec"], json!({}));
    assert_eq!(v["status"], json!({}));
}

/// `kubectl create deployment web --image=busybox:1 --port=80
/// --replicas=0`, shaped as client-go encodes it: pointer `replicas` set
/// to 0 is kept, zero non-pointer fields (`hostPort`, `minReadySeconds`)
/// are dropped, `containerPort` (no omitempty) is kept, `resources` is an
/// empty message.
#[test]
fn deployment_with_pointer_zero_and_omitempty_zeros() {
    let container = msg(|c| {
        field(1, b"busybox", c);
        field(2, b"busybox:1", c);
        field(
            6,
            &msg(|p| {
                field(1, b"", p);
                int(2, 0, p);
                int(3, 80, p);
                field(4, b"TCP", p);
            }),
            c,
        );
        field(8, &msg(|_| {}), c);
        field(14, b"", c);
    });
    let pod_spec = msg(|s| {
        field(2, &container, s);
        field(
            1,
            &msg(|v| {
                field(1, b"scratch", v);
                field(2, &msg(|vs| field(2, &msg(|_| {}), vs)), v);
            }),
            s,
        );
    });
    let template = msg(|t| {
        field(
            1,
            &msg(|m| {
                field(
                    11,
                    &msg(|l| {
                        field(1, b"app", l);
                        field(2, b"web", l);
                    }),
                    m,
                )
            }),
            t,
        );
        field(2, &pod_spec, t);
    });
    let spec = msg(|s| {
        int(1, 0, s);
        field(
            2,
            &msg(|sel| {
                field(
                    1,
                    &msg(|l| {
                        field(1, b"app", l);
                        field(2, b"web", l);
                    }),
                    sel,
                )
            }),
            s,
        );
        field(3, &template, s);
        field(4, &msg(|_| {}), s);
        int(5, 0, s);
    });
    let d = msg(|d| {
        field(1, &msg(|m| field(1, b"web", m)), d);
        field(2, &spec, d);
        field(3, &msg(|_| {}), d);
    });
    let v = decode(&envelope("apps/v1", "Deployment", &d)).unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "busybox",
                        "image": "busybox:1",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {}
                    }],
                    "volumes": [{"name": "scratch", "emptyDir": {}}]
                }
            }
        })
    );
}

/// IntOrString both ways, a Quantity map, Time, negative int32, bytes.
#[test]
fn apimachinery_types() {
    let svc_port = |name: &[u8], target: Vec<u8>| {
        msg(|p| {
            field(1, name, p);
            int(3, 80, p);
            field(4, &target, p);
        })
    };
    let svc = msg(|s| {
        field(1, &msg(|m| field(1, b"web", m)), s);
        field(
            2,
            &msg(|sp| {
                field(1, &svc_port(b"a", msg(|t| int(2, 8080, t))), sp);
                field(
                    1,
                    &svc_port(
                        b"b",
                        msg(|t| {
                            int(1, 1, t);
                            field(3, b"http", t);
                        }),
                    ),
                    sp,
                );
            }),
            s,
        );
    });
    let v = decode(&envelope("v1", "Service", &svc)).unwrap();
    assert_eq!(v["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(v["spec"]["ports"][1]["targetPort"], "http");

    let quota = msg(|q| {
        field(
            1,
            &msg(|m| {
                field(1, b"q", m);
                field(8, &msg(|t| int(1, 1_700_000_000, t)), m);
            }),
            q,
        );
        field(
            2,
            &msg(|s| {
                field(
                    1,
                    &msg(|e| {
                        field(1, b"pods", e);
                        field(2, &msg(|qv| field(1, b"10", qv)), e);
                    }),
                    s,
                )
            }),
            q,
        );
    });
    let v = decode(&envelope("v1", "ResourceQuota", &quota)).unwrap();
    assert_eq!(v["spec"]["hard"], json!({"pods": "10"}));
    assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");

    let pc = msg(|p| {
        field(1, &msg(|m| field(1, b"low", m)), p);
        int(2, -5, p);
        int(3, 0, p);
    });
    let v = decode(&envelope("scheduling.k8s.io/v1", "PriorityClass", &pc)).unwrap();
    // `value` has no omitempty, `globalDefault` has: false is dropped.
    assert_eq!(v["value"], -5);
    assert!(v.get("globalDefault").is_none());

    let secret = msg(|s| {
        field(
            2,
            &msg(|e| {
                field(1, b"k", e);
                field(2, b"\x00\xff", e);
            }),
            s,
        )
    });
    let v = decode(&envelope("v1", "Secret", &secret)).unwrap();
    assert_eq!(v["data"]["k"], "AP8=");
}

#[test]
fn unknown_kinds_and_garbage() {
    let raw = msg(|_| {});
    assert_eq!(
        decode(&envelope("v1", "NoSuchKind", &raw))
            .unwrap_err()
            .status_code(),
        415
    );
    assert_eq!(decode(b"nope").unwrap_err().status_code(), 400);
    assert_eq!(decode(b"k8s\0\x0a\xff").unwrap_err().status_code(), 400);
    // A string field sent as a varint names the field.
    let bad_meta = msg(|m| int(1, 5, m));
    let err = decode(&envelope(
        "v1",
        "ConfigMap",
        &msg(|c| field(1, &bad_meta, c)),
    ))
    .unwrap_err();
    assert_eq!(err.status_code(), 400);
    assert!(err.to_string().contains("name"), "{err}");
}

#[test]
fn go_durations() {
    for (ns, want) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (250_000_000, "250ms"),
        (1_000_000_000, "1s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-2_000_000_000, "-2s"),
    ] {
        assert_eq!(go_duration(ns), want, "{ns}");
    }
}
