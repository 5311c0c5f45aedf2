//! The environment of a sandboxed process: an allow-list, never a deny-list
//! of the parent's environment.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

/// Variables passed through from mitzod's environment when set.
const ALLOWED: &[&str] = &["PATH", "HOME", "LANG", "TERM", "TZ", "USER", "TMPDIR"];

/// Exact names that never reach a child: systemd's socket activation,
/// notification, credential and journal plumbing, and agent-forwarding
/// sockets that would hand out the owner's keys.
const FORBIDDEN: &[&str] = &[
    "NOTIFY_SOCKET",
    "CREDENTIALS_DIRECTORY",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "SYSTEMD_EXEC_PID",
    "MAINPID",
    "MANAGERPID",
    "STATE_DIRECTORY",
    "RUNTIME_DIRECTORY",
    "CACHE_DIRECTORY",
    "LOGS_DIRECTORY",
    "CONFIGURATION_DIRECTORY",
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "DBUS_SESSION_BUS_ADDRESS",
    // The owner's internal token: an agent gets its own session token.
    "MITZO_INTERNAL_TOKEN",
];

const FORBIDDEN_PREFIXES: &[&str] = &["LISTEN_", "WATCHDOG_", "MITZOD_"];

/// Never set in a child, whoever asks.
pub fn is_forbidden_env(name: &str) -> bool {
    FORBIDDEN.contains(&name) || FORBIDDEN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The child's complete environment.
///
/// `parent`: mitzod's environment. `passthrough`: `agent.env_passthrough`.
/// `session`: values the caller sets for this session (HOME, TMPDIR, ...);
/// they override passed-through ones but still cannot set forbidden names.
pub fn build_env<I>(
    parent: I,
    passthrough: &[String],
    session: &[(String, String)],
) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut out: BTreeMap<OsString, OsString> = BTreeMap::new();
    for (k, v) in parent {
        let Some(name) = k.to_str() else { continue };
        let allowed = ALLOWED.contains(&name) || name.starts_with("LC_");
        let listed = passthrough.iter().any(|p| p == name);
        if !allowed && !listed {
            continue;
        }
        if is_forbidden_env(name) {
            tracing::warn!(
                var = name,
                "not passing forbidden variable to a sandboxed process"
            );
            continue;
        }
        out.insert(k, v);
    }
    for (k, v) in session {
        if is_forbidden_env(k)
            || k.is_empty()
            || k.contains('=')
            || k.contains('\0')
            || v.contains('\0')
        {
            tracing::warn!(var = %k, "refusing to set a forbidden or malformed variable in a sandboxed process");
            continue;
        }
        out.insert(OsString::from(k), OsString::from(v));
    }
    // The seccomp layer refuses UDP: glibc's resolver (and c-ares) must ask
    // over TCP. An operator's own RES_OPTIONS (passed through) keeps its
    // options, with use-vc added.
    let res = out
        .get(OsStr::new("RES_OPTIONS"))
        .and_then(|v| v.to_str())
        .map(|v| format!("{v} use-vc"))
        .unwrap_or_else(|| "use-vc".to_string());
    out.insert(OsString::from("RES_OPTIONS"), OsString::from(res.trim()));
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect()
    }

    #[test]
    fn allow_list_and_forbidden() {
        let parent = env(&[
            ("PATH", "/usr/bin"),
            ("LC_ALL", "C"),
            ("LISTEN_FDS", "2"),
            ("NOTIFY_SOCKET", "/run/x"),
            ("MITZOD_JWT", "s"),
            ("RANDOM_THING", "x"),
            ("EDITOR", "vi"),
            ("MY_API_TOKEN", "t"),
        ]);
        let pass = vec![
            "EDITOR".to_string(),
            "LISTEN_FDS".to_string(),
            "MITZOD_JWT".to_string(),
            "MY_API_TOKEN".to_string(),
        ];
        let out = build_env(
            parent,
            &pass,
            &[
                ("HOME".into(), "/h".into()),
                ("WATCHDOG_USEC".into(), "1".into()),
            ],
        );
        let names: Vec<_> = out.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        // A listed credential for the agent (ANTHROPIC_API_KEY, say) passes;
        // systemd plumbing and mitzod's own config never do.
        assert_eq!(
            names,
            vec![
                "EDITOR",
                "HOME",
                "LC_ALL",
                "MY_API_TOKEN",
                "PATH",
                "RES_OPTIONS"
            ]
        );
    }
}
