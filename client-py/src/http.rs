//! The HTTP side of the client, free of Python so that it runs with the GIL
//! released: requests, the token re-read on 401, and retries while the
//! server restarts.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::discovery::{self, FileRead, Header, Source};

/// Largest response body accepted (session event lists can be long).
const MAX_BODY: u64 = 64 * 1024 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "PATCH" => Some(Method::Patch),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// RFC 9110 idempotent methods: safe to send again after a connection
    /// dropped mid-request.
    pub fn idempotent(self) -> bool {
        matches!(self, Method::Get | Method::Put | Method::Delete)
    }
}

/// One request as the client methods describe it.
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    /// Send the credential (false only for `/api/version` and `/healthz`).
    pub auth: bool,
    /// `X-Client-ID` for the agent task tools.
    pub client_id: Option<String>,
}

#[derive(Debug)]
pub enum CallError {
    /// The server answered with a non-2xx status.
    Status {
        status: u16,
        error: String,
        retry_after: Option<f64>,
        what: String,
    },
    /// The server could not be reached (or dropped the connection).
    Connection { message: String },
    /// `close()` was called on this client.
    Closed,
    /// A 2xx answer whose body is not JSON.
    BadResponse { message: String },
}

struct TokenState {
    token: String,
}

pub struct Transport {
    base: String,
    timeout: Duration,
    /// Keeps connections for idempotent calls; replaced by an empty one on close.
    pooled: RwLock<ureq::Agent>,
    closed: AtomicBool,
    ua: String,
    /// A fresh connection for every non-idempotent call, so that it is never
    /// written to a kept-alive socket the server may be closing.
    fresh: ureq::Agent,
    /// The proxy from the environment, if any (see [`proxy_from_env`]).
    proxy: Option<String>,
    header: Header,
    source: Source,
    token: RwLock<TokenState>,
}

fn build_agent(idle: usize, timeout: Duration, ua: &str, proxy: Option<&str>) -> ureq::Agent {
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .max_idle_connections(idle)
        .max_idle_connections_per_host(idle)
        .redirects(0)
        .user_agent(ua);
    if let Some(p) = proxy.and_then(|p| ureq::Proxy::new(p).ok()) {
        b = b.proxy(p);
    }
    b.build()
}

/// The proxy for `base` from the environment: `https_proxy`/`HTTPS_PROXY`
/// for https, `http_proxy`/`HTTP_PROXY` for http, else
/// `all_proxy`/`ALL_PROXY`; none when `no_proxy`/`NO_PROXY` names the host
/// (a name or a domain suffix, `*` for all). Inside an agent's network
/// namespace (`agent.network = "proxy"`) this is the only way to mitzod.
pub fn proxy_from_env(base: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |names: &[&str]| {
        names
            .iter()
            .filter_map(|n| env(n))
            .find(|v| !v.trim().is_empty())
    };
    let (https, rest) = if let Some(r) = base.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = base.strip_prefix("http://") {
        (false, r)
    } else {
        return None;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(r) = authority.strip_prefix('[') {
        r.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    }
    .to_ascii_lowercase();
    if let Some(no) = get(&["no_proxy", "NO_PROXY"]) {
        for entry in no.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                return None;
            }
            let e = entry.trim_start_matches('.').to_ascii_lowercase();
            let e = e.rsplit_once(':').map_or(e.as_str(), |(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    e.as_str()
                }
            });
            if host == e || host.ends_with(&format!(".{e}")) {
                return None;
            }
        }
    }
    let specific = if https {
        get(&["https_proxy", "HTTPS_PROXY"])
    } else {
        get(&["http_proxy", "HTTP_PROXY"])
    };
    specific.or_else(|| get(&["all_proxy", "ALL_PROXY"]))
}

/// Walk an error's sources for the io::Error that caused it.
fn io_kind(err: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(ioe) = e.downcast_ref::<io::Error>() {
            return Some(ioe.kind());
        }
        cur = e.source();
    }
    None
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encode one path segment (an id) so it cannot change the route.
pub fn segment(s: &str) -> String {
    percent_encode(s)
}

fn parse_retry_after(v: Option<&str>) -> Option<f64> {
    let v = v?.trim();
    v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0)
}

impl Transport {
    pub fn new(base: &str, timeout: Duration, found: discovery::Found) -> Transport {
        let ua = format!("mitzo_client/{}", env!("CARGO_PKG_VERSION"));
        let proxy = proxy_from_env(base, &|k| std::env::var(k).ok());
        Transport {
            base: base.trim_end_matches('/').to_string(),
            timeout,
            pooled: RwLock::new(build_agent(4, timeout, &ua, proxy.as_deref())),
            closed: AtomicBool::new(false),
            fresh: build_agent(0, timeout, &ua, proxy.as_deref()),
            proxy,
            ua,
            header: found.header,
            source: found.source,
            token: RwLock::new(TokenState { token: found.token }),
        }
    }

    /// Drop the kept-alive connections; later calls fail with `Closed`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let empty = build_agent(0, self.timeout, &self.ua, self.proxy.as_deref());
        match self.pooled.write() {
            Ok(mut g) => *g = empty,
            Err(p) => *p.into_inner() = empty,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    fn current_token(&self) -> String {
        match self.token.read() {
            Ok(g) => g.token.clone(),
            Err(p) => p.into_inner().token.clone(),
        }
    }

    fn store_token(&self, t: String) {
        match self.token.write() {
            Ok(mut g) => g.token = t,
            Err(p) => p.into_inner().token = t,
        }
    }

    /// After a 401: if the token came from a file, read the file again.
    /// Returns the token to retry with, when it differs from `used`.
    /// `warnings` receives a permission warning about the re-read file.
    fn refresh_after_401(&self, used: &str, warnings: &mut Vec<String>) -> Option<String> {
        let Source::File(path) = &self.source else {
            return None;
        };
        // Another thread may have re-read it already.
        let cur = self.current_token();
        if cur != used {
            return Some(cur);
        }
        match discovery::read_token_file(path) {
            FileRead::Token { token, warning } if token != used => {
                warnings.extend(warning);
                self.store_token(token.clone());
                Some(token)
            }
            _ => None,
        }
    }

    fn connection_message(&self, detail: &str) -> String {
        format!(
            "cannot reach mitzod at {} ({detail}); is the server running? \
             Check `systemctl status mitzod.socket` (and `systemctl status mitzod`)",
            self.base
        )
    }

    /// Run one call to completion: retries, 401 re-read, error mapping.
    /// `warnings` collects messages for Python's `warnings` module.
    pub fn call(&self, c: &Call<'_>, warnings: &mut Vec<String>) -> Result<Value, CallError> {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut reread_done = false;
        let url = format!("{}{}", self.base, c.path);
        let body = c.body.as_ref().map(|b| b.to_string());
        if self.is_closed() {
            return Err(CallError::Closed);
        }
        let pooled = match self.pooled.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        loop {
            let token = self.current_token();
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() {
                return Err(CallError::Connection {
                    message: self.connection_message("timed out"),
                });
            }
            let agent = if c.method.idempotent() {
                &pooled
            } else {
                &self.fresh
            };
            let mut req = agent
                .request(c.method.as_str(), &url)
                .timeout(remaining)
                .set("Accept", "application/json");
            for (k, v) in &c.query {
                req = req.query(k, v);
            }
            if c.auth {
                req = match self.header {
                    Header::Internal => req.set("X-Internal-Token", &token),
                    Header::Bearer => req.set("Authorization", &format!("Bearer {token}")),
                };
            }
            if let Some(id) = &c.client_id {
                req = req.set("X-Client-ID", id);
            }
            let result = match &body {
                Some(b) => req.set("Content-Type", "application/json").send_string(b),
                None => req.call(),
            };
            match result {
                Ok(resp) => return read_json(resp),
                Err(ureq::Error::Status(status, resp)) => {
                    if status == 401 && c.auth && !reread_done {
                        reread_done = true;
                        if self.refresh_after_401(&token, warnings).is_some() {
                            continue;
                        }
                    }
                    return Err(status_error(c, status, resp));
                }
                Err(ureq::Error::Transport(t)) => {
                    let kind = io_kind(&t);
                    let refused = kind == Some(io::ErrorKind::ConnectionRefused);
                    // A refused connection never carried the request: safe to
                    // retry whatever the method. A connection that dropped
                    // after the request went out: only when idempotent.
                    let dropped = matches!(
                        kind,
                        Some(
                            io::ErrorKind::ConnectionReset
                                | io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::BrokenPipe
                                | io::ErrorKind::UnexpectedEof
                        )
                    ) || (t.kind() == ureq::ErrorKind::Io && kind.is_none());
                    let retry = refused || (dropped && c.method.idempotent());
                    if retry && Instant::now() + backoff < deadline {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                    let detail = if refused {
                        "connection refused".to_string()
                    } else {
                        t.to_string()
                    };
                    return Err(CallError::Connection {
                        message: self.connection_message(&detail),
                    });
                }
            }
        }
    }
}

fn read_body(resp: ureq::Response) -> Result<Vec<u8>, CallError> {
    let mut buf = Vec::new();
    resp.into_reader()
        .take(MAX_BODY)
        .read_to_end(&mut buf)
        .map_err(|e| CallError::BadResponse {
            message: format!("reading the response failed: {e}"),
        })?;
    Ok(buf)
}

fn read_json(resp: ureq::Response) -> Result<Value, CallError> {
    let buf = read_body(resp)?;
    if buf.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&buf).map_err(|e| CallError::BadResponse {
        message: format!("the server's answer is not JSON: {e}"),
    })
}

fn status_error(c: &Call<'_>, status: u16, resp: ureq::Response) -> CallError {
    let retry_after = parse_retry_after(resp.header("Retry-After"));
    let buf = read_body(resp).unwrap_or_default();
    let error = match serde_json::from_slice::<Value>(&buf) {
        Ok(Value::Object(o)) => match o.get("error") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => Value::Object(o).to_string(),
        },
        _ => {
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim();
            text.chars().take(500).collect()
        }
    };
    CallError::Status {
        status,
        error,
        retry_after,
        what: format!("{} {}", c.method.as_str(), c.path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_escape_the_route() {
        assert_eq!(segment("abc-1_2"), "abc-1_2");
        assert_eq!(segment("../x"), "%2E%2E%2Fx");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("a?b#c d"), "a%3Fb%23c%20d");
    }

    #[test]
    fn proxy_comes_from_the_environment_unless_no_proxy_names_the_host() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        const P: &str = "http://127.0.0.1:3128";
        let agent = env(&[("HTTP_PROXY", P), ("HTTPS_PROXY", P), ("NO_PROXY", "")]);
        assert_eq!(
            proxy_from_env("http://127.0.0.1:3100", &agent).as_deref(),
            Some(P)
        );
        assert_eq!(
            proxy_from_env("https://box.example", &agent).as_deref(),
            Some(P)
        );
        let none = env(&[]);
        assert_eq!(proxy_from_env("http://127.0.0.1:3100", &none), None);
        let bypass = env(&[
            ("http_proxy", P),
            ("no_proxy", "localhost,.example.com,127.0.0.1:9"),
        ]);
        assert_eq!(proxy_from_env("http://127.0.0.1:3100", &bypass), None);
        assert_eq!(proxy_from_env("http://a.example.com/x", &bypass), None);
        assert_eq!(
            proxy_from_env("http://example.org", &bypass).as_deref(),
            Some(P)
        );
        let all = env(&[("ALL_PROXY", P), ("NO_PROXY", "*")]);
        assert_eq!(proxy_from_env("http://x", &all), None);
        assert_eq!(proxy_from_env("unix:/run/mitzo.sock", &agent), None);
    }

    #[test]
    fn retry_after_is_seconds() {
        assert_eq!(parse_retry_after(Some("7")), Some(7.0));
        assert_eq!(parse_retry_after(Some(" 1.5 ")), Some(1.5));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn methods() {
        assert!(Method::Get.idempotent());
        assert!(Method::Delete.idempotent());
        assert!(!Method::Post.idempotent());
        assert!(!Method::Patch.idempotent());
        assert_eq!(Method::parse("patch"), Some(Method::Patch));
        assert_eq!(Method::parse("TRACE"), None);
    }
}
