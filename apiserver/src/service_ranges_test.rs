use super::*;

fn svc(spec: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn ranges() -> ServiceRanges {
    ServiceRanges {
        cluster_ips: Ipv4Net::parse("10.43.0.0/29").unwrap(),
        node_ports: (30000, 30003),
    }
}

fn used(ips: &[&str], ports: &[u16]) -> Used {
    Used {
        ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        ports: ports.iter().copied().collect(),
    }
}

fn messages(r: Result<Change, Vec<FieldError>>) -> Vec<String> {
    r.unwrap_err().iter().map(FieldError::message).collect()
}

#[test]
fn parses_networks() {
    let n = Ipv4Net::parse("10.43.0.0/16").unwrap();
    assert_eq!(n.first_host(), Ipv4Addr::new(10, 43, 0, 1));
    assert_eq!(n.size(), 65536);
    assert!(n.contains(Ipv4Addr::new(10, 43, 255, 254)));
    assert!(!n.contains(Ipv4Addr::new(10, 44, 0, 1)));
    assert!(Ipv4Net::parse("10.43.0.1/16").is_err());
    assert!(Ipv4Net::parse("10.43.0.0").is_err());
    assert!(Ipv4Net::parse("10.43.0.0/33").is_err());
}

#[test]
fn dynamic_ip_skips_used_and_reserved() {
    // /29: .0 network, .1 kubernetes, .2-.6 dynamic, .7 broadcast.
    for pick in 0..20 {
        let mut s = svc(json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
        let c = allocate(
            &ranges(),
            &mut s,
            None,
            &used(&["10.43.0.2", "10.43.0.3"], &[]),
            pick,
        )
        .unwrap();
        let ip = c.take_ips[0];
        assert!(
            ["10.43.0.4", "10.43.0.5", "10.43.0.6"].contains(&ip.to_string().as_str()),
            "{ip}"
        );
        assert_eq!(s["spec"]["clusterIP"], ip.to_string());
        assert_eq!(s["spec"]["clusterIPs"], json!([ip.to_string()]));
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
    }
    let mut s = svc(json!({"type": "ClusterIP"}));
    let full = used(
        &[
            "10.43.0.2",
            "10.43.0.3",
            "10.43.0.4",
            "10.43.0.5",
            "10.43.0.6",
        ],
        &[],
    );
    assert!(messages(allocate(&ranges(), &mut s, None, &full, 0))[0].contains("range is full"));
}

#[test]
fn requested_ips() {
    let cases: &[(&str, &[&str], Result<&str, &str>)] = &[
        ("10.43.0.5", &[], Ok("10.43.0.5")),
        ("10.43.0.1", &[], Ok("10.43.0.1")),
        (
            "10.43.0.5",
            &["10.43.0.5"],
            Err(
                r#"spec.clusterIPs[0]: Invalid value: "10.43.0.5": failed to allocate IP 10.43.0.5: provided IP is already allocated"#,
            ),
        ),
        (
            "10.0.0.9",
            &[],
            Err(
                r#"spec.clusterIPs[0]: Invalid value: "10.0.0.9": failed to allocate IP 10.0.0.9: the provided IP (10.0.0.9) is not in the valid range. The range of valid IPs is 10.43.0.0/29"#,
            ),
        ),
        (
            "nope",
            &[],
            Err(r#"spec.clusterIPs[0]: Invalid value: "nope": must be a valid IP address"#),
        ),
    ];
    for (want, held, expect) in cases {
        let mut s = svc(json!({"clusterIP": want, "ports": [{"port": 80}]}));
        let r = allocate(&ranges(), &mut s, None, &used(held, &[]), 0);
        match expect {
            Ok(ip) => assert_eq!(r.unwrap().take_ips, vec![ip.parse::<Ipv4Addr>().unwrap()]),
            Err(m) => assert!(messages(r)[0].starts_with(m), "{want}: {:?}", s),
        }
    }
}

#[test]
fn headless_and_external_name_take_nothing() {
    let mut s = svc(json!({"clusterIP": "None"}));
    assert_eq!(
        allocate(&ranges(), &mut s, None, &Used::default(), 0).unwrap(),
        Change::default()
    );
    assert_eq!(s["spec"]["clusterIPs"], json!(["None"]));
    let mut s = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
    assert_eq!(
        allocate(&ranges(), &mut s, None, &Used::default(), 0).unwrap(),
        Change::default()
    );
    assert!(s["spec"].get("clusterIP").is_none());
}

#[test]
fn cluster_ip_is_kept_and_immutable_on_update() {
    let old = svc(
        json!({"clusterIP": "10.43.0.4", "clusterIPs": ["10.43.0.4"], "ports": [{"port": 80}]}),
    );
    // Left empty (kubectl apply of a manifest without it): kept.
    let mut new = svc(json!({"ports": [{"port": 81}]}));
    let c = allocate(&ranges(), &mut new, Some(&old), &Used::default(), 0).unwrap();
    assert_eq!(c, Change::default());
    assert_eq!(new["spec"]["clusterIP"], "10.43.0.4");
    let mut new = svc(json!({"clusterIP": "10.43.0.5"}));
    assert_eq!(
        messages(allocate(
            &ranges(),
            &mut new,
            Some(&old),
            &Used::default(),
            0
        )),
        vec![r#"spec.clusterIPs[0]: Invalid value: "10.43.0.5": may not change once set"#]
    );
    // Becoming ExternalName gives the IP back.
    let mut new = svc(json!({"type": "ExternalName", "externalName": "a.example"}));
    let c = allocate(&ranges(), &mut new, Some(&old), &Used::default(), 0).unwrap();
    assert_eq!(c.release_ips, vec![Ipv4Addr::new(10, 43, 0, 4)]);
}

#[test]
fn node_ports() {
    // Requested and free; dynamic; same number for TCP and UDP.
    let mut s = svc(json!({"type": "NodePort", "ports": [
        {"name": "a", "port": 80, "protocol": "TCP", "nodePort": 30001},
        {"name": "b", "port": 53, "protocol": "UDP", "nodePort": 30001},
        {"name": "c", "port": 81, "protocol": "TCP"}]}));
    let c = allocate(&ranges(), &mut s, None, &used(&[], &[30000]), 0).unwrap();
    assert_eq!(s["spec"]["ports"][2]["nodePort"], 30002);
    assert_eq!(c.take_ports, vec![30001, 30002]);

    let cases: &[(i64, &[u16], &str)] = &[
        (30000, &[30000], "spec.ports[0].nodePort: Invalid value: 30000: provided port is already allocated"),
        (40000, &[], "spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-30003"),
    ];
    for (port, held, msg) in cases {
        let mut s = svc(
            json!({"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP", "nodePort": port}]}),
        );
        assert_eq!(
            messages(allocate(&ranges(), &mut s, None, &used(&[], held), 0)),
            vec![msg.to_string()]
        );
    }
    // The same port twice for one protocol.
    let mut s = svc(json!({"type": "NodePort", "ports": [
        {"name": "a", "port": 80, "protocol": "TCP", "nodePort": 30001},
        {"name": "b", "port": 81, "protocol": "TCP", "nodePort": 30001}]}));
    assert!(
        messages(allocate(&ranges(), &mut s, None, &Used::default(), 0))[0]
            .contains("already allocated")
    );
}

#[test]
fn node_ports_on_update() {
    let old = svc(json!({"type": "NodePort", "clusterIP": "10.43.0.4",
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30002}]}));
    // nodePort left out: the old one is kept, nothing taken or released.
    let mut new = svc(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
    let c = allocate(&ranges(), &mut new, Some(&old), &Used::default(), 0).unwrap();
    assert_eq!(c, Change::default());
    assert_eq!(new["spec"]["ports"][0]["nodePort"], 30002);
    // Back to ClusterIP: released, and the field cleared.
    let mut new = svc(
        json!({"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30002}]}),
    );
    let c = allocate(&ranges(), &mut new, Some(&old), &Used::default(), 0).unwrap();
    assert_eq!(c.release_ports, vec![30002]);
    assert!(new["spec"]["ports"][0].get("nodePort").is_none());
    // Moved to another port: new taken, old released.
    let mut new = svc(
        json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30003}]}),
    );
    let c = allocate(&ranges(), &mut new, Some(&old), &Used::default(), 0).unwrap();
    assert_eq!((c.take_ports, c.release_ports), (vec![30003], vec![30002]));
}
