//! The DNS server on 127.0.0.1 with a random port: cluster answers over
//! UDP and TCP, NXDOMAIN, forwarding to a fake upstream, truncation.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use skiff_dns::cluster::{EndpointInfo, ServiceInfo, SliceInfo};
use skiff_dns::wire::{self, RData, TYPE_A, TYPE_SRV};
use skiff_dns::{Cluster, DnsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

async fn ask_udp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(q, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(10), s.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.truncate(n);
    buf
}

async fn ask_tcp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).await.unwrap();
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(q);
    s.write_all(&msg).await.unwrap();
    let n = s.read_u16().await.unwrap();
    let mut buf = vec![0u8; n as usize];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

fn cluster() -> Arc<RwLock<Cluster>> {
    let mut c = Cluster::new("cluster.local");
    c.set_service(
        "default",
        "web",
        ServiceInfo {
            cluster_ip: Some(Ipv4Addr::new(10, 43, 0, 10)),
            ports: vec![("http".into(), "tcp".into(), 80)],
            ..Default::default()
        },
    );
    c.set_service(
        "default",
        "big",
        ServiceInfo {
            headless: true,
            ..Default::default()
        },
    );
    c.set_slice(
        "default",
        "big-1",
        SliceInfo {
            service: "big".into(),
            endpoints: (1..=60)
                .map(|i| EndpointInfo {
                    ip: Ipv4Addr::new(10, 42, 1, i),
                    hostname: None,
                    ready: true,
                })
                .collect(),
            ports: vec![],
        },
    );
    Arc::new(RwLock::new(c))
}

#[tokio::test]
async fn answers_over_udp_and_tcp_and_forwards_the_rest() {
    // A fake upstream that answers every query with 192.0.2.1.
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 512];
        loop {
            let (n, peer) = upstream.recv_from(&mut buf).await.unwrap();
            let q = wire::parse_query(&buf[..n]).unwrap();
            let a = wire::Answer {
                answers: vec![wire::Record {
                    name: q.name.clone(),
                    ttl: 60,
                    data: RData::A(Ipv4Addr::new(192, 0, 2, 1)),
                }],
                ..Default::default()
            };
            upstream
                .send_to(
                    &wire::build_response(&q, wire::Rcode::NoError, &a, 512),
                    peer,
                )
                .await
                .unwrap();
        }
    });
    let c = cluster();
    let server = DnsServer::start("127.0.0.1:0".parse().unwrap(), c.clone(), vec![up_addr])
        .await
        .unwrap();
    let addr = server.udp_addr();

    let r = wire::parse_response(
        &ask_udp(
            addr,
            &wire::build_query(1, "web.default.svc.cluster.local", TYPE_A),
        )
        .await,
    )
    .unwrap();
    assert_eq!((r.id, r.rcode), (1, 0));
    assert_eq!(r.answers[0].data, RData::A(Ipv4Addr::new(10, 43, 0, 10)));

    let r = wire::parse_response(
        &ask_tcp(
            server.tcp_addr(),
            &wire::build_query(2, "_http._tcp.web.default.svc.cluster.local", TYPE_SRV),
        )
        .await,
    )
    .unwrap();
    assert_eq!(
        r.answers[0].data,
        RData::Srv {
            priority: 0,
            weight: 100,
            port: 80,
            target: "web.default.svc.cluster.local".into()
        }
    );
    assert_eq!(r.additional[0].data, RData::A(Ipv4Addr::new(10, 43, 0, 10)));

    let r = wire::parse_response(
        &ask_udp(
            addr,
            &wire::build_query(3, "nope.default.svc.cluster.local", TYPE_A),
        )
        .await,
    )
    .unwrap();
    assert_eq!(r.rcode, 3);

    let r =
        wire::parse_response(&ask_udp(addr, &wire::build_query(4, "example.com", TYPE_A)).await)
            .unwrap();
    assert_eq!((r.id, r.rcode), (4, 0));
    assert_eq!(r.answers[0].data, RData::A(Ipv4Addr::new(192, 0, 2, 1)));

    // 60 addresses do not fit 512 bytes: TC over UDP, all of them over TCP.
    let q = wire::build_query(5, "big.default.svc.cluster.local", TYPE_A);
    assert!(
        wire::parse_response(&ask_udp(addr, &q).await)
            .unwrap()
            .truncated
    );
    assert_eq!(
        wire::parse_response(&ask_tcp(server.tcp_addr(), &q).await)
            .unwrap()
            .answers
            .len(),
        60
    );

    // A change is visible at once.
    c.write().unwrap().remove_service("default", "web");
    let r = wire::parse_response(
        &ask_udp(
            addr,
            &wire::build_query(6, "web.default.svc.cluster.local", TYPE_A),
        )
        .await,
    )
    .unwrap();
    assert_eq!(r.rcode, 3);

    // Garbage gets FORMERR, not silence or a crash.
    let r = wire::parse_response(&ask_udp(addr, &[0xAB, 0xCD, 1, 2, 3]).await).unwrap();
    assert_eq!((r.id, r.rcode), (0xABCD, 1));
    server.stop();
}

/// `cargo test -p skiff-dns --test dns_udp_tcp -- --ignored --nocapture`:
/// latency of cluster answers over UDP (a measurement, not a check).
#[tokio::test]
#[ignore = "a measurement that prints latencies, not a check: run by hand with --ignored"]
async fn bench_cluster_answers() {
    let server = DnsServer::start("127.0.0.1:0".parse().unwrap(), cluster(), vec![])
        .await
        .unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.connect(server.udp_addr()).await.unwrap();
    let q = wire::build_query(1, "web.default.svc.cluster.local", TYPE_A);
    let mut buf = [0u8; 512];
    let mut times = Vec::new();
    for _ in 0..20_000 {
        let t = Instant::now();
        s.send(&q).await.unwrap();
        s.recv(&mut buf).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let total: Duration = times.iter().sum();
    println!("| queries | p50 | p99 | qps (1 client) |\n|---|---|---|---|");
    println!(
        "| {} | {:?} | {:?} | {:.0} |",
        times.len(),
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times.len() as f64 / total.as_secs_f64()
    );
}
