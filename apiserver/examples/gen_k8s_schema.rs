//! Generates `apiserver/src/k8s_schema.txt`, the table of Kubernetes
//! message schemas that the protobuf decoder ([`skiff_apiserver::protobuf`])
//! and server-side apply ([`skiff_apiserver::apply`]) walk.
//!
//! ```text
//! cargo run -p skiff-apiserver --example gen_k8s_schema -- \
//!     <kubernetes/api checkout> <kubernetes/apimachinery checkout> \
//!     > apiserver/src/k8s_schema.txt
//! ```
//!
//! Facts are read from two places of each API package:
//! - `generated.proto` (go-to-protobuf output): messages, field numbers,
//!   field types, `repeated`, `map<K, V>`;
//! - `types.go`: each field's struct tags and markers, joined to the proto
//!   field by its protobuf number: the JSON name, `omitempty`, whether the
//!   Go field is a pointer (a pointer set to zero is still sent), embedded
//!   structs inlined into their parent's JSON (`json:""` / `,inline`),
//!   `patchMergeKey`, `+listType` and `+listMapKey`.
//!
//! The output is one line per message (`M <full name> [wrap] [atomic]`)
//! followed by one line per field: `F <number> <json name> <type> <flags>
//! [mk=<key>] [lt=<list type>] [lk=<k1,k2>] [mt=<map type>]`. Types are proto scalars, message full
//! names, or `map:<key type>:<value type>`; flags are `r` repeated, `z`
//! zero values are meaningful (pointer or not omitempty), `i` inlined,
//! `-` none. `atomic` marks a `+structType=atomic` struct; `wrap` marks a Go named slice (`type ExtraValue []string`)
//! whose proto message wraps the list in field 1 (`items`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// API packages of kubernetes/api that Skiff serves or may serve.
const API_PACKAGES: &[&str] = &[
    "core/v1",
    "apps/v1",
    "batch/v1",
    "autoscaling/v1",
    "autoscaling/v2",
    "policy/v1",
    "coordination/v1",
    "discovery/v1",
    "events/v1",
    "scheduling/v1",
    "rbac/v1",
    "networking/v1",
    "storage/v1",
    "authentication/v1",
    "authorization/v1",
];

/// Packages of kubernetes/apimachinery.
const MACHINERY_PACKAGES: &[&str] = &[
    "pkg/apis/meta/v1",
    "pkg/runtime",
    "pkg/util/intstr",
    "pkg/api/resource",
];

/// One Go struct field's facts, keyed by its protobuf number.
#[derive(Default, Clone)]
struct GoField {
    json: String,
    omitempty: bool,
    pointer: bool,
    inline: bool,
    merge_key: Option<String>,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    map_type: Option<String>,
}

/// Go facts of one package: struct → (proto number → field), and the
/// names of `type X []string` slices.
#[derive(Default)]
struct GoPackage {
    structs: HashMap<String, HashMap<u32, GoField>>,
    slices: Vec<String>,
    atomic: Vec<String>,
}

fn tag<'a>(tags: &'a str, key: &str) -> Option<&'a str> {
    let start = tags.find(&format!("{key}:\""))? + key.len() + 2;
    let end = tags[start..].find('"')? + start;
    Some(&tags[start..end])
}

fn parse_go(src: &str) -> GoPackage {
    let mut pkg = GoPackage::default();
    let mut current: Option<String> = None;
    let (mut list_type, mut list_map_keys) = (None::<String>, Vec::<String>::new());
    let (mut map_type, mut struct_atomic) = (None::<String>, false);
    for line in src.lines() {
        let t = line.trim();
        if current.is_none() {
            if t.starts_with("//") && t.contains("+structType=atomic") {
                struct_atomic = true;
            } else if t.is_empty() {
                struct_atomic = false;
            }
        }
        if let Some(rest) = t.strip_prefix("type ") {
            let mut words = rest.split_whitespace();
            let (name, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if kind == "struct" {
                current = Some(name.to_string());
                if struct_atomic {
                    pkg.atomic.push(name.to_string());
                }
            } else if kind == "[]string" {
                pkg.slices.push(name.to_string());
            }
            struct_atomic = false;
            continue;
        }
        if t == "}" && !line.starts_with(char::is_whitespace) {
            current = None;
            continue;
        }
        let Some(st) = &current else { continue };
        if let Some(c) = t.strip_prefix("//") {
            let c = c.trim();
            if let Some(v) = c.strip_prefix("+listType=") {
                list_type = Some(v.trim().to_string());
            } else if let Some(v) = c.strip_prefix("+listMapKey=") {
                list_map_keys.push(v.trim().to_string());
            } else if let Some(v) = c.strip_prefix("+mapType=") {
                map_type = Some(v.trim().to_string());
            }
            continue;
        }
        let Some((decl, tags)) = t.split_once('`') else {
            continue;
        };
        let Some(pb) = tag(tags, "protobuf") else {
            continue;
        };
        let Some(num) = pb.split(',').nth(1).and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let words: Vec<&str> = decl.split_whitespace().collect();
        let go_type = words.last().copied().unwrap_or("");
        let json = tag(tags, "json").unwrap_or("");
        let mut parts = json.split(',');
        let json_name = parts.next().unwrap_or("").to_string();
        let opts: Vec<&str> = parts.collect();
        let field = GoField {
            inline: (words.len() == 1 && json_name.is_empty()) || opts.contains(&"inline"),
            json: json_name,
            omitempty: opts.contains(&"omitempty"),
            pointer: go_type.starts_with('*'),
            merge_key: tag(tags, "patchMergeKey").map(str::to_string),
            list_type: list_type.take(),
            list_map_keys: std::mem::take(&mut list_map_keys),
            map_type: map_type.take(),
        };
        pkg.structs
            .entry(st.clone())
            .or_default()
            .insert(num, field);
    }
    pkg
}

/// One proto field.
struct ProtoField {
    num: u32,
    name: String,
    ty: String,
    repeated: bool,
}

/// Resolves a proto type reference to a full name (scalars unchanged).
fn resolve(ty: &str, package: &str) -> String {
    const SCALARS: &[&str] = &[
        "string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float",
        "sint32", "sint64", "fixed32", "fixed64",
    ];
    if let Some(abs) = ty.strip_prefix('.') {
        abs.to_string()
    } else if SCALARS.contains(&ty) {
        ty.to_string()
    } else {
        format!("{package}.{ty}")
    }
}

fn parse_proto(src: &str) -> (String, Vec<(String, Vec<ProtoField>)>) {
    let mut package = String::new();
    let mut messages = Vec::new();
    let mut current: Option<(String, Vec<ProtoField>)> = None;
    for line in src.lines() {
        let t = line.trim();
        if t.starts_with("//") || t.is_empty() {
            continue;
        }
        if let Some(p) = t.strip_prefix("package ") {
            package = p.trim_end_matches(';').to_string();
        } else if let Some(m) = t.strip_prefix("message ") {
            let name = m.trim_end_matches('{').trim();
            current = Some((format!("{package}.{name}"), Vec::new()));
        } else if t == "}" {
            messages.extend(current.take());
        } else if let Some((_, fields)) = current.as_mut() {
            // `optional T name = N;`, `repeated T name = N;`,
            // `map<K, V> name = N;`
            let Some((lhs, num)) = t.trim_end_matches(';').split_once('=') else {
                continue;
            };
            let Ok(num) = num.trim().parse::<u32>() else {
                continue;
            };
            let lhs = lhs.trim();
            let (ty, name, repeated) = if let Some(m) = lhs.strip_prefix("map<") {
                let (kv, name) = m.split_once('>').unwrap_or(("", ""));
                let (k, v) = kv.split_once(',').unwrap_or(("", ""));
                let ty = format!(
                    "map:{}:{}",
                    resolve(k.trim(), &package),
                    resolve(v.trim(), &package)
                );
                (ty, name.trim().to_string(), false)
            } else {
                let w: Vec<&str> = lhs.split_whitespace().collect();
                if w.len() != 3 {
                    continue;
                }
                (
                    resolve(w[1], &package),
                    w[2].to_string(),
                    w[0] == "repeated",
                )
            };
            fields.push(ProtoField {
                num,
                name,
                ty,
                repeated,
            });
        }
    }
    (package, messages)
}

fn emit(dir: &Path, out: &mut String) {
    let proto = std::fs::read_to_string(dir.join("generated.proto"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let go = std::fs::read_to_string(dir.join("types.go")).unwrap_or_default();
    let go = parse_go(&go);
    let (package, messages) = parse_proto(&proto);
    for (full, fields) in messages {
        let short = full.rsplit('.').next().unwrap_or("");
        let wrap = go.slices.iter().any(|s| s == short);
        let atomic = go.atomic.iter().any(|s| s == short);
        let _ = writeln!(
            out,
            "M {full}{}{}",
            if wrap { " wrap" } else { "" },
            if atomic { " atomic" } else { "" }
        );
        let facts = go.structs.get(short);
        for f in fields {
            let g = facts.and_then(|s| s.get(&f.num)).cloned();
            let json = match &g {
                Some(g) if !g.json.is_empty() => g.json.clone(),
                _ => f.name.clone(),
            };
            let mut flags = String::new();
            if f.repeated {
                flags.push('r');
            }
            // Without Go facts (meta/v1 helper messages) a field is treated
            // as omitempty and not a pointer.
            if g.as_ref().is_some_and(|g| g.pointer || !g.omitempty) {
                flags.push('z');
            }
            if g.as_ref().is_some_and(|g| g.inline) {
                flags.push('i');
            }
            if flags.is_empty() {
                flags.push('-');
            }
            let _ = write!(out, "F {} {json} {} {flags}", f.num, f.ty);
            if let Some(g) = g {
                if let Some(k) = g.merge_key {
                    let _ = write!(out, " mk={k}");
                }
                if let Some(t) = g.list_type {
                    let _ = write!(out, " lt={t}");
                }
                if !g.list_map_keys.is_empty() {
                    let _ = write!(out, " lk={}", g.list_map_keys.join(","));
                }
                if let Some(t) = g.map_type {
                    let _ = write!(out, " mt={t}");
                }
            }
            out.push('\n');
        }
    }
    let _ = package;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, api, machinery] = args.as_slice() else {
        eprintln!("usage: gen_k8s_schema <kubernetes/api dir> <kubernetes/apimachinery dir>");
        std::process::exit(2);
    };
    let mut out = String::from(
        "# Kubernetes message schemas for Skiff's protobuf decoder and server-side apply.\n\
         # Generated by apiserver/examples/gen_k8s_schema.rs from kubernetes/api and\n\
         # kubernetes/apimachinery (generated.proto + types.go); do not edit by hand.\n",
    );
    for p in MACHINERY_PACKAGES {
        emit(&Path::new(machinery).join(p), &mut out);
    }
    for p in API_PACKAGES {
        emit(&Path::new(api).join(p), &mut out);
    }
    print!("{out}");
}
