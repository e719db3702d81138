//! The DNS wire format (RFC 1035 §4), only as much as a cluster DNS
//! server needs: parse a query's header, question and EDNS0 payload size;
//! build answers with A, AAAA, CNAME, SRV and SOA records.
//!
//! Names are written without compression (allowed by RFC 1035 §4.1.4;
//! answers stay small), and read with it (clients may compress).

/// Record type A (RFC 1035).
pub const TYPE_A: u16 = 1;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Record type SOA.
pub const TYPE_SOA: u16 = 6;
/// Record type PTR.
pub const TYPE_PTR: u16 = 12;
/// Record type AAAA (RFC 3596).
pub const TYPE_AAAA: u16 = 28;
/// Record type SRV (RFC 2782).
pub const TYPE_SRV: u16 = 33;
/// Record type OPT (EDNS0, RFC 6891).
pub const TYPE_OPT: u16 = 41;
/// Query type ANY.
pub const TYPE_ANY: u16 = 255;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// Response codes (RFC 1035 §4.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    /// No error.
    NoError = 0,
    /// The query could not be parsed.
    FormErr = 1,
    /// The server failed (e.g. no upstream answered).
    ServFail = 2,
    /// The name does not exist.
    NxDomain = 3,
    /// The server does not do this kind of query.
    NotImp = 4,
    /// The server refuses.
    Refused = 5,
}

/// Why bytes are not a DNS query.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The message ends too early.
    #[error("message truncated")]
    Truncated,
    /// A name is malformed (bad label, pointer loop, too long).
    #[error("malformed name")]
    BadName,
    /// Not exactly one question.
    #[error("expected one question, got {0}")]
    QuestionCount(u16),
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Transaction id.
    pub id: u16,
    /// Header flags as sent (RD is echoed).
    pub flags: u16,
    /// Opcode (0 = standard query).
    pub opcode: u8,
    /// The name asked for, lowercased, without the trailing dot.
    pub name: String,
    /// The query type.
    pub qtype: u16,
    /// The query class.
    pub qclass: u16,
    /// The EDNS0 UDP payload size, if the query has an OPT record.
    pub edns_udp_size: Option<u16>,
}

/// One resource record's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    /// An IPv4 address.
    A(std::net::Ipv4Addr),
    /// An IPv6 address.
    Aaaa(std::net::Ipv6Addr),
    /// An alias.
    Cname(String),
    /// A service location.
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host.
        target: String,
    },
    /// Start of authority (for negative answers, RFC 2308).
    Soa {
        /// Primary name server.
        mname: String,
        /// Responsible mailbox.
        rname: String,
        /// Serial.
        serial: u32,
        /// Negative-caching TTL (the minimum field).
        minimum: u32,
    },
}

impl RData {
    /// The record type.
    pub fn rtype(&self) -> u16 {
        match self {
            RData::A(_) => TYPE_A,
            RData::Aaaa(_) => TYPE_AAAA,
            RData::Cname(_) => TYPE_CNAME,
            RData::Srv { .. } => TYPE_SRV,
            RData::Soa { .. } => TYPE_SOA,
        }
    }
}

/// A resource record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Owner name, without trailing dot.
    pub name: String,
    /// Time to live in seconds.
    pub ttl: u32,
    /// The data.
    pub data: RData,
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, WireError> {
    Ok(u16::from_be_bytes([
        *b.get(i).ok_or(WireError::Truncated)?,
        *b.get(i + 1).ok_or(WireError::Truncated)?,
    ]))
}

/// Reads a (possibly compressed) name at `pos`; returns it and the
/// position after it.
fn read_name(b: &[u8], mut pos: usize) -> Result<(String, usize), WireError> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    let mut len_total = 0;
    loop {
        let len = *b.get(pos).ok_or(WireError::Truncated)? as usize;
        match len {
            0 => {
                end.get_or_insert(pos + 1);
                break;
            }
            l if l & 0xC0 == 0xC0 => {
                let ptr = (u16_at(b, pos)? & 0x3FFF) as usize;
                end.get_or_insert(pos + 2);
                jumps += 1;
                if jumps > 16 || ptr >= b.len() {
                    return Err(WireError::BadName);
                }
                pos = ptr;
            }
            l if l > 63 => return Err(WireError::BadName),
            l => {
                let label = b.get(pos + 1..pos + 1 + l).ok_or(WireError::Truncated)?;
                len_total += l + 1;
                if len_total > 255 {
                    return Err(WireError::BadName);
                }
                labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                pos += 1 + l;
            }
        }
    }
    Ok((labels.join("."), end.unwrap_or(pos + 1)))
}

/// Parses a query message.
pub fn parse_query(b: &[u8]) -> Result<Query, WireError> {
    if b.len() < 12 {
        return Err(WireError::Truncated);
    }
    let id = u16_at(b, 0)?;
    let flags = u16_at(b, 2)?;
    let qd = u16_at(b, 4)?;
    let an = u16_at(b, 6)?;
    let ns = u16_at(b, 8)?;
    let ar = u16_at(b, 10)?;
    if qd != 1 {
        return Err(WireError::QuestionCount(qd));
    }
    let (name, pos) = read_name(b, 12)?;
    let qtype = u16_at(b, pos)?;
    let qclass = u16_at(b, pos + 2)?;
    let mut pos = pos + 4;
    // Skip answer and authority records; look for OPT among additionals.
    let mut edns_udp_size = None;
    for i in 0..(u32::from(an) + u32::from(ns) + u32::from(ar)) {
        let (_, p) = read_name(b, pos)?;
        let rtype = u16_at(b, p)?;
        let class = u16_at(b, p + 2)?;
        let rdlen = u16_at(b, p + 8)? as usize;
        if rtype == TYPE_OPT && i >= u32::from(an) + u32::from(ns) {
            edns_udp_size = Some(class.max(512));
        }
        pos = p + 10 + rdlen;
        if pos > b.len() {
            return Err(WireError::Truncated);
        }
    }
    Ok(Query {
        id,
        flags,
        opcode: ((flags >> 11) & 0xF) as u8,
        name,
        qtype,
        qclass,
        edns_udp_size,
    })
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
}

fn write_record(out: &mut Vec<u8>, r: &Record) {
    write_name(out, &r.name);
    out.extend_from_slice(&r.data.rtype().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&r.ttl.to_be_bytes());
    let mut rd = Vec::new();
    match &r.data {
        RData::A(ip) => rd.extend_from_slice(&ip.octets()),
        RData::Aaaa(ip) => rd.extend_from_slice(&ip.octets()),
        RData::Cname(n) => write_name(&mut rd, n),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            rd.extend_from_slice(&priority.to_be_bytes());
            rd.extend_from_slice(&weight.to_be_bytes());
            rd.extend_from_slice(&port.to_be_bytes());
            write_name(&mut rd, target);
        }
        RData::Soa {
            mname,
            rname,
            serial,
            minimum,
        } => {
            write_name(&mut rd, mname);
            write_name(&mut rd, rname);
            for v in [*serial, 7200, 1800, 86400, *minimum] {
                rd.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
    out.extend_from_slice(&(rd.len() as u16).to_be_bytes());
    out.extend_from_slice(&rd);
}

/// An answer to build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of negative answers).
    pub authority: Vec<Record>,
    /// Additional section (addresses of SRV targets).
    pub additional: Vec<Record>,
}

/// Encodes the response to `q` with `rcode` and `answer`. When it is
/// longer than `limit` bytes, the records are dropped and TC is set, so the
/// client retries over TCP (RFC 1035 §4.2.1).
pub fn build_response(q: &Query, rcode: Rcode, answer: &Answer, limit: usize) -> Vec<u8> {
    let encode = |a: &Answer, tc: bool| {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&q.id.to_be_bytes());
        // QR, opcode echoed, AA, TC, RD echoed, RA, rcode.
        let mut flags: u16 = 0x8000 | (u16::from(q.opcode) << 11) | 0x0400 | 0x0080;
        flags |= q.flags & 0x0100;
        if tc {
            flags |= 0x0200;
        }
        flags |= rcode as u16;
        out.extend_from_slice(&flags.to_be_bytes());
        for n in [1, a.answers.len(), a.authority.len(), a.additional.len()] {
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        write_name(&mut out, &q.name);
        out.extend_from_slice(&q.qtype.to_be_bytes());
        out.extend_from_slice(&q.qclass.to_be_bytes());
        for r in a.answers.iter().chain(&a.authority).chain(&a.additional) {
            write_record(&mut out, r);
        }
        out
    };
    let full = encode(answer, false);
    if full.len() <= limit {
        return full;
    }
    encode(&Answer::default(), true)
}

/// A minimal error response (FORMERR, SERVFAIL…) echoing the id and, when
/// it could be read, the question.
pub fn error_response(raw: &[u8], q: Option<&Query>, rcode: Rcode) -> Vec<u8> {
    match q {
        Some(q) => build_response(q, rcode, &Answer::default(), usize::MAX),
        None => {
            let id = raw.get(..2).map_or([0, 0], |b| [b[0], b[1]]);
            let flags: u16 = 0x8000 | 0x0080 | rcode as u16;
            let mut out = id.to_vec();
            out.extend_from_slice(&flags.to_be_bytes());
            out.extend_from_slice(&[0; 8]);
            out
        }
    }
}

/// Encodes a query (for tests and the forwarder's health checks).
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    write_name(&mut out, name);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// A decoded response (for tests): rcode, TC, and the answer records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The id.
    pub id: u16,
    /// The response code.
    pub rcode: u8,
    /// Whether TC was set.
    pub truncated: bool,
    /// Answer records.
    pub answers: Vec<Record>,
    /// Additional records.
    pub additional: Vec<Record>,
}

fn read_record(b: &[u8], pos: usize) -> Result<(Option<Record>, usize), WireError> {
    let (name, p) = read_name(b, pos)?;
    let rtype = u16_at(b, p)?;
    let ttl = (u32::from(u16_at(b, p + 4)?) << 16) | u32::from(u16_at(b, p + 6)?);
    let rdlen = u16_at(b, p + 8)? as usize;
    let start = p + 10;
    let rd = b.get(start..start + rdlen).ok_or(WireError::Truncated)?;
    let data = match rtype {
        TYPE_A if rdlen == 4 => Some(RData::A([rd[0], rd[1], rd[2], rd[3]].into())),
        TYPE_AAAA if rdlen == 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(rd);
            Some(RData::Aaaa(o.into()))
        }
        TYPE_CNAME => Some(RData::Cname(read_name(b, start)?.0)),
        TYPE_SRV => Some(RData::Srv {
            priority: u16_at(b, start)?,
            weight: u16_at(b, start + 2)?,
            port: u16_at(b, start + 4)?,
            target: read_name(b, start + 6)?.0,
        }),
        _ => None,
    };
    Ok((data.map(|data| Record { name, ttl, data }), start + rdlen))
}

/// Decodes a response (tests and diagnostics).
pub fn parse_response(b: &[u8]) -> Result<Response, WireError> {
    if b.len() < 12 {
        return Err(WireError::Truncated);
    }
    let flags = u16_at(b, 2)?;
    let counts: Vec<u16> = (0..4)
        .map(|i| u16_at(b, 4 + 2 * i))
        .collect::<Result<_, _>>()?;
    let mut pos = 12;
    for _ in 0..counts[0] {
        pos = read_name(b, pos)?.1 + 4;
    }
    let mut sections = [Vec::new(), Vec::new(), Vec::new()];
    for (s, n) in counts[1..].iter().enumerate() {
        for _ in 0..*n {
            let (r, p) = read_record(b, pos)?;
            sections[s].extend(r);
            pos = p;
        }
    }
    let [answers, _, additional] = sections;
    Ok(Response {
        id: u16_at(b, 0)?,
        rcode: (flags & 0xF) as u8,
        truncated: flags & 0x0200 != 0,
        answers,
        additional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip_and_compressed_names() {
        let q = parse_query(&build_query(7, "Web.Default.svc.cluster.local", TYPE_SRV)).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype, q.edns_udp_size),
            (7, "web.default.svc.cluster.local", TYPE_SRV, None)
        );
        // A pointer loop is rejected, not followed forever.
        let mut bad = build_query(1, "", TYPE_A);
        bad.truncate(12);
        bad.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&bad), Err(WireError::BadName));
        assert_eq!(parse_query(&[1, 2, 3]), Err(WireError::Truncated));
    }

    #[test]
    fn response_encodes_and_truncates() {
        let q = parse_query(&build_query(9, "web.default.svc.cluster.local", TYPE_A)).unwrap();
        let a = Answer {
            answers: (0..40)
                .map(|i| Record {
                    name: q.name.clone(),
                    ttl: 5,
                    data: RData::A([10, 0, 0, i].into()),
                })
                .collect(),
            ..Default::default()
        };
        let full = parse_response(&build_response(&q, Rcode::NoError, &a, 65535)).unwrap();
        assert_eq!(
            (full.id, full.rcode, full.truncated, full.answers.len()),
            (9, 0, false, 40)
        );
        assert_eq!(full.answers[3].data, RData::A([10, 0, 0, 3].into()));
        let cut = parse_response(&build_response(&q, Rcode::NoError, &a, 512)).unwrap();
        assert!(cut.truncated && cut.answers.is_empty());
        let srv = Answer {
            answers: vec![Record {
                name: "_http._tcp.web.default.svc.cluster.local".into(),
                ttl: 5,
                data: RData::Srv {
                    priority: 0,
                    weight: 100,
                    port: 80,
                    target: "web.default.svc.cluster.local".into(),
                },
            }],
            ..Default::default()
        };
        let r = parse_response(&build_response(&q, Rcode::NoError, &srv, 512)).unwrap();
        assert_eq!(r.answers, srv.answers);
    }
}
