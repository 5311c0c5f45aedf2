//! Spawn-and-exit of `/bin/true`: plain, under Landlock + seccomp, and
//! under the full agent sandbox (a `mitzod reaper` per session, which
//! enters the ruleset and then runs the agent), interleaved; then what the
//! parent spends building the sandbox for each spawn.
//!
//!   cargo build --release -p mitzod --bins --examples
//!   nice -n 10 target/release/examples/bench_sandbox_spawn
//!
//! Uses `MITZO_BIN` (the reaper) or the `mitzod` next to this example.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

mod bench_support;

use std::path::Path;
use std::time::{Duration, Instant};

use mitzo_sandbox::{
    agent_policy, build_env, AgentPolicyInputs, ContainmentConfig, Enforcement, SandboxedCommand,
};
use mitzod::config::AgentConfig;

const N: usize = 200;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let reaper = bench_support::mitzod_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for d in ["repo", "state/agent-home", "state/tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let agent = AgentConfig::default();
    let policy = agent_policy(&AgentPolicyInputs {
        repo: &root.join("repo"),
        worktrees: &[],
        repo_writable: false,
        agent_home: &root.join("state/agent-home"),
        session_tmp: &root.join("state/tmp"),
        state_dir: &root.join("state"),
        hidden: &[],
        agent_binary: Path::new("/bin/true"),
        own_port: Some(3100),
        agent: agent.grants(),
        landlock: Enforcement::Required,
    })
    .expect("policy");
    let env = build_env(std::env::vars_os(), &[], &[]);
    let containment = ContainmentConfig {
        reaper,
        ..ContainmentConfig::default()
    };

    let mut plain = Vec::with_capacity(N);
    let mut sandboxed = Vec::with_capacity(N);
    let mut full = Vec::with_capacity(N);
    let mut build = Vec::with_capacity(N);
    let mut seccomp_build = Vec::with_capacity(N);
    for i in 0..N {
        let t = Instant::now();
        let st = std::process::Command::new("/bin/true")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .status()
            .expect("spawn");
        plain.push(t.elapsed());
        assert!(st.success());

        // Includes building the ruleset and the seccomp program in the parent.
        let t = Instant::now();
        let st = SandboxedCommand::new("/bin/true", &policy, env.clone())
            .expect("sandbox")
            .into_std()
            .status()
            .expect("spawn");
        sandboxed.push(t.elapsed());
        assert!(st.success());

        // What mitzod runs for an agent: the reaper enters the ruleset.
        let t = Instant::now();
        let (mut cmd, guard) = SandboxedCommand::new("/bin/true", &policy, env.clone())
            .expect("sandbox")
            .contained_with(&format!("bench-{i}"), &containment)
            .expect("containment")
            .into_std_with_guard();
        let st = cmd.status().expect("spawn reaper");
        full.push(t.elapsed());
        guard.end();
        assert!(st.success(), "reaper: {st}");

        let t = Instant::now();
        let c = SandboxedCommand::new("/bin/true", &policy, env.clone()).expect("sandbox");
        build.push(t.elapsed());
        drop(c);
        let t = Instant::now();
        mitzo_sandbox::seccomp::probe().expect("seccomp");
        let p = mitzo_sandbox::seccomp::build_filter().expect("seccomp filter");
        seccomp_build.push(t.elapsed());
        drop(p);
    }
    let (p, s, f) = (median(plain), median(sandboxed), median(full));
    let (b, sc) = (median(build), median(seccomp_build));
    println!("{}", bench_support::machine());
    println!("{}", mitzo_sandbox::landlock_abi());
    println!("spawn+exit of /bin/true, n={N} each, interleaved; medians");
    println!("plain:                                   {:>8.1} µs", us(p));
    println!(
        "Landlock + seccomp (no reaper):          {:>8.1} µs  ratio {:.2}",
        us(s),
        s.as_secs_f64() / p.as_secs_f64()
    );
    println!(
        "full agent sandbox (reaper, ruleset fd): {:>8.1} µs  ratio {:.2}",
        us(f),
        f.as_secs_f64() / p.as_secs_f64()
    );
    println!(
        "of which, in the parent: SandboxedCommand::new {:.1} µs (seccomp probe + filter build {:.1} µs)",
        us(b),
        us(sc)
    );
    bench_support::result(
        "spawn+exit of /bin/true, full agent sandbox",
        &format!("{:.0} µs", us(f)),
        &format!("plain {:.0} µs", us(p)),
        &format!("{:.2}", f.as_secs_f64() / p.as_secs_f64()),
        "≤ 1.2",
    );
    bench_support::result(
        "same, Landlock + seccomp without the reaper",
        &format!("{:.0} µs", us(s)),
        &format!("plain {:.0} µs", us(p)),
        &format!("{:.2}", s.as_secs_f64() / p.as_secs_f64()),
        "",
    );
}
