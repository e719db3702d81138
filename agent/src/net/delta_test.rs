//! The delta between rulesets, checked as data and as transaction text.
//! (`agent/tests/net_nft.rs` checks that it gives the kernel the same table
//! as a full load.)

use std::net::Ipv4Addr;

use super::*;
use crate::net::bench::{render, synthetic_services, SYNTHETIC_POD_CIDRS as CIDRS};
use crate::net::proxy;

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn the_same_ruleset_gives_an_empty_delta() {
    let rs = render(&synthetic_services(5, 3), CIDRS);
    let d = delta(&rs, &rs.clone()).unwrap();
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(d.transaction("t", &rs, &rs), "");
}

#[test]
fn one_changed_endpoint_rewrites_one_chain_and_the_hairpin_pair() {
    let svcs = synthetic_services(5, 3);
    let mut changed = svcs.clone();
    changed[2].endpoints[1].ip = Ipv4Addr::new(10, 42, 200, 1);
    let (prev, next) = (render(&svcs, CIDRS), render(&changed, CIDRS));

    let d = delta(&prev, &next).unwrap();
    let text = d.transaction("t", &prev, &next);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "delete element ip t hairpin { 10.42.0.9 . 10.42.0.9 }",
            "flush chain ip t svc-bench/svc-2/tcp/80",
            "add element ip t hairpin { 10.42.200.1 . 10.42.200.1 }",
            "add rule ip t svc-bench/svc-2/tcp/80 ip saddr != @pod-cidrs jump mark-for-masquerade",
            "add rule ip t svc-bench/svc-2/tcp/80 meta l4proto tcp dnat ip addr . port to numgen random mod 3 map { 0 : 10.42.0.8 . 8080, 1 : 10.42.200.1 . 8080, 2 : 10.42.0.10 . 8080 }",
        ]
    );
}

#[test]
fn one_changed_endpoint_with_affinity_replaces_its_chain_and_set() {
    let mut svcs = synthetic_services(5, 3);
    for s in &mut svcs {
        s.affinity_timeout = Some(60);
    }
    let mut changed = svcs.clone();
    let old_ep = changed[2].endpoints[1].clone();
    changed[2].endpoints[1].ip = Ipv4Addr::new(10, 42, 200, 1);
    let (prev, next) = (render(&svcs, CIDRS), render(&changed, CIDRS));

    let d = delta(&prev, &next).unwrap();
    let sp = &changed[2];
    let new_ep = &sp.endpoints[1];
    assert_eq!(
        d,
        Delta {
            added_chains: set(&[&proxy::sep_chain(sp, new_ep)]),
            changed_chains: set(&[&proxy::svc_chain(sp)]),
            removed_chains: set(&[&proxy::sep_chain(sp, &old_ep)]),
            added_sets: set(&[&proxy::affinity_set(sp, new_ep)]),
            removed_sets: set(&[&proxy::affinity_set(sp, &old_ep)]),
            removed_elements: [("hairpin".into(), vec!["10.42.0.9 . 10.42.0.9".into()])].into(),
            added_elements: [("hairpin".into(), vec!["10.42.200.1 . 10.42.200.1".into()])].into(),
            ..Delta::default()
        }
    );
    // The old endpoint's set goes only after the chains using it are flushed.
    let text = d.transaction("t", &prev, &next);
    let flushed = text
        .find("flush chain ip t sep-bench/svc-2/tcp/80__10.42.0.9/8080\n")
        .unwrap();
    let deleted = text
        .find("delete set ip t aff-bench/svc-2/tcp/80__10.42.0.9/8080\n")
        .unwrap();
    assert!(flushed < deleted, "{text}");
}

#[test]
fn a_removed_service_loses_its_map_elements_before_its_chains() {
    let svcs = synthetic_services(3, 2);
    let (prev, next) = (render(&svcs, CIDRS), render(&svcs[..2], CIDRS));
    let d = delta(&prev, &next).unwrap();
    assert_eq!(
        d.removed_elements["service-ips"],
        ["10.43.0.3 . tcp . 80 : goto svc-bench/svc-2/tcp/80"]
    );
    assert_eq!(d.removed_chains, set(&["svc-bench/svc-2/tcp/80"]));
    assert!(d.added_elements.is_empty() && d.changed_chains.is_empty());

    let text = d.transaction("t", &prev, &next);
    // Maps are deleted by key; a chain is flushed before it is deleted.
    let del_elem = text
        .find("delete element ip t service-ips { 10.43.0.3 . tcp . 80 }\n")
        .unwrap();
    let flush = text
        .find("flush chain ip t svc-bench/svc-2/tcp/80\n")
        .unwrap();
    let delete = text
        .find("delete chain ip t svc-bench/svc-2/tcp/80\n")
        .unwrap();
    assert!(del_elem < flush && flush < delete, "{text}");
}

#[test]
fn an_added_service_adds_chains_before_the_elements_naming_them() {
    let svcs = synthetic_services(3, 2);
    let (prev, next) = (render(&svcs[..2], CIDRS), render(&svcs, CIDRS));
    let d = delta(&prev, &next).unwrap();
    assert_eq!(d.added_chains, set(&["svc-bench/svc-2/tcp/80"]));
    let text = d.transaction("t", &prev, &next);
    let chain = text
        .find("add chain ip t svc-bench/svc-2/tcp/80\n")
        .unwrap();
    let elem = text
        .find(
            "add element ip t service-ips { 10.43.0.3 . tcp . 80 : goto svc-bench/svc-2/tcp/80 }\n",
        )
        .unwrap();
    let rule = text.find("add rule ip t svc-bench/svc-2/tcp/80 ").unwrap();
    assert!(chain < elem && elem < rule, "{text}");
    assert!(
        !text.contains("delete") && !text.contains("flush"),
        "{text}"
    );
}

#[test]
fn a_map_element_with_a_new_verdict_is_deleted_by_key_then_added() {
    let svcs = synthetic_services(1, 2);
    let mut no_endpoints = svcs.clone();
    no_endpoints[0].endpoints.clear();
    let prev = render(&svcs, CIDRS);
    let mut next = prev.clone();
    next.sets.get_mut("service-ips").unwrap().elements =
        vec!["10.43.0.1 . tcp . 80 : goto ext-x".to_string()];
    let d = delta(&prev, &next).unwrap();
    let text = d.transaction("t", &prev, &next);
    assert_eq!(
        text,
        "delete element ip t service-ips { 10.43.0.1 . tcp . 80 }\n\
         add element ip t service-ips { 10.43.0.1 . tcp . 80 : goto ext-x }\n"
    );
    // Losing all endpoints moves the service from the map to the reject set.
    let d = delta(&prev, &render(&no_endpoints, CIDRS)).unwrap();
    assert!(d.removed_elements.contains_key("service-ips"));
    assert_eq!(
        d.added_elements["no-endpoint-services"],
        ["10.43.0.1 . tcp . 80"]
    );
}

#[test]
fn interval_sets_are_refilled_whole() {
    let svcs = synthetic_services(1, 1);
    let prev = render(&svcs, &["10.42.0.0/24"]);
    let next = render(&svcs, &["10.42.0.0/24", "10.42.1.0/24"]);
    let d = delta(&prev, &next).unwrap();
    assert_eq!(d.refilled_sets, set(&["pod-cidrs"]));
    let text = d.transaction("t", &prev, &next);
    assert_eq!(
        text,
        "flush set ip t pod-cidrs\nadd element ip t pod-cidrs { 10.42.0.0/24, 10.42.1.0/24 }\n"
    );
}

#[test]
fn kept_affinity_sets_are_added_and_removed_but_their_elements_never_touched() {
    let plain = synthetic_services(1, 1);
    let mut sticky = plain.clone();
    sticky[0].affinity_timeout = Some(60);
    let (without, with) = (render(&plain, CIDRS), render(&sticky, CIDRS));
    let aff = proxy::affinity_set(&sticky[0], &sticky[0].endpoints[0]);

    let on = delta(&without, &with).unwrap();
    assert_eq!(on.added_sets, set(&[&aff]));
    let text = on.transaction("t", &without, &with);
    let declared = text
        .find(&format!(
            "add set ip t {aff} {{ type ipv4_addr; flags dynamic,timeout; timeout 60s; }}"
        ))
        .unwrap();
    let used = text.find(&format!("update @{aff}")).unwrap();
    assert!(declared < used, "{text}");

    // The packet path filled the kernel's copy; our model has no elements,
    // and an unchanged resync leaves them alone.
    assert!(delta(&with, &with.clone()).unwrap().is_empty());

    let off = delta(&with, &without).unwrap();
    assert_eq!(off.removed_sets, set(&[&aff]));
    let text = off.transaction("t", &with, &without);
    let flushed = text.find("flush chain ip t sep-").unwrap();
    let deleted = text.find(&format!("delete set ip t {aff}\n")).unwrap();
    assert!(flushed < deleted, "{text}");
}

#[test]
fn a_changed_hook_or_set_declaration_needs_a_full_rewrite() {
    let rs = render(&synthetic_services(1, 1), CIDRS);
    let mut hook = rs.clone();
    hook.chains.get_mut("nat-output").unwrap().hook =
        Some("type nat hook output priority 0; policy accept;".into());
    assert_eq!(delta(&rs, &hook), None);
    let mut decl = rs.clone();
    decl.sets
        .get_mut("service-ips")
        .unwrap()
        .decl
        .push_str(" flags interval;");
    assert_eq!(delta(&rs, &decl), None);
}
