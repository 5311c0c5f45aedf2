//! Spawn-and-exit of `true` under the full agent sandbox vs. a plain spawn.
//! `cargo run --release -p mitzod --example bench_sandbox_spawn`

use std::path::Path;
use std::time::{Duration, Instant};

use mitzod::config::AgentConfig;
use mitzod::sandbox::{agent_policy, build_env, AgentPolicyInputs, Enforcement, SandboxedCommand};

const N: usize = 200;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
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
        agent: &agent,
        landlock: Enforcement::Required,
    })
    .expect("policy");
    let env = build_env(std::env::vars_os(), &[], &[]);
    println!("{}", mitzod::sandbox::landlock_abi());

    let mut plain = Vec::with_capacity(N);
    let mut sandboxed = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        let st = std::process::Command::new("/bin/true")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .status()
            .expect("spawn");
        plain.push(t.elapsed());
        assert!(st.success());

        // Includes building the ruleset (opening every path) in the parent.
        let t = Instant::now();
        let st = SandboxedCommand::new("/bin/true", &policy, env.clone())
            .expect("sandbox")
            .into_std()
            .status()
            .expect("spawn");
        sandboxed.push(t.elapsed());
        assert!(st.success());
    }
    let (p, s) = (median(plain), median(sandboxed));
    println!(
        "plain spawn+exit of /bin/true:     median {:>8.1} us (n={N})",
        p.as_secs_f64() * 1e6
    );
    println!(
        "sandboxed spawn+exit of /bin/true: median {:>8.1} us (n={N})",
        s.as_secs_f64() * 1e6
    );
    println!(
        "ratio sandboxed/plain: {:.2}",
        s.as_secs_f64() / p.as_secs_f64()
    );
}
