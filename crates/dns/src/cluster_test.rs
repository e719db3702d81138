use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn cluster() -> Cluster {
    let mut c = Cluster::new("cluster.local");
    c.set_service(
        "default",
        "web",
        ServiceInfo {
            cluster_ip: Some(ip("10.43.0.10")),
            ports: vec![("http".into(), "tcp".into(), 80)],
            ..Default::default()
        },
    );
    c.set_service(
        "default",
        "db",
        ServiceInfo {
            headless: true,
            ..Default::default()
        },
    );
    c.set_service(
        "default",
        "ext",
        ServiceInfo {
            external_name: Some("example.com".into()),
            ..Default::default()
        },
    );
    c.set_slice(
        "default",
        "db-abc",
        SliceInfo {
            service: "db".into(),
            endpoints: vec![
                EndpointInfo {
                    ip: ip("10.42.0.5"),
                    hostname: Some("db-0".into()),
                    ready: true,
                },
                EndpointInfo {
                    ip: ip("10.42.0.6"),
                    hostname: None,
                    ready: true,
                },
                EndpointInfo {
                    ip: ip("10.42.0.7"),
                    hostname: None,
                    ready: false,
                },
            ],
            ports: vec![("pg".into(), "tcp".into(), 5432)],
        },
    );
    c
}

fn records(r: Resolution) -> Vec<RData> {
    match r {
        Resolution::Answer(a) => a.answers.into_iter().map(|r| r.data).collect(),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn answers_table() {
    let c = cluster();
    let srv = |port, target: &str| RData::Srv {
        priority: 0,
        weight: 100,
        port,
        target: target.into(),
    };
    let cases: Vec<(&str, u16, Vec<RData>)> = vec![
        (
            "web.default.svc.cluster.local",
            TYPE_A,
            vec![RData::A(ip("10.43.0.10"))],
        ),
        (
            "web.default.svc.cluster.local",
            crate::wire::TYPE_AAAA,
            vec![],
        ),
        (
            "_http._tcp.web.default.svc.cluster.local",
            TYPE_SRV,
            vec![srv(80, "web.default.svc.cluster.local")],
        ),
        (
            "db.default.svc.cluster.local",
            TYPE_A,
            vec![RData::A(ip("10.42.0.5")), RData::A(ip("10.42.0.6"))],
        ),
        (
            "_pg._tcp.db.default.svc.cluster.local",
            TYPE_SRV,
            vec![
                srv(5432, "db-0.db.default.svc.cluster.local"),
                srv(5432, "10-42-0-6.db.default.svc.cluster.local"),
            ],
        ),
        (
            "db-0.db.default.svc.cluster.local",
            TYPE_A,
            vec![RData::A(ip("10.42.0.5"))],
        ),
        (
            "10-42-0-6.db.default.svc.cluster.local",
            TYPE_A,
            vec![RData::A(ip("10.42.0.6"))],
        ),
        (
            "10-1-2-3.default.pod.cluster.local",
            TYPE_A,
            vec![RData::A(ip("10.1.2.3"))],
        ),
        (
            "ext.default.svc.cluster.local",
            TYPE_A,
            vec![RData::Cname("example.com".into())],
        ),
        ("default.svc.cluster.local", TYPE_A, vec![]),
        ("cluster.local", TYPE_A, vec![]),
    ];
    for (name, qtype, want) in cases {
        assert_eq!(records(c.resolve(name, qtype)), want, "{name} {qtype}");
    }
}

#[test]
fn unknown_cluster_names_are_nxdomain_others_forwarded() {
    let c = cluster();
    for name in [
        "nope.default.svc.cluster.local",
        "web.other.svc.cluster.local",
        // What the search path makes of a full name (ndots:5).
        "web.default.svc.cluster.local.default.svc.cluster.local",
        "_nope._tcp.web.default.svc.cluster.local",
        "_http._udp.web.default.svc.cluster.local",
        "10-42-0-7.db.default.svc.cluster.local", // not ready
        "x.web.default.svc.cluster.local",        // not headless
        "notanip.default.pod.cluster.local",
        "a.b.c.d.e.f.cluster.local",
    ] {
        assert_eq!(c.resolve(name, TYPE_A), Resolution::NxDomain, "{name}");
    }
    assert_eq!(c.resolve("example.com", TYPE_A), Resolution::Forward);
    assert_eq!(c.resolve("notcluster.local", TYPE_A), Resolution::Forward);
}

#[test]
fn updates_and_removals_are_seen() {
    let mut c = cluster();
    c.remove_slice("default", "db-abc");
    assert_eq!(
        records(c.resolve("db.default.svc.cluster.local", TYPE_A)),
        vec![]
    );
    c.remove_service("default", "web");
    assert_eq!(
        c.resolve("web.default.svc.cluster.local", TYPE_A),
        Resolution::NxDomain
    );
    assert_eq!(c.len(), (2, 0));
}
