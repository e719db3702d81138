//! Forwarding names outside the cluster domain to the host's resolvers,
//! byte for byte (the client's id and flags travel unchanged).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer before the next is tried (glibc's
/// resolver waits 5 s; pods retry themselves, so less is better here).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The `nameserver` lines of a resolv.conf, port 53, minus `own` (the
/// address this server listens on: forwarding to it would loop).
/// Loopback resolvers (e.g. systemd-resolved's 127.0.0.53) are kept: the
/// server runs in the host's network namespace, where they answer.
pub fn upstreams_from_resolv_conf(text: &str, own: IpAddr) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        .filter(|ip| *ip != own && !ip.is_unspecified())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Sends `query` to each upstream in turn over UDP; the first answer wins.
pub async fn forward_udp(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        if let Ok(Ok(n)) = tokio::time::timeout(UPSTREAM_TIMEOUT, sock.recv(&mut buf)).await {
            // The answer must be to our question.
            if n >= 2 && buf[..2] == query[..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

/// Sends `query` to each upstream in turn over TCP (RFC 1035 §4.2.2).
pub async fn forward_tcp(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for up in upstreams {
        let attempt = async {
            let mut s = TcpStream::connect(up).await.ok()?;
            let mut msg = (query.len() as u16).to_be_bytes().to_vec();
            msg.extend_from_slice(query);
            s.write_all(&msg).await.ok()?;
            let len = s.read_u16().await.ok()? as usize;
            let mut buf = vec![0u8; len];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        if let Ok(Some(b)) = tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
            return Some(b);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_and_skips_our_own_address() {
        let text = "search example.org\nnameserver 10.255.255.53\nnameserver 10.42.0.1\n# nameserver 1.1.1.1\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\noptions ndots:1\n";
        let got = upstreams_from_resolv_conf(text, "10.42.0.1".parse().unwrap());
        let want: Vec<SocketAddr> = vec![
            "10.255.255.53:53".parse().unwrap(),
            "127.0.0.53:53".parse().unwrap(),
            "[fe80::1]:53".parse().unwrap(),
        ];
        assert_eq!(got, want);
    }
}
