//! Egress by name through real sessions (`agent.network = "proxy"`, the
//! default): the fake agent's Bash tool runs curl and python inside the
//! session's network namespace; what it reaches goes through the session's
//! own proxy, is audited, and hosts not listed wait for the owner.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
mod sessions_support;

use std::net::TcpListener;

use serde_json::{json, Value};
use sessions_support::*;

use mitzo_testkit::hello_upstream as upstream;

fn netns_or_skip(test: &str) -> bool {
    if !landlock_or_skip(test) {
        return false;
    }
    if let Err(why) = mitzo_sandbox::netns::probe() {
        if std::env::var("MITZO_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
            panic!("{test}: {why}");
        }
        eprintln!("SKIPPED {test}: {why}");
        return false;
    }
    true
}

/// Run `cmd` as the fake agent's Bash tool (allowed once by the owner,
/// answering any network request with `network`); the tool's output.
fn bash(
    ws: &mut Ws,
    session: Option<&str>,
    cmd: &str,
    network: &str,
) -> (String, String, Vec<Value>) {
    ws.send(json!({"type": "send", "sessionId": session, "prompt": format!("tool:Bash:{cmd}")}));
    let id = match session {
        Some(s) => s.to_string(),
        None => ws.wait_type("session_created")["sessionId"]
            .as_str()
            .unwrap()
            .to_string(),
    };
    let req = ws.wait_type("permission_request");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "once"}));
    let mut network_requests = Vec::new();
    loop {
        let f = ws.next();
        if f["sessionId"] != id.as_str() {
            continue;
        }
        match f["type"].as_str() {
            Some("network_request") => {
                ws.send(json!({"type": "permission_response", "sessionId": id, "permId": f["permId"], "decision": network}));
                network_requests.push(f);
            }
            Some("tool_result") => {
                let text = match &f["result"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                ws.wait_type("result");
                return (id, text, network_requests);
            }
            _ => {}
        }
    }
}

#[test]
fn session_agent_reaches_listed_names_only_through_its_proxy() {
    if !netns_or_skip("session_agent_reaches_listed_names_only_through_its_proxy") {
        return;
    }
    let up = upstream();
    // model.test is pinned to loopback on purpose; localhost is listed but
    // not pinned, so its loopback address is refused.
    let hosts = format!(
        "[{{ host = \"model.test\", port = {up}, address = \"127.0.0.1\" }}, \"localhost:{up}\"]"
    );
    let s = start_with("", vec![("MITZOD_AGENT__ALLOWED_HOSTS".into(), hosts)]);
    let mut ws = s.ws();
    ws.send(json!({"type": "hello", "protocolVersion": 2}));
    let curl =
        |url: &str, tag: &str| format!("curl -s --max-time 60 {url} || echo {tag}-failed; echo");
    let cmd = [
        // Through the proxy (HTTP_PROXY is set), by the pinned name.
        curl(&format!("http://model.test:{up}/"), "pinned"),
        // Directly, bypassing the proxy: no route out of the namespace.
        curl(&format!("--noproxy '*' http://127.0.0.1:{up}/"), "direct"),
        // Listed, resolving to loopback, not pinned: refused.
        curl(&format!("http://localhost:{up}/"), "private"),
        // Not listed: the owner is asked and denies.
        curl(&format!("http://unlisted.test:{up}/"), "unlisted"),
        // An IP literal not listed, through a CONNECT tunnel: asked, denied.
        curl(&format!("-p http://127.0.0.1:{up}/"), "literal"),
    ]
    .join("; ");
    let (id, out, asked) = bash(&mut ws, None, &cmd, "deny");
    assert!(
        out.contains("upstream says hi"),
        "pinned name via the proxy: {out}"
    );
    assert_eq!(
        out.matches("upstream says hi").count(),
        1,
        "only the pinned name: {out}"
    );
    assert!(
        out.contains("direct-failed") || out.contains("000"),
        "{out}"
    );
    assert!(out.contains("non-public address"), "private: {out}");
    assert!(out.contains("not on the allow-list"), "unlisted: {out}");
    let asked: Vec<String> = asked
        .iter()
        .map(|f| format!("{}:{}", f["host"].as_str().unwrap(), f["port"]))
        .collect();
    assert_eq!(
        asked,
        [format!("unlisted.test:{up}"), format!("127.0.0.1:{up}")],
        "each unlisted host was put to the owner"
    );

    // Every connection is in the audit log, refusals too.
    let audit = s.audit(&id);
    let net: Vec<&Value> = audit.iter().filter(|r| r["tool"] == "Network").collect();
    let line = |host: &str, decision: &str| {
        net.iter().any(|r| {
            r["inputSummary"].as_str().unwrap().starts_with(host) && r["decision"] == decision
        })
    };
    assert!(
        line(&format!("model.test:{up} via 127.0.0.1:{up}"), "allow"),
        "{net:#?}"
    );
    assert!(line(&format!("localhost:{up} refused"), "deny"), "{net:#?}");
    assert!(
        line(&format!("unlisted.test:{up} refused"), "deny"),
        "{net:#?}"
    );
    assert!(line(&format!("127.0.0.1:{up} refused"), "deny"), "{net:#?}");
    let allowed = net
        .iter()
        .find(|r| {
            r["decision"] == "allow" && r["inputSummary"].as_str().unwrap().contains("B down")
        })
        .unwrap();
    assert!(
        !allowed["inputSummary"]
            .as_str()
            .unwrap()
            .contains(" 0 B down"),
        "{allowed}"
    );
    // The owner's decisions are audited as such.
    assert!(audit
        .iter()
        .any(|r| r["tool"] == "Network" && r["decidedBy"] == "owner" && r["decision"] == "deny"));
    // Refusals are events of the session.
    let events = s.wait_event(&id, |e| {
        e["type"] == "network_refused" && e["host"] == "localhost"
    });
    assert!(events
        .iter()
        .any(|e| e["type"] == "network_refused" && e["host"] == "unlisted.test"));
}

#[test]
fn a_host_allowed_for_one_session_is_not_allowed_for_another() {
    if !netns_or_skip("a_host_allowed_for_one_session_is_not_allowed_for_another") {
        return;
    }
    let up = upstream();
    let s = start("");
    let mut ws = s.ws();
    ws.send(json!({"type": "hello", "protocolVersion": 2}));
    let get = format!("curl -s --max-time 60 http://127.0.0.1:{up}/ || echo get-failed");

    // Session A: the owner allows the host for the session.
    let (a, out, asked) = bash(&mut ws, None, &get, "allow_session");
    assert!(
        out.contains("upstream says hi"),
        "allowed by the owner: {out}"
    );
    assert_eq!(asked.len(), 1);
    // Again in A: allowed without asking.
    let (_, out, asked) = bash(&mut ws, Some(&a), &get, "deny");
    assert!(
        out.contains("upstream says hi"),
        "allowed for the session: {out}"
    );
    assert!(asked.is_empty(), "not asked again: {asked:?}");

    // Session B: asked again, and denied.
    let (b, out, asked) = bash(&mut ws, None, &get, "deny");
    assert_ne!(a, b);
    assert_eq!(asked.len(), 1, "B's owner is asked: the grant was A's");
    assert!(out.contains("not on the allow-list"), "{out}");
    assert!(!out.contains("upstream says hi"), "{out}");
    // Denied once: not asked again in B.
    let (_, out, asked) = bash(&mut ws, Some(&b), &get, "allow_session");
    assert!(
        asked.is_empty() && out.contains("not on the allow-list"),
        "{out} {asked:?}"
    );

    // B cannot even open a Unix socket to try A's proxy socket by path
    // (see an_agent_has_no_way_out_but_its_proxy); were it to, the proxy
    // answers only A's processes (egress::a_session_proxy_answers_only_its_own_processes).
    let sock_a = s.server.state_dir.join("egress").join(format!("{a}.sock"));
    assert!(sock_a.exists(), "A's proxy socket: {}", sock_a.display());
}

#[test]
fn network_none_reaches_nothing_and_ports_keeps_the_host_network() {
    if !netns_or_skip("network_none_reaches_nothing_and_ports_keeps_the_host_network") {
        return;
    }
    let up = upstream();
    let get = format!("curl -s --max-time 20 --noproxy '*' http://127.0.0.1:{up}/ || echo get-failed; env | grep -ci _proxy");
    for (mode, reached) in [("none", false), ("ports", true)] {
        let s = start_with(
            "",
            vec![
                ("MITZOD_AGENT__NETWORK".into(), mode.into()),
                (
                    "MITZOD_AGENT__ALLOWED_CONNECT_PORTS".into(),
                    format!("[{up}]"),
                ),
            ],
        );
        let mut ws = s.ws();
        ws.send(json!({"type": "hello", "protocolVersion": 2}));
        let (_, out, _) = bash(&mut ws, None, &get, "deny");
        assert_eq!(out.contains("upstream says hi"), reached, "{mode}: {out}");
        assert!(
            out.trim_end().ends_with('0'),
            "{mode}: no proxy variables: {out}"
        );
    }
}

#[test]
fn a_repo_narrows_the_allow_list_and_never_widens_it() {
    if !netns_or_skip("a_repo_narrows_the_allow_list_and_never_widens_it") {
        return;
    }
    let up = upstream();
    let pin = |h: &str| format!("{{ host = \"{h}\", port = {up}, address = \"127.0.0.1\" }}");
    let hosts = format!("[{}, {}]", pin("model.test"), pin("other.test"));
    let s = start_with("", vec![("MITZOD_AGENT__ALLOWED_HOSTS".into(), hosts)]);
    let mut ws = s.ws();
    ws.send(json!({"type": "hello", "protocolVersion": 2}));
    let cmd = ["model.test", "other.test", "widen.test"]
        .map(|h| format!("echo {h}: $(curl -s --max-time 60 http://{h}:{up}/ | head -c 40)"))
        .join("; ");

    // Control: no `.mitzo.json`, the operator's list applies whole.
    let (_, out, asked) = bash(&mut ws, None, &cmd, "deny");
    assert!(out.contains("model.test: upstream says hi"), "{out}");
    assert!(out.contains("other.test: upstream says hi"), "{out}");
    assert!(!out.contains("widen.test: upstream"), "{out}");
    assert_eq!(asked.len(), 1, "{asked:?}");

    // The repo keeps model.test only, and names a host of its own.
    std::fs::write(
        s.repo.join(".mitzo.json"),
        r#"{"allowedHosts": ["model.test", "widen.test"]}"#,
    )
    .unwrap();
    let (_, out, asked) = bash(&mut ws, None, &cmd, "deny");
    assert!(out.contains("model.test: upstream says hi"), "kept: {out}");
    assert!(
        !out.contains("other.test: upstream"),
        "narrowed away: {out}"
    );
    assert!(
        !out.contains("widen.test: upstream"),
        "never widened: {out}"
    );
    let asked: Vec<&str> = asked.iter().map(|f| f["host"].as_str().unwrap()).collect();
    assert_eq!(asked, ["other.test", "widen.test"], "both are now unlisted");
}

/// The first nameserver of /etc/resolv.conf (IPv4).
fn resolver() -> Option<String> {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("nameserver").map(|a| a.trim().to_string()))
        .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
}

/// The agent of a proxy session tries every way out but the proxy, with
/// the same helper the test first runs outside any sandbox (the control:
/// each attempt works there). A row whose control fails on this machine
/// is skipped with a message: the MPTCP and raw-socket rows (they need
/// root here) then fail under MITZO_REQUIRE_ROOT_TESTS=1; the DNS rows
/// need a resolver that answers (over TCP too), which not every machine
/// has.
#[test]
fn an_agent_has_no_way_out_but_its_proxy() {
    if !netns_or_skip("an_agent_has_no_way_out_but_its_proxy") {
        return;
    }
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in tcp.incoming() {});
    // A Unix socket outside the sandbox, by a path the agent can name.
    let unix_dir = common::open_tempdir();
    let unix_path = unix_dir.path().join("outside.sock");
    let unix = std::os::unix::net::UnixListener::bind(&unix_path).unwrap();
    std::thread::spawn(move || for _ in unix.incoming() {});
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    if common::is_root() {
        // MPTCP is off by default on some kernels; the row needs it on.
        let _ = std::fs::write("/proc/sys/net/mptcp/enabled", "1");
    }
    let s = start("");
    let helper = s.repo.join("escape_helper.py");
    std::fs::write(&helper, include_str!("sandbox_common/escape_helper.py")).unwrap();
    let dns = resolver().unwrap_or_else(|| "192.0.2.1".into());
    // (name, helper arguments, whether MITZO_REQUIRE_ROOT_TESTS makes it required)
    let rows: Vec<(&str, String, bool)> = vec![
        (
            "TCP straight to the host's loopback, past the proxy",
            format!("tcp {tcp_port}"),
            true,
        ),
        (
            "UDP to an echo server on the host's loopback",
            format!("udp_echo {udp_port}"),
            true,
        ),
        (
            "DNS over UDP to the system resolver",
            format!("dns_udp {dns}"),
            false,
        ),
        (
            "DNS over TCP to the system resolver",
            format!("dns_tcp {dns}"),
            false,
        ),
        (
            "MPTCP to the host's loopback",
            format!("mptcp_plain {tcp_port}"),
            true,
        ),
        (
            "a raw ICMP socket, an echo request to 127.0.0.1",
            "raw_ping".to_string(),
            true,
        ),
        (
            "a Unix socket by path outside the sandbox",
            format!("unix_connect {}", unix_path.display()),
            true,
        ),
        (
            "new user and network namespaces of its own (unshare)",
            "new_netns".to_string(),
            true,
        ),
    ];
    let require = std::env::var("MITZO_REQUIRE_ROOT_TESTS").as_deref() == Ok("1");
    let mut tried = Vec::new();
    for (name, args, required) in &rows {
        let control = std::process::Command::new("/usr/bin/python3")
            .arg(&helper)
            .args(args.split(' '))
            .output()
            .unwrap();
        if control.status.success() {
            tried.push((*name, args.clone()));
        } else if require && *required {
            panic!(
                "{name}: the control run failed here: {}",
                String::from_utf8_lossy(&control.stderr)
            );
        } else {
            eprintln!(
                "SKIPPED row {name:?}: the control run fails on this machine ({})",
                String::from_utf8_lossy(&control.stderr).trim()
            );
        }
    }
    assert!(tried.len() >= 3, "too few rows could run: {tried:?}");
    let script = tried
        .iter()
        .enumerate()
        .map(|(i, (_, args))| {
            format!(
                "/usr/bin/python3 {} {args} 2>&1 && echo ROW{i}=reached || echo ROW{i}=failed",
                helper.display()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut ws = s.ws();
    ws.send(json!({"type": "hello", "protocolVersion": 2}));
    let (_, out, _) = bash(&mut ws, None, &script, "deny");
    for (i, (name, _)) in tried.iter().enumerate() {
        assert!(
            out.contains(&format!("ROW{i}=failed")),
            "{name}: reached from the agent: {out}"
        );
        eprintln!("{name:<55} control reached, agent failed");
    }
    // The last two are refused by the agent's own seccomp filters (EPERM),
    // not by a missing route.
    for what in ["unix_connect", "new_netns"] {
        assert!(out.contains(&format!("{what}: [Errno 1]")), "{what}: {out}");
    }
}

/// mitzod where unprivileged user namespaces are forbidden (a user
/// namespace of the test's whose `user.max_user_namespaces` is 0, as a
/// kernel or unit that forbids them would leave it): with `network =
/// "proxy"` no agent starts and the error says what is missing;
/// `check-config` says so too. Control: `network = "ports"` there starts
/// the agent. Needs root (to map the test's uids into that namespace).
#[test]
fn without_user_namespaces_proxy_refuses_to_start_agents() {
    let test = "without_user_namespaces_proxy_refuses_to_start_agents";
    if !landlock_or_skip(test) || !common::require_root(test) {
        return;
    }
    // Run `mitzod ARGS...` in a user namespace (uids and gids mapped one to
    // one) that may create no more: a forked child writes the maps from
    // outside, then the namespace's limit is set to 0 and mitzod is exec'd.
    const ENTER: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    os.read(r, 1)
    for f in ("uid_map", "gid_map"):
        with open(f"/proc/{os.getppid()}/{f}", "w") as fh:
            fh.write("0 0 65536\n")
    os._exit(0)
os.close(r)
if libc.unshare(0x10000000) != 0:
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
os.write(w, b"x")
if os.waitpid(pid, 0)[1] != 0:
    sys.exit("writing the id maps failed")
with open("/proc/sys/user/max_user_namespaces", "w") as fh:
    fh.write("0\n")
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let forbidden = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = std::process::Command::new("/usr/bin/python3");
        c.args(["-c", ENTER, common::mitzod_bin()]).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    };
    for (network, refused) in [("proxy", true), ("ports", false)] {
        let mut server = common::TestServer::new(common::Options::default());
        let repo = make_repo(server.dir.path());
        let agent = install_fake_agent(server.dir.path());
        let text = std::fs::read_to_string(&server.config).unwrap();
        std::fs::write(
            &server.config,
            format!(
                "repo_path = \"{}\"\n{text}\n[agent]\ncommand = \"{}\"\nnetwork = \"{network}\"\n",
                repo.display(),
                agent.display()
            ),
        )
        .unwrap();
        let config = server.config.display().to_string();
        let check = forbidden(&["check-config", "--config", &config], &[])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&check.stdout).to_string()
            + &String::from_utf8_lossy(&check.stderr);
        assert_eq!(
            said.contains("key `agent.network`"),
            refused,
            "{network}: check-config: {said}"
        );
        if refused {
            assert!(said.contains("RestrictNamespaces=user net"), "{said}");
        }

        let log = std::fs::File::create(&server.log).unwrap();
        let child = forbidden(&["serve", "--config", &config], &[("MITZO_LOG", "info")])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        server.child = Some(child);
        server.wait_ready();
        let jwt = server.login();
        let mut ws = Ws::connect(server.port, &jwt);
        ws.send(json!({"type": "hello", "protocolVersion": 2}));
        ws.send(json!({"type": "send", "sessionId": null, "prompt": "text:hello"}));
        if refused {
            let err = ws.wait_type("error");
            let e = err["error"].as_str().unwrap();
            assert!(
                e.contains("agent.network = \"proxy\" needs a network namespace")
                    && e.contains("RestrictNamespaces=user net")
                    && e.contains("agent.network = \"ports\""),
                "{err}"
            );
            // The start-up probe runs beside start-up: give its line time
            // to reach the log.
            for _ in 0..100 {
                if server.log_text().contains("agents will not start") {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            assert!(
                server.log_text().contains("agents will not start"),
                "the start-up log says so: {}",
                server.log_text()
            );
        } else {
            let result = ws.wait_type("result");
            assert_eq!(result["isError"], false, "{result}");
        }
        server.stop();
    }
}
