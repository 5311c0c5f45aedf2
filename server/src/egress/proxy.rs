//! An allow-listing HTTP proxy on a Unix socket, for agents whose network
//! namespace has no way out but this socket (see
//! [`mitzo_sandbox::netns`]).
//!
//! It speaks `CONNECT host:port` (TLS tunnels) and absolute-form plain HTTP
//! (`GET http://host/path`). A host is reached only when it is on the list,
//! by name; mitzod resolves the name itself, and an address in a private,
//! loopback, link-local or otherwise non-public range is refused unless the
//! list entry says that host lives there on purpose. An IP literal is
//! reached only when the literal itself is listed. Every connection, allowed
//! or refused, is reported as a [`ProxyEvent`] (host, port, decision, bytes).
//!
//! A session's proxy also answers only its own processes (the peer of each
//! connection must descend from the session's reaper), takes hosts the
//! owner allowed for the session, and may ask the owner about a host that
//! is not listed while the connection waits.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

/// Longest request head accepted (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Relay buffer per direction: large enough that a download costs few
/// system calls per MiB (tokio's default is 8 KiB).
const COPY_BUF: usize = 256 * 1024;
/// How long a request head may take to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// One entry of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// A host name (matched case-insensitively, exactly) or an IP literal.
    pub host: String,
    /// Only this port, or any.
    pub port: Option<u16>,
    /// The host is meant to resolve to a private or loopback address (the
    /// model API of a test, mitzod itself).
    pub private_ok: bool,
    /// Reach this address instead of resolving the name.
    pub address: Option<IpAddr>,
}

impl AllowedHost {
    fn matches(&self, host: &str, port: u16) -> bool {
        self.host.eq_ignore_ascii_case(host) && self.port.map_or(true, |p| p == port)
    }
}

/// Asks the owner whether `host:port` may be reached; `None`: no.
pub type Asker = Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = Option<AllowedHost>> + Send>> + Send + Sync,
>;

#[derive(Clone, Default)]
pub struct ProxyPolicy {
    /// The operator's list (narrowed by the repo's `.mitzo.json`).
    pub allowed: Vec<AllowedHost>,
    /// Hosts the owner allowed for this session ("always for this session").
    pub granted: Arc<RwLock<Vec<AllowedHost>>>,
    /// Asked about a host on neither list; without it, such a host is
    /// refused at once.
    pub ask: Option<Asker>,
    /// The pid every peer must descend from (the session's reaper), once
    /// known (0 until then); `None`: any peer (tests, benchmarks).
    pub peer_root: Option<watch::Receiver<i32>>,
}

impl std::fmt::Debug for ProxyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyPolicy")
            .field("allowed", &self.allowed)
            .field("granted", &self.granted)
            .field("ask", &self.ask.is_some())
            .field("peer_root", &self.peer_root.as_ref().map(|r| *r.borrow()))
            .finish()
    }
}

impl ProxyPolicy {
    fn entry(&self, host: &str, port: u16) -> Option<AllowedHost> {
        if let Some(a) = self.allowed.iter().find(|a| a.matches(host, port)) {
            return Some(a.clone());
        }
        let granted = self.granted.read().unwrap_or_else(|p| p.into_inner());
        granted.iter().find(|a| a.matches(host, port)).cloned()
    }
}

/// How long a connection waits for the session's reaper pid to be known.
const PEER_WAIT: Duration = Duration::from_secs(10);

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields after
    // the last `)` are fixed.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is `root` or one of its descendants.
pub fn descends_from(pid: i32, root: i32) -> bool {
    let mut cur = pid;
    for _ in 0..256 {
        if cur == root {
            return true;
        }
        if cur <= 1 {
            return false;
        }
        match parent_of(cur) {
            Some(p) => cur = p,
            None => return false,
        }
    }
    false
}

/// Whether the peer of `stream` belongs to the session.
async fn peer_allowed(stream: &UnixStream, root: &Option<watch::Receiver<i32>>) -> bool {
    let Some(rx) = root else { return true };
    let mut rx = rx.clone();
    let root = match tokio::time::timeout(PEER_WAIT, rx.wait_for(|p| *p != 0)).await {
        Ok(Ok(p)) => *p,
        _ => return false,
    };
    let Some(pid) = stream.peer_cred().ok().and_then(|c| c.pid()) else {
        return false;
    };
    descends_from(pid, root)
}

/// What happened to one proxied connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyEvent {
    pub host: String,
    pub port: u16,
    pub allowed: bool,
    /// Why it was refused, or the address it reached.
    pub detail: String,
    /// Bytes from the agent to the host, and back.
    pub up: u64,
    pub down: u64,
    /// The host was not listed and the owner was asked.
    pub asked: bool,
}

/// Addresses an agent must not reach by way of a listed public name.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local
                || (seg0 & 0xffc0) == 0xfe80 // link-local
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
}

/// Serve the proxy on `listener` until it fails; one task per connection.
pub async fn serve(
    listener: UnixListener,
    policy: Arc<ProxyPolicy>,
    events: mpsc::UnboundedSender<ProxyEvent>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let policy = policy.clone();
        let events = events.clone();
        tokio::spawn(async move {
            if !peer_allowed(&stream, &policy.peer_root).await {
                // Another session's process (or a stranger) found the socket:
                // it gets nothing, not even an answer.
                let _ = events.send(ProxyEvent {
                    host: String::new(),
                    port: 0,
                    allowed: false,
                    detail: "a process outside the session connected to its proxy".into(),
                    up: 0,
                    down: 0,
                    asked: false,
                });
                return;
            }
            if let Some(ev) = handle(stream, &policy).await {
                let _ = events.send(ev);
            }
        });
    }
}

struct Request {
    connect: bool,
    host: String,
    port: u16,
    /// For plain HTTP: the head to send upstream (origin-form).
    head: Vec<u8>,
    /// Bytes read past the head.
    rest: Vec<u8>,
}

async fn read_head(stream: &mut UnixStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

/// Split `host:port` (IPv6 literals in brackets).
fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((s.to_string(), default_port)),
    }
}

fn parse(head: Vec<u8>, rest: Vec<u8>) -> Option<Request> {
    let text = std::str::from_utf8(&head).ok()?;
    let (line, headers) = text.split_once("\r\n")?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_host_port(target, 443)?;
        return Some(Request {
            connect: true,
            host,
            port,
            head: Vec::new(),
            rest,
        });
    }
    let after = target.strip_prefix("http://")?;
    let (authority, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    if authority.contains('@') {
        return None;
    }
    let (host, port) = split_host_port(authority, 80)?;
    // One request per connection: the next request on a kept-alive
    // connection could name another host, and would not be decided.
    let mut upstream = format!("{method} {path} {version}\r\n").into_bytes();
    upstream.extend_from_slice(&end_to_end_headers(headers));
    upstream.extend_from_slice(b"Connection: close\r\n\r\n");
    Some(Request {
        connect: false,
        host,
        port,
        head: upstream,
        rest,
    })
}

/// The header lines of `headers` (each ending in CRLF) without the
/// hop-by-hop ones, which are the proxy's to set.
fn end_to_end_headers(headers: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len());
    for line in headers.split("\r\n").filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        if [
            "connection",
            "proxy-connection",
            "keep-alive",
            "proxy-authorization",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Relay a plain-HTTP response, its head rewritten to close the
/// connection after it; the bytes sent to the client.
async fn relay_response<R, W>(from: &mut R, to: &mut W) -> u64
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let end = loop {
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                // No complete head: pass on what came.
                let _ = to.write_all(&buf).await;
                return buf.len() as u64;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return 0;
        }
    };
    let rest = buf.split_off(end + 4);
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head.as_str(), ""));
    let mut out = format!("{status}\r\n").into_bytes();
    out.extend_from_slice(&end_to_end_headers(headers));
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&rest);
    if to.write_all(&out).await.is_err() {
        return 0;
    }
    let mut sent = out.len() as u64;
    let mut from = tokio::io::BufReader::with_capacity(COPY_BUF, from);
    if let Ok(n) = tokio::io::copy_buf(&mut from, to).await {
        sent += n;
    }
    sent
}

/// Decide and resolve: the address to connect to, or why not.
async fn decide(
    policy: &ProxyPolicy,
    host: &str,
    port: u16,
    asked: &mut bool,
) -> Result<SocketAddr, String> {
    if host.is_empty() || host.len() > 253 || host.bytes().any(|b| b <= b' ' || b == b'/') {
        return Err("malformed host".into());
    }
    let entry = match policy.entry(host, port) {
        Some(e) => e,
        None => match &policy.ask {
            Some(ask) => {
                *asked = true;
                match ask(host.to_ascii_lowercase(), port).await {
                    Some(e) => e,
                    None => {
                        return Err(format!(
                            "{host}:{port} is not on the allow-list (not allowed by the owner)"
                        ))
                    }
                }
            }
            None => return Err(format!("{host}:{port} is not on the allow-list")),
        },
    };
    let literal = host.parse::<IpAddr>().ok();
    let addrs: Vec<SocketAddr> = match (entry.address, literal) {
        (Some(ip), _) | (None, Some(ip)) => vec![SocketAddr::new(ip, port)],
        (None, None) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    let usable: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| entry.private_ok || !is_non_public(a.ip()))
        .collect();
    match usable.first() {
        Some(a) => Ok(*a),
        None if addrs.is_empty() => Err(format!("{host} has no address")),
        None => Err(format!(
            "{host} resolves to a non-public address ({}) and is not listed as private",
            addrs[0].ip()
        )),
    }
}

async fn refuse(stream: &mut UnixStream, why: &str) {
    let body = format!("mitzod proxy: {why}\n");
    let resp = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn handle(mut stream: UnixStream, policy: &ProxyPolicy) -> Option<ProxyEvent> {
    // A client that never finishes its request head does not hold a task.
    let (head, rest) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream))
        .await
        .ok()??;
    let Some(req) = parse(head, rest) else {
        refuse(&mut stream, "malformed request").await;
        return None;
    };
    let mut ev = ProxyEvent {
        host: req.host.clone(),
        port: req.port,
        allowed: false,
        detail: String::new(),
        up: 0,
        down: 0,
        asked: false,
    };
    let addr = match decide(policy, &req.host, req.port, &mut ev.asked).await {
        Ok(a) => a,
        Err(why) => {
            refuse(&mut stream, &why).await;
            ev.detail = why;
            return Some(ev);
        }
    };
    let mut upstream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            let why = format!("cannot connect to {addr}: {e}");
            refuse(&mut stream, &why).await;
            ev.detail = why;
            return Some(ev);
        }
    };
    ev.allowed = true;
    ev.detail = addr.to_string();
    if req.connect {
        if stream
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return Some(ev);
        }
    } else if upstream.write_all(&req.head).await.is_err() {
        return Some(ev);
    }
    if !req.rest.is_empty() && upstream.write_all(&req.rest).await.is_err() {
        return Some(ev);
    }
    ev.up = (req.head.len() + req.rest.len()) as u64;
    if req.connect {
        if let Ok((up, down)) =
            tokio::io::copy_bidirectional_with_sizes(&mut stream, &mut upstream, COPY_BUF, COPY_BUF)
                .await
        {
            ev.up += up;
            ev.down += down;
        }
        return Some(ev);
    }
    // Plain HTTP: the body goes up while the response comes down; the
    // connection ends with the response.
    let (mut cr, mut cw) = stream.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let up_task = tokio::spawn(async move {
        let mut cr = tokio::io::BufReader::with_capacity(COPY_BUF, &mut cr);
        let n = tokio::io::copy_buf(&mut cr, &mut uw).await.unwrap_or(0);
        let _ = uw.shutdown().await;
        n
    });
    ev.down = relay_response(&mut ur, &mut cw).await;
    let _ = cw.shutdown().await;
    // The client may keep its side open after the response: its request
    // is complete by then, whatever it still holds.
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), up_task).await {
        ev.up += n;
    }
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_non_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "160.79.104.10", "2606:4700::1111"] {
            assert!(!is_non_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn requests_parse() {
        let r = parse(b"CONNECT api.example:443 HTTP/1.1\r\n\r\n".to_vec(), vec![]).unwrap();
        assert!(r.connect && r.host == "api.example" && r.port == 443);
        let r = parse(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n".to_vec(), vec![]).unwrap();
        assert_eq!((r.host.as_str(), r.port), ("::1", 8443));
        let r = parse(
            b"GET http://h.example:8080/a?b HTTP/1.1\r\nHost: h.example\r\n\r\n".to_vec(),
            vec![],
        )
        .unwrap();
        assert!(!r.connect && r.host == "h.example" && r.port == 8080);
        assert!(r
            .head
            .starts_with(b"GET /a?b HTTP/1.1\r\nHost: h.example\r\n"));
        assert!(r.head.ends_with(b"\r\nConnection: close\r\n\r\n"));
        let r = parse(
            b"GET http://h.example/ HTTP/1.1\r\nHost: h\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\nProxy-Authorization: x\r\n\r\n".to_vec(),
            vec![],
        )
        .unwrap();
        assert_eq!(
            r.head,
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec()
        );
        assert!(parse(b"GET /relative HTTP/1.1\r\n\r\n".to_vec(), vec![]).is_none());
        assert!(parse(b"GET http://u@h/ HTTP/1.1\r\n\r\n".to_vec(), vec![]).is_none());
    }
}
