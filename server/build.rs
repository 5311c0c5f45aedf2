// Records the commit for `GET /api/version` ("unknown" outside a git
// checkout, e.g. a Nix build, unless MITZO_BUILD_COMMIT is set by the
// packager), and builds the owner's web app into the binary.
#![allow(clippy::expect_used)] // a build script fails by panicking, with the message
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    commit();
    web_app();
}

fn commit() {
    println!("cargo:rerun-if-env-changed=MITZO_BUILD_COMMIT");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    let commit = std::env::var("MITZO_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into())
        });
    println!("cargo:rustc-env=MITZO_BUILD_COMMIT={commit}");
}

/// The web app's bundle: from `MITZO_WEB_DIST` when a packager built it
/// already (Nix), else built here with npm into OUT_DIR (never into the
/// source tree, so it cannot go stale: cargo re-runs this whenever a
/// source file of the app changes). Then embedded with `include_bytes!`.
fn web_app() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let web = manifest.join("web");
    println!("cargo:rerun-if-env-changed=MITZO_WEB_DIST");
    let dist = match std::env::var("MITZO_WEB_DIST")
        .ok()
        .filter(|d| !d.is_empty())
    {
        Some(dist) => {
            let dist = PathBuf::from(dist);
            if !dist.join("index.html").is_file() {
                fail(&format!(
                    "MITZO_WEB_DIST={} has no index.html: point it at a built web app (server/web: npm ci && npm run build)",
                    dist.display()
                ));
            }
            println!("cargo:rerun-if-changed={}", dist.display());
            dist
        }
        None => {
            for input in [
                "src",
                "public",
                "build.mjs",
                "package.json",
                "package-lock.json",
            ] {
                println!("cargo:rerun-if-changed={}", web.join(input).display());
            }
            let dist = out_dir.join("web-dist");
            build_with_npm(&web, &dist);
            dist
        }
    };
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut code = String::from("pub static ASSETS: &[Asset] = &[\n");
    for rel in &files {
        let name = rel.to_string_lossy();
        if name.ends_with(".gz") || name.ends_with(".br") {
            continue;
        }
        let abs = dist.join(rel);
        let variant = |ext: &str| {
            let p = PathBuf::from(format!("{}.{ext}", abs.display()));
            if p.is_file() {
                format!("Some(include_bytes!({:?}))", p.display().to_string())
            } else {
                "None".to_string()
            }
        };
        code.push_str(&format!(
            "    Asset {{ path: {:?}, body: include_bytes!({:?}), gzip: {}, br: {} }},\n",
            format!("/{name}"),
            abs.display().to_string(),
            variant("gz"),
            variant("br"),
        ));
    }
    code.push_str("];\n");
    if let Err(e) = std::fs::write(out_dir.join("web_assets.rs"), code) {
        fail(&format!("cannot write web_assets.rs: {e}"));
    }
}

/// The oldest Node.js major that runs server/web's build (esbuild 0.28 needs
/// 18; Debian 12 ships 18.19). Running tests/web needs 20 (playwright-core).
const NODE_MIN_MAJOR: u32 = 18;

fn build_with_npm(web: &Path, dist: &Path) {
    let hint = "Debian: apt-get install nodejs npm; \
                or set MITZO_WEB_DIST to an already built server/web/dist";
    let node = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(node) = node else {
        fail(&format!(
            "building the web app needs Node.js {NODE_MIN_MAJOR} or later on PATH, and `node --version` did not run ({hint})"
        ));
    };
    match node_major(&node) {
        Some(major) if major >= NODE_MIN_MAJOR => {}
        _ => fail(&format!(
            "building the web app needs Node.js {NODE_MIN_MAJOR} or later; `node --version` says {node:?} ({hint})"
        )),
    }
    let npm_ok = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !npm_ok {
        fail(&format!(
            "building the web app needs npm on PATH beside Node.js {node} ({hint})"
        ));
    }
    // npm ci when node_modules is missing or older than the lock file.
    let stamp = web.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (modified(&stamp), modified(&web.join("package-lock.json"))) {
        (Some(installed), Some(lock)) => installed >= lock,
        _ => false,
    };
    if !fresh {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(web),
            "npm ci (in server/web)",
        );
    }
    run(
        Command::new("node")
            .arg("build.mjs")
            .env("MITZO_WEB_OUT", dist)
            .current_dir(web),
        "node build.mjs (in server/web)",
    );
}

/// "v18.19.0" -> 18.
fn node_major(version: &str) -> Option<u32> {
    version.strip_prefix('v')?.split('.').next()?.parse().ok()
}

fn run(cmd: &mut Command, what: &str) {
    match cmd.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => fail(&format!(
            "{what} failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => fail(&format!("{what} could not start: {e}")),
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => fail(&format!("cannot list {}: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_path_buf());
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    panic!("web app build failed: {message}");
}
