//! A minimal DNS SRV client (for `dnssrv+` endpoints): one UDP query to the
//! first nameserver of `/etc/resolv.conf`, answers parsed with name compression.

use std::time::Duration;

/// The `(target, port)` of every SRV record of `name`.
pub async fn lookup_srv(name: &str) -> Result<Vec<(String, u16)>, String> {
    let server = nameserver().unwrap_or_else(|| "127.0.0.1".to_string());
    let addr = if server.contains(':') && !server.starts_with('[') {
        format!("[{server}]:53")
    } else {
        format!("{server}:53")
    };
    let sock = tokio::net::UdpSocket::bind(if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })
    .await
    .map_err(|e| format!("SRV lookup of {name}: {e}"))?;
    let id: u16 = (std::process::id() as u16) ^ 0x5a5a;
    let q = query(id, name)?;
    sock.send_to(&q, &addr)
        .await
        .map_err(|e| format!("SRV lookup of {name} via {addr}: {e}"))?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .map_err(|_| format!("SRV lookup of {name} via {addr}: timed out"))?
        .map_err(|e| format!("SRV lookup of {name} via {addr}: {e}"))?;
    parse_srv(&buf[..n], id).map_err(|e| format!("SRV lookup of {name}: {e}"))
}

fn nameserver() -> Option<String> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some("nameserver"))
            .then(|| it.next().map(str::to_string))
            .flatten()
    })
}

/// A DNS query for the SRV records of `name`, recursion desired.
pub fn query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("bad DNS name {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 33, 0, 1]);
    Ok(q)
}

fn read_name(m: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let mut labels: Vec<String> = Vec::new();
    let mut end: Option<usize> = None;
    for _ in 0..128 {
        let len = *m.get(pos).ok_or("truncated name")? as usize;
        if len & 0xC0 == 0xC0 {
            let lo = *m.get(pos + 1).ok_or("truncated pointer")? as usize;
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3F) << 8) | lo;
            continue;
        }
        if len == 0 {
            return Ok((labels.join("."), end.unwrap_or(pos + 1)));
        }
        let l = m.get(pos + 1..pos + 1 + len).ok_or("truncated label")?;
        labels.push(String::from_utf8_lossy(l).into_owned());
        pos += 1 + len;
    }
    Err("name compression loop".into())
}

/// The SRV records of a DNS response to query `id`.
pub fn parse_srv(m: &[u8], id: u16) -> Result<Vec<(String, u16)>, String> {
    if m.len() < 12 || u16::from_be_bytes([m[0], m[1]]) != id {
        return Err("bad DNS response".into());
    }
    let rcode = m[3] & 0x0F;
    if rcode != 0 {
        return Err(format!("DNS error code {rcode}"));
    }
    let qd = u16::from_be_bytes([m[4], m[5]]) as usize;
    let an = u16::from_be_bytes([m[6], m[7]]) as usize;
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(m, pos)?.1 + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        pos = read_name(m, pos)?.1;
        let h = m.get(pos..pos + 10).ok_or("truncated record")?;
        let typ = u16::from_be_bytes([h[0], h[1]]);
        let rdlen = u16::from_be_bytes([h[8], h[9]]) as usize;
        let rd = pos + 10;
        if typ == 33 {
            let p = m.get(rd..rd + 6).ok_or("truncated SRV")?;
            let port = u16::from_be_bytes([p[4], p[5]]);
            let (target, _) = read_name(m, rd + 6)?;
            out.push((target, port));
        }
        pos = rd + rdlen;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_compressed_srv_answer() {
        let mut m = query(7, "_grpc._tcp.store.svc").unwrap();
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1; // one answer
                  // name: pointer to the question name at offset 12
        m.extend_from_slice(&[0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 30]);
        let mut rd = vec![0, 10, 0, 5, 0x27, 0x15]; // prio 10, weight 5, port 10005
        rd.extend_from_slice(&[3, b's', b't', b'0', 0xC0, 23]); // "st0." + "store.svc"
        m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        m.extend_from_slice(&rd);
        assert_eq!(
            parse_srv(&m, 7).unwrap(),
            vec![("st0.store.svc".to_string(), 10005)]
        );
    }
}
