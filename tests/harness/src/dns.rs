//! A DNS server for discovery tests: answers A, AAAA and SRV queries over UDP on
//! 127.0.0.1 from a zone the test edits while it runs, and can be switched to
//! answer SERVFAIL (a DNS outage). Real DNS on the wire, parsed by the same
//! resolver (`hickory-resolver`) the code under test uses.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

type Zone = HashMap<(String, RecordType), Vec<RData>>;

#[derive(Default)]
struct State {
    zone: Zone,
    broken: bool,
}

/// A running DNS server; it stops with the test's tokio runtime.
#[derive(Clone)]
pub struct DnsServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl DnsServer {
    /// Starts an empty zone (every name NXDOMAIN) on the current tokio runtime.
    pub async fn start() -> DnsServer {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("binding a UDP port for the DNS server");
        let addr = sock.local_addr().expect("the DNS server's address");
        let state: Arc<Mutex<State>> = Arc::default();
        let st = state.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let resp = answer(&q, &st.lock().unwrap_or_else(|e| e.into_inner()));
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        DnsServer { addr, state }
    }

    /// Where the server listens (UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the SRV records of `name`: `(port, target)` each (priority 0, weight 10).
    pub fn set_srv(&self, name: &str, records: &[(u16, &str)]) {
        let rdata = records
            .iter()
            .map(|(port, target)| {
                RData::SRV(SRV::new(
                    0,
                    10,
                    *port,
                    Name::from_utf8(format!("{target}.")).expect("an SRV target name"),
                ))
            })
            .collect();
        self.set(name, RecordType::SRV, rdata);
    }

    /// Sets the A records of `host` (and an empty AAAA set, so that lookups of
    /// both families answer at once).
    pub fn set_a(&self, host: &str, ips: &[[u8; 4]]) {
        let rdata = ips
            .iter()
            .map(|ip| RData::A(A(Ipv4Addr::from(*ip))))
            .collect();
        self.set(host, RecordType::A, rdata);
        self.set(host, RecordType::AAAA, Vec::new());
    }

    /// SERVFAIL for every query while `broken`.
    pub fn set_broken(&self, broken: bool) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).broken = broken;
    }

    fn set(&self, name: &str, ty: RecordType, rdata: Vec<RData>) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .zone
            .insert((name.trim_end_matches('.').to_string(), ty), rdata);
    }
}

fn answer(q: &Message, st: &State) -> Message {
    let mut resp = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = q.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.authoritative = true;
    for query in &q.queries {
        resp.add_query(query.clone());
        if st.broken {
            resp.metadata.response_code = ResponseCode::ServFail;
            continue;
        }
        let name = query.name().to_utf8().trim_end_matches('.').to_string();
        match st.zone.get(&(name.clone(), query.query_type())) {
            Some(rdatas) => {
                for rd in rdatas {
                    resp.add_answer(Record::from_rdata(query.name().clone(), 1, rd.clone()));
                }
            }
            // The name exists with other types: NOERROR, no data.
            None if st.zone.keys().any(|(n, _)| *n == name) => {}
            None => resp.metadata.response_code = ResponseCode::NXDomain,
        }
    }
    resp
}
