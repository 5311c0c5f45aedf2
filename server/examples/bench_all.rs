//! Every benchmark in turn, each printing its floor from the same run; then
//! one table of their summary rows.
//!
//!   cargo build --release -p mitzod --bins --examples
//!   nice -n 10 target/release/examples/bench_all
//!
//! Runs the benchmark programs next to this one (`BENCH_ONLY=daemon,files`
//! picks some); `MITZO_BIN` is passed on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

use std::process::{Command, Stdio};

const BENCHES: &[&str] = &[
    "daemon",
    "files",
    "sandbox_spawn",
    "sessions",
    "scale",
    "proxy",
];

fn main() {
    let here = std::env::current_exe().expect("current exe");
    let dir = here.parent().expect("examples dir").to_path_buf();
    let only: Option<Vec<String>> = std::env::var("BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut failed = Vec::new();
    for name in BENCHES {
        if only.as_ref().is_some_and(|o| !o.iter().any(|x| x == name)) {
            continue;
        }
        let program = dir.join(format!("bench_{name}"));
        println!("=== bench_{name} ===");
        let out = Command::new(&program)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                println!(
                    "cannot run {}: {e} (build the examples first)",
                    program.display()
                );
                failed.push(name.to_string());
                continue;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut in_ratios = false;
        for line in text.lines() {
            if let Some(fields) = line.strip_prefix("RESULT\t") {
                let mut cells: Vec<String> = fields.split('\t').map(str::to_string).collect();
                cells.resize(5, String::new());
                rows.push(cells);
                continue;
            }
            println!("{line}");
            // bench_sessions prints its ratios as a block: one row each.
            if line.starts_with("ratios mitzod / bare pipe") {
                in_ratios = true;
            } else if in_ratios {
                if line.trim().is_empty() {
                    in_ratios = false;
                } else if let Some((scenario, ratios)) = line.split_once("median") {
                    rows.push(vec![
                        format!("relay: {}", scenario.trim()),
                        String::new(),
                        "bare pipe loop".into(),
                        format!(
                            "median{}",
                            ratios
                                .split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" ")
                                .trim_start_matches(|c: char| c.is_alphabetic())
                        ),
                        "events/s ≥ 0.5× (1 session), ≥ 0.8× (50)".into(),
                    ]);
                }
            }
        }
        if !out.status.success() {
            println!("bench_{name} failed: {}", out.status);
            failed.push(name.to_string());
        }
        println!();
    }
    println!("=== summary ===");
    let headers = ["measure", "value", "floor (same run)", "ratio", "goal"];
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{}", " ".repeat(widths[i] - c.chars().count())))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(&headers.map(String::from));
    line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for r in &rows {
        line(r);
    }
    if !failed.is_empty() {
        println!("failed: {}", failed.join(", "));
        std::process::exit(1);
    }
}
