//! Spawn-and-exit of `true` sandboxed, against the same under the
//! per-session reaper (`mitzod reaper`, one extra exec and the tree
//! clean-up). Needs the mitzod binary: `cargo build -p mitzod` first, then
//! `cargo run -p mitzod --example bench_contained_spawn [path/to/mitzod]`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mitzo_sandbox::{build_env, ContainmentConfig, Policy, SandboxedCommand};

const N: usize = 100;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mitzod = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/mitzod")
        });
    let policy = Policy {
        read_exec: mitzo_sandbox::system_read_exec_paths(),
        read_only: vec!["/proc".into()],
        ..Policy::default()
    };
    let env = build_env(std::env::vars_os(), &[], &[]);
    let c = ContainmentConfig {
        reaper: mitzod,
        ..Default::default()
    };
    let mut sandboxed = Vec::with_capacity(N);
    let mut contained = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        let st = SandboxedCommand::new("/bin/true", &policy, env.clone())
            .expect("sandbox")
            .into_std()
            .status()
            .expect("spawn");
        sandboxed.push(t.elapsed());
        assert!(st.success());

        let t = Instant::now();
        let (mut cmd, guard) = SandboxedCommand::new("/bin/true", &policy, env.clone())
            .expect("sandbox")
            .contained_with("bench", &c)
            .expect("contained")
            .into_std_with_guard();
        let st = cmd.status().expect("spawn");
        guard.end();
        contained.push(t.elapsed());
        assert!(st.success());
    }
    let (s, c) = (median(sandboxed), median(contained));
    println!(
        "sandboxed spawn+exit of /bin/true:       median {:>8.1} us (n={N})",
        s.as_secs_f64() * 1e6
    );
    println!(
        "contained (reaper) spawn+exit of /bin/true: median {:>8.1} us (n={N})",
        c.as_secs_f64() * 1e6
    );
    println!(
        "ratio contained/sandboxed: {:.2}",
        c.as_secs_f64() / s.as_secs_f64()
    );
}
