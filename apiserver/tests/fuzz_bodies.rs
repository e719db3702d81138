//! Bad bodies never hurt the server (issue #4): a seeded PRNG sends a few
//! thousand malformed, hostile or merely odd bodies to POST, PUT and PATCH
//! of pods, configmaps, deployments and services, in every content type
//! the server reads (JSON, YAML, protobuf, and merge, JSON, strategic and
//! apply patches). Every answer must be a 2xx (the body happened to be
//! valid) or a 4xx whose body is a `metav1.Status` with the same code,
//! never a 5xx, a dropped connection or a panic in the server (counted by
//! a panic hook: the server runs in this process); afterwards `/readyz`
//! still answers.
//!
//! `FUZZ_SEED=N` replays one seed, `FUZZ_ROUNDS=N` changes how many random
//! bodies are sent per generator, `FUZZ_VERBOSE=1` prints every answer; a
//! failure prints the seed and the body.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{with_server, Harness};
use http_body_util::BodyExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};

/// Random bodies per generator; with the fixed cases about 3,000 requests.
const DEFAULT_ROUNDS: usize = 250;
/// Nesting depth of the deep documents: far past serde's limit of 128.
const DEEP: usize = 10_000;
/// One request may take long on a loaded machine; it must still answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// xorshift64* (Vigna): tiny, seedable, good enough to pick cases.
struct Rng(u64);

impl Rng {
    /// Any seed, 0 included, gives its own non-zero state.
    fn new(seed: u64) -> Rng {
        const MIX: u64 = 0x9E37_79B9_7F4A_7C15;
        Rng(if seed == MIX { 1 } else { seed ^ MIX })
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One request to send.
struct Case {
    what: String,
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
}

/// A pod that uses most of PodSpec, so "wrong type at every field" covers
/// the fields the server validates and defaults.
fn rich_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "fuzz"}, "annotations": {"a": "b"},
                     "finalizers": [], "ownerReferences": []},
        "spec": {
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 5,
            "activeDeadlineSeconds": 100, "nodeSelector": {"disk": "ssd"},
            "priority": 0, "hostname": "h", "dnsPolicy": "ClusterFirst",
            "securityContext": {"runAsUser": 1000, "fsGroup": 2000, "sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}]},
            "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule", "tolerationSeconds": 5}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "fuzz"}}}}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Mi"}}, {"name": "cm", "configMap": {"name": "c", "defaultMode": 420}}],
            "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
            "containers": [{
                "name": "c", "image": "busybox", "command": ["sleep"], "args": ["3600"],
                "workingDir": "/", "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP", "hostPort": 8080}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}},
                "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": true}],
                "livenessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 3, "failureThreshold": 2},
                "readinessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 1},
                "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
                "securityContext": {"privileged": false, "capabilities": {"add": ["NET_ADMIN"]}}
            }]
        }
    })
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}, "binaryData": {"b": "AAE="}})
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": "d"}, "type": "NodePort",
                 "ports": [{"name": "p", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    })
}

/// A resource the fuzzer writes: its collection, a manifest maker, and an
/// object it keeps for PUT/PATCH.
struct Target {
    collection: &'static str,
    make: fn(&str) -> Value,
    existing: &'static str,
}

const TARGETS: &[Target] = &[
    Target {
        collection: "/api/v1/namespaces/default/pods",
        make: rich_pod,
        existing: "fz-pod",
    },
    Target {
        collection: "/api/v1/namespaces/default/configmaps",
        make: configmap,
        existing: "fz-cm",
    },
    Target {
        collection: "/apis/apps/v1/namespaces/default/deployments",
        make: deployment,
        existing: "fz-deploy",
    },
    Target {
        collection: "/api/v1/namespaces/default/services",
        make: service,
        existing: "fz-svc",
    },
];

const JSON: &str = "application/json";
const YAML: &str = "application/yaml";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

/// Values of every JSON type, and numbers at and past the edges.
const ODD_VALUES: &[&str] = &[
    "null",
    "true",
    "0",
    "-1",
    "1.5",
    "1e308",
    "1e400",
    "-1e400",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "123456789012345678901234567890",
    "\"\"",
    "\"x\"",
    "\"-1\"",
    "[]",
    "[null]",
    "[{}]",
    "{}",
    "{\"a\":1}",
    "\"\\ud800\"",
];

/// Every JSON pointer in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        _ => {}
    }
}

/// `v` serialized with the value at `pointer` replaced by the raw JSON
/// text `raw` (which need not parse: `1e400` does not).
fn with_raw_at(v: &Value, pointer: &str, raw: &str) -> Vec<u8> {
    const MARK: &str = "\u{1}FUZZ\u{1}";
    let mut copy = v.clone();
    *copy.pointer_mut(pointer).unwrap() = Value::String(MARK.into());
    serde_json::to_string(&copy)
        .unwrap()
        .replacen(&serde_json::to_string(MARK).unwrap(), raw, 1)
        .into_bytes()
}

fn deep_json(depth: usize, open: &str, close: &str, leaf: &str) -> String {
    format!("{}{leaf}{}", open.repeat(depth), close.repeat(depth))
}

/// Minimal protobuf writer: a length-delimited field.
fn pb_field(num: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let varint = |mut v: u64, out: &mut Vec<u8>| loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    };
    varint(u64::from(num) << 3 | 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// A valid protobuf Pod in the `runtime.Unknown` envelope.
fn protobuf_pod(name: &str) -> Vec<u8> {
    let meta = pb_field(1, name.as_bytes());
    let container = [pb_field(1, b"c"), pb_field(2, b"busybox")].concat();
    let spec = pb_field(2, &container);
    let raw = [pb_field(1, &meta), pb_field(2, &spec)].concat();
    let type_meta = [pb_field(1, b"v1"), pb_field(2, b"Pod")].concat();
    [
        b"k8s\0".to_vec(),
        pb_field(1, &type_meta),
        pb_field(2, &raw),
    ]
    .concat()
}

/// Random edits of valid bytes: truncation, bit flips, inserted junk,
/// invalid UTF-8.
fn mutate(rng: &mut Rng, valid: &[u8]) -> (String, Vec<u8>) {
    let mut b = valid.to_vec();
    match rng.below(5) {
        0 => {
            let cut = rng.below(b.len().max(1));
            b.truncate(cut);
            (format!("truncated at {cut}"), b)
        }
        1 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            ("bit flips".into(), b)
        }
        2 => {
            let i = rng.below(b.len());
            let n = 1 + rng.below(16);
            let junk = rng.bytes(n);
            b.splice(i..i, junk);
            ("random bytes inserted".into(), b)
        }
        3 => {
            // Invalid UTF-8 inside a string: after the first quote found.
            let quotes: Vec<usize> = (0..b.len()).filter(|&i| b[i] == b'"').collect();
            let i = if quotes.is_empty() {
                0
            } else {
                *rng.pick(&quotes) + 1
            };
            b.splice(
                i..i,
                rng.pick(&[
                    &b"\xff"[..],
                    b"\xc3\x28",
                    b"\xed\xa0\x80",
                    b"\xf4\x90\x80\x80",
                    b"\x00",
                ])
                .to_vec(),
            );
            ("invalid UTF-8 in a string".into(), b)
        }
        _ => {
            let n = rng.below(2048);
            ("random bytes".into(), rng.bytes(n))
        }
    }
}

/// A random JSON patch: ops against real and made-up paths.
fn random_json_patch(rng: &mut Rng, paths: &[String]) -> Vec<u8> {
    const ODD_PATHS: &[&str] = &[
        "",
        "/",
        "/-",
        "~",
        "/~2",
        "a",
        "/metadata/annotations/-",
        "/spec/containers/-",
        "/spec/containers/18446744073709551616",
        "/spec/containers/-1",
        "/spec/containers/01",
        "/metadata/labels/x~1y",
        "/status/conditions/0/type",
    ];
    let ops = ["add", "remove", "replace", "move", "copy", "test", "bogus"];
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let mut path = || -> String {
            if rng.below(3) == 0 {
                rng.pick(ODD_PATHS).to_string()
            } else {
                rng.pick(paths).clone()
            }
        };
        let (p, f) = (path(), path());
        let op = *rng.pick(&ops);
        let raw = *rng.pick(ODD_VALUES);
        let value: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        let mut o = json!({"op": op, "path": p});
        match op {
            "move" | "copy" => o["from"] = json!(f),
            "remove" => {}
            _ => o["value"] = value,
        }
        if rng.below(10) == 0 {
            o.as_object_mut().unwrap().remove("path");
        }
        out.push(o);
    }
    serde_json::to_vec(&out).unwrap()
}

/// A strategic merge patch of a pod with patch directives in odd places.
fn random_strategic_patch(rng: &mut Rng) -> Vec<u8> {
    let directives = [
        json!({"$patch": "delete"}),
        json!({"$patch": "replace"}),
        json!({"$patch": "merge"}),
        json!({"$patch": "bogus"}),
        json!({"$patch": 7}),
        json!({"$retainKeys": ["name"]}),
        json!({"$retainKeys": "name"}),
        json!({"$deleteFromPrimitiveList/args": ["3600"]}),
        json!({"$deleteFromPrimitiveList/args": 1}),
        json!({"$setElementOrder/containers": [{"name": "c"}, {"name": "zz"}]}),
        json!({"$setElementOrder/containers": [1, 2]}),
        json!({"$setElementOrder/env": "x"}),
    ];
    let d = rng.pick(&directives).clone();
    let container = {
        let mut c = json!({"name": "c", "image": "busybox:2"});
        if rng.below(2) == 0 {
            c["env"] = json!([d.clone(), {"name": "A", "value": "2"}]);
        }
        c.as_object_mut()
            .unwrap()
            .extend(d.as_object().unwrap().clone());
        c
    };
    let mut patch = json!({"spec": {"containers": [container]}});
    match rng.below(4) {
        0 => patch
            .as_object_mut()
            .unwrap()
            .extend(d.as_object().unwrap().clone()),
        1 => patch["spec"]
            .as_object_mut()
            .unwrap()
            .extend(d.as_object().unwrap().clone()),
        2 => patch["spec"]["containers"] = json!([d, {"$patch": "delete", "name": "c"}]),
        _ => patch["metadata"] = json!({"labels": d}),
    }
    serde_json::to_vec(&patch).unwrap()
}

/// The fixed cases: every hostile shape once per target and content type.
fn fixed_cases(t: &Target, rng: &mut Rng) -> Vec<Case> {
    let mut cases = Vec::new();
    let item = format!("{}/{}", t.collection, t.existing);
    let post = |what: &str, ct, body: Vec<u8>| Case {
        what: what.to_string(),
        method: "POST",
        path: t.collection.to_string(),
        content_type: ct,
        body,
    };
    let deep = [
        ("10k-deep arrays", deep_json(DEEP, "[", "]", "1")),
        ("10k-deep objects", deep_json(DEEP, "{\"a\":", "}", "1")),
        (
            "10k-deep under metadata",
            format!(
                "{{\"metadata\":{{\"name\":\"x\",\"labels\":{}}}}}",
                deep_json(DEEP, "{\"a\":", "}", "{}")
            ),
        ),
        ("10k unclosed arrays", "[".repeat(DEEP)),
    ];
    for (what, doc) in &deep {
        for ct in [JSON, YAML] {
            cases.push(post(what, ct, doc.clone().into_bytes()));
        }
        for ct in [MERGE, STRATEGIC, JSON_PATCH, APPLY] {
            cases.push(Case {
                what: what.to_string(),
                method: "PATCH",
                path: format!("{item}?fieldManager=fuzz"),
                content_type: ct,
                body: doc.clone().into_bytes(),
            });
        }
        cases.push(Case {
            what: what.to_string(),
            method: "PUT",
            path: item.clone(),
            content_type: JSON,
            body: doc.clone().into_bytes(),
        });
    }
    // YAML's own: deep block nesting, aliases that expand exponentially,
    // tags, several documents, a key that is a mapping.
    let block: String = (0..2000)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    let laughs =
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n\
        b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n\
        d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n\
        f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n\
        h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n\
        metadata: {name: laughs, labels: *i}\n";
    let yaml_docs = [
        ("2000-deep YAML block", block),
        ("YAML billion laughs", laughs.to_string()),
        (
            "YAML recursive alias",
            "metadata: &m {name: x, labels: *m}\n".into(),
        ),
        (
            "YAML tags",
            "metadata: !!binary aGVsbG8=\nspec: !custom {a: 1}\n".into(),
        ),
        (
            "YAML two documents",
            "metadata: {name: a}\n---\nmetadata: {name: b}\n".into(),
        ),
        (
            "YAML mapping key",
            "? {a: 1}\n: 2\nmetadata: {name: y}\n".into(),
        ),
        (
            "YAML merge key",
            "base: &b {name: z}\nmetadata: {<<: *b}\n".into(),
        ),
        (
            "YAML huge int",
            "metadata: {name: n, generation: 123456789012345678901234567890}\n".into(),
        ),
        (
            "YAML NaN",
            "metadata: {name: nan, generation: .nan}\nspec: {replicas: .inf}\n".into(),
        ),
    ];
    for (what, doc) in &yaml_docs {
        cases.push(post(what, YAML, doc.clone().into_bytes()));
        cases.push(Case {
            what: what.to_string(),
            method: "PATCH",
            path: format!("{item}?fieldManager=fuzz"),
            content_type: APPLY,
            body: doc.clone().into_bytes(),
        });
    }
    // Huge strings: under and over the body limit.
    let valid = (t.make)("fz-huge");
    for (what, len) in [
        ("1 MiB name", 1 << 20),
        ("2.9 MiB annotation", 2_900_000),
        ("4 MiB annotation", 4 << 20),
    ] {
        let mut v = valid.clone();
        if what.contains("name") {
            v["metadata"]["name"] = json!("n".repeat(len));
        } else {
            v["metadata"]["annotations"] = json!({"big": "x".repeat(len)});
        }
        cases.push(post(what, JSON, serde_json::to_vec(&v).unwrap()));
    }
    let huge_key = format!(
        "{{\"metadata\":{{\"name\":\"k\",\"labels\":{{\"{}\":\"v\"}}}}}}",
        "k".repeat(1 << 20)
    );
    cases.push(post("1 MiB label key", JSON, huge_key.into_bytes()));
    // Duplicate keys, at the top and inside.
    for doc in [
        r#"{"metadata":{"name":"dup1","name":"dup2"},"metadata":{"name":"dup3"}}"#,
        r#"{"apiVersion":"v1","apiVersion":"apps/v1","kind":"Pod","kind":"ConfigMap","metadata":{"name":"dup4"}}"#,
        r#"{"metadata":{"name":"dup5","labels":{"a":"1","a":"2"}}}"#,
    ] {
        cases.push(post("duplicate keys", JSON, doc.into()));
        cases.push(Case {
            what: "duplicate keys".into(),
            method: "PATCH",
            path: item.clone(),
            content_type: MERGE,
            body: doc.into(),
        });
    }
    // Empty and non-object bodies everywhere.
    for body in [
        "",
        "null",
        "[]",
        "1",
        "\"s\"",
        " ",
        "{}",
        "{\"metadata\":null}",
        "{\"metadata\":{\"name\":null}}",
    ] {
        for ct in [
            JSON,
            YAML,
            MERGE,
            STRATEGIC,
            JSON_PATCH,
            APPLY,
            "text/plain",
            "application/json; charset=utf-16",
            "bogus",
        ] {
            let method = if ct.contains("patch") {
                "PATCH"
            } else {
                *rng.pick(&["POST", "PUT"])
            };
            let path = if method == "POST" {
                t.collection.to_string()
            } else {
                format!("{item}?fieldManager=fuzz")
            };
            cases.push(Case {
                what: format!("body {body:?}"),
                method,
                path,
                content_type: ct,
                body: body.into(),
            });
        }
    }
    // A JSON patch whose copies double the depth each time: ~128 × 2^12.
    let mut ops = vec![
        json!({"op": "add", "path": "/metadata/annotations", "value": serde_json::from_str::<Value>(&deep_json(100, "{\"a\":", "}", "1")).unwrap()}),
    ];
    let inner = "/a".repeat(100);
    for _ in 0..12 {
        ops.push(json!({"op": "copy", "from": "/metadata/annotations", "path": format!("/metadata/annotations{inner}")}));
    }
    cases.push(Case {
        what: "JSON patch copy amplification".into(),
        method: "PATCH",
        path: item.clone(),
        content_type: JSON_PATCH,
        body: serde_json::to_vec(&ops).unwrap(),
    });
    cases
}

/// Wrong type at every field: each pointer of the valid manifest gets
/// three odd values.
fn wrong_type_cases(t: &Target, rng: &mut Rng) -> Vec<Case> {
    let valid = (t.make)("fz-wrong");
    let mut ptrs = Vec::new();
    pointers(&valid, String::new(), &mut ptrs);
    let mut cases = Vec::new();
    for p in &ptrs {
        for _ in 0..3 {
            let raw = *rng.pick(ODD_VALUES);
            let body = with_raw_at(&valid, p, raw);
            let (method, path, ct) = match rng.below(4) {
                0 => ("POST", t.collection.to_string(), JSON),
                1 => ("PUT", format!("{}/{}", t.collection, t.existing), JSON),
                2 => ("PATCH", format!("{}/{}", t.collection, t.existing), MERGE),
                _ => (
                    "PATCH",
                    format!(
                        "{}/{}?fieldManager=fuzz&force=true",
                        t.collection, t.existing
                    ),
                    APPLY,
                ),
            };
            // PUT and apply must name the object they write.
            let body = if method == "POST" {
                body
            } else {
                String::from_utf8(body)
                    .unwrap()
                    .replacen("\"fz-wrong\"", &format!("\"{}\"", t.existing), 1)
                    .into_bytes()
            };
            cases.push(Case {
                what: format!("{p} = {raw}"),
                method,
                path,
                content_type: ct,
                body,
            });
        }
    }
    cases
}

/// Random cases: mutated valid bodies in every content type, random patches.
fn random_cases(t: &Target, rng: &mut Rng, rounds: usize) -> Vec<Case> {
    let item = format!("{}/{}", t.collection, t.existing);
    let mut ptrs = Vec::new();
    pointers(&(t.make)("x"), String::new(), &mut ptrs);
    let mut cases = Vec::new();
    for i in 0..rounds {
        let name = format!("fz-r{i}-{}", rng.below(1000));
        let valid = (t.make)(&name);
        let (ct, bytes) = match rng.below(3) {
            0 => (JSON, serde_json::to_vec(&valid).unwrap()),
            1 => (YAML, serde_yaml::to_string(&valid).unwrap().into_bytes()),
            _ => (PROTOBUF, protobuf_pod(&name)),
        };
        let (what, body) = mutate(rng, &bytes);
        cases.push(Case {
            what: format!("{ct} {what}"),
            method: "POST",
            path: t.collection.to_string(),
            content_type: ct,
            body,
        });

        let (what, body) = match rng.below(3) {
            0 => (
                "random JSON patch".to_string(),
                random_json_patch(rng, &ptrs),
            ),
            1 if t.existing == "fz-pod" => (
                "random strategic patch".to_string(),
                random_strategic_patch(rng),
            ),
            _ => {
                let (w, b) = mutate(rng, &serde_json::to_vec(&valid).unwrap());
                (format!("mutated merge patch: {w}"), b)
            }
        };
        let ct = if what.contains("JSON patch") {
            JSON_PATCH
        } else if what.contains("strategic") {
            STRATEGIC
        } else {
            *rng.pick(&[MERGE, STRATEGIC, APPLY])
        };
        let sub = *rng.pick(&["", "", "/status", "/scale"]);
        cases.push(Case {
            what,
            method: "PATCH",
            path: format!("{item}{sub}?fieldManager=fuzz"),
            content_type: ct,
            body,
        });
    }
    cases
}

async fn client(h: &Harness) -> kube::Client {
    let kc = Kubeconfig::read_from(&h.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Sends one request; (status, body).
async fn send(c: &kube::Client, case: &Case) -> Result<(u16, Vec<u8>), String> {
    let req = http::Request::builder()
        .method(case.method)
        .uri(&case.path)
        .header("Content-Type", case.content_type)
        .header("Accept", "application/json")
        .body(kube::client::Body::from(case.body.clone()))
        .unwrap();
    let answer = async {
        let res = c.send(req).await.map_err(|e| format!("no answer: {e}"))?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body cut: {e}"))?
            .to_bytes();
        Ok((status, body.to_vec()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, answer)
        .await
        .map_err(|_| "no answer in time".to_string())?
}

/// Why an answer is wrong, if it is.
fn judge(status: u16, body: &[u8]) -> Option<String> {
    if (200..300).contains(&status) {
        // Whatever was accepted comes back as an object.
        return match serde_json::from_slice::<Value>(body) {
            Ok(o) if o["kind"].is_string() && o["metadata"].is_object() => None,
            _ => Some(format!("{status} without an object")),
        };
    }
    if !(400..500).contains(&status) {
        return Some(format!("status {status}"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(s) if s["kind"] == "Status" && s["code"] == status && s["status"] == "Failure" => None,
        _ => Some(format!("{status} without a Status body")),
    }
}

fn preview(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    format!(
        "{s}{}",
        if body.len() > 300 {
            format!("… ({} bytes)", body.len())
        } else {
            String::new()
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_bodies_never_5xx_or_panic() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_F00D);
    let rounds: usize = std::env::var("FUZZ_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let verbose = std::env::var_os("FUZZ_VERBOSE").is_some();
    let panics = Arc::new(AtomicUsize::new(0));
    let counter = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counter.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));

    with_server(async |h| {
        let c = client(h).await;
        let mut rng = Rng::new(seed);
        let mut cases = Vec::new();
        for t in TARGETS {
            let existing = (t.make)(t.existing);
            let ok = send(
                &c,
                &Case {
                    what: "setup".into(),
                    method: "POST",
                    path: t.collection.into(),
                    content_type: JSON,
                    body: serde_json::to_vec(&existing).unwrap(),
                },
            )
            .await;
            assert!(matches!(ok, Ok((201, _))), "create {}: {ok:?}", t.existing);
            cases.extend(fixed_cases(t, &mut rng));
            cases.extend(wrong_type_cases(t, &mut rng));
            cases.extend(random_cases(t, &mut rng, rounds));
        }

        let started = Instant::now();
        let mut failures = Vec::new();
        let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
        for case in &cases {
            let before = panics.load(Ordering::SeqCst);
            let verdict = match send(&c, case).await {
                Ok((status, body)) => {
                    *by_status.entry(status).or_default() += 1;
                    if verbose {
                        eprintln!(
                            "{status} {} {} [{}] {}: {}",
                            case.method,
                            case.path,
                            case.content_type,
                            case.what,
                            preview(&body)
                        );
                    }
                    judge(status, &body).map(|why| format!("{why}: {}", preview(&body)))
                }
                Err(e) => Some(e),
            };
            let verdict = match (verdict, panics.load(Ordering::SeqCst) > before) {
                (v, false) => v,
                (v, true) => Some(format!("server panicked ({})", v.unwrap_or_default())),
            };
            if let Some(why) = verdict {
                failures.push(format!(
                    "{} {} [{}] {}: {why}\n    body: {}",
                    case.method,
                    case.path,
                    case.content_type,
                    case.what,
                    preview(&case.body)
                ));
            }
        }
        eprintln!(
            "fuzz: seed {seed:#x}, {} requests in {:.1} s, answers by status: {by_status:?}",
            cases.len(),
            started.elapsed().as_secs_f64()
        );

        let (ready, _, _) = h.curl_full("GET", "/readyz", None, false, &[]).await;
        assert_eq!(ready, 200, "/readyz after the fuzzing");
        assert!(
            failures.is_empty(),
            "seed {seed:#x}: {} of {} requests answered wrongly:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    })
    .await;
    let _ = std::panic::take_hook();
    assert_eq!(panics.load(Ordering::SeqCst), 0, "the server panicked");
}
