//! `mitzod`: the command line. Start-up order matters and is spelled out in
//! `serve`: inherited fds, config, secrets, state dir, privilege drop, and
//! only then the runtime.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use mitzod::config::{self, Config};
use mitzod::error::{Error, Result};
use mitzod::{credentials, daemon, dev, privileges, state, systemd};

#[derive(Parser)]
#[command(
    name = "mitzod",
    version,
    about = "Hardened server for supervising coding-agent sessions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (socket-activated or binding `listen`).
    Serve {
        /// Config file (also MITZOD_CONFIG).
        #[arg(long, env = "MITZOD_CONFIG")]
        config: Option<PathBuf>,
        /// No config: 127.0.0.1:3100, state in ./.mitzo-dev, generated secrets.
        #[arg(long, conflicts_with = "config")]
        dev: bool,
    },
    /// Validate the configuration and its credentials, then exit.
    CheckConfig {
        #[arg(long, env = "MITZOD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Read a passphrase from stdin and print its argon2id PHC string.
    HashPassphrase,
    /// The internal token file.
    Token {
        #[command(subcommand)]
        action: TokenAction,
        #[arg(long, env = "MITZOD_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// Use the `serve --dev` state dir (./.mitzo-dev).
        #[arg(long, global = true)]
        dev: bool,
    },
    /// Run a command under a sandbox policy file (for checks and tests).
    SandboxExec {
        #[arg(long)]
        policy: PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
    /// The per-session process an agent runs under (started by mitzod).
    #[command(hide = true)]
    Reaper {
        #[arg(long)]
        parent: i32,
        #[arg(long)]
        ruleset_fd: Option<i32>,
        #[arg(long, default_value_t = 3000)]
        grace_ms: u64,
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Print where the internal token lives.
    Path,
    /// Replace the internal token atomically; the server picks it up at once.
    Rotate,
}

fn main() -> ExitCode {
    // Before anything else, and before any thread exists: take the sockets
    // systemd passed and unset LISTEN_* so no child inherits them.
    let inherited = systemd::take_listen_fds();
    // Every file mitzod creates (database, WAL, tokens) is private to it.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, dev } => inherited.and_then(|fds| serve(config, dev, fds)),
        Command::CheckConfig { config } => check_config(config),
        Command::HashPassphrase => hash_passphrase(),
        Command::Token {
            action,
            config,
            dev,
        } => token(action, config, dev),
        Command::SandboxExec { policy, command } => {
            // Warnings (best-effort enforcement) go to stderr, where the caller sees them.
            mitzod::logging::init(Some("warn"));
            let code = mitzod::sandbox::cli::sandbox_exec(&policy, &command);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        Command::Reaper {
            parent,
            ruleset_fd,
            grace_ms,
            command,
        } => {
            let code = mitzod::sandbox::reaper::run(mitzod::sandbox::reaper::ReaperArgs {
                parent,
                ruleset_fd,
                grace: std::time::Duration::from_millis(grace_ms),
                command,
            });
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("mitzod: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<PathBuf>) -> Result<Config> {
    Config::load(path.as_deref(), &config::process_env())
}

fn serve(
    config_path: Option<PathBuf>,
    dev_mode: bool,
    inherited: Vec<systemd::Listener>,
) -> Result<()> {
    let config_file = config_path
        .as_ref()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    let (config, target, new_passphrase) = if dev_mode {
        let setup = dev::prepare()?;
        (setup.config, setup.target, setup.new_passphrase)
    } else {
        let config = load_config(config_path)?;
        let target = match &config.user {
            Some(user) if privileges::running_as_root() => {
                Some(privileges::resolve_target(user, config.group.as_deref())?)
            }
            _ => None,
        };
        (config, target, None)
    };
    mitzod::logging::init(config.log_level.as_deref());
    if privileges::running_as_root() && target.is_none() {
        return Err(Error::Privileges(
            "started as root but no `user` is configured: set `user` (and `group`) in the config, or start mitzod as an unprivileged user".into(),
        ));
    }
    let state_dir = config.resolved_state_dir()?;
    // As root: read the credentials and fix the state dir's ownership now;
    // neither is possible after the drop. Credentials first, so a bad one
    // stops start-up before anything is touched.
    let credentials = credentials::load(&config)?;
    let owner = target.as_ref().map(|t| (t.uid, t.gid));
    let prepared = state::prepare_state_dir(&state_dir, owner)?;
    let listeners = if inherited.is_empty() {
        systemd::bind(&config.listen)?
    } else {
        tracing::info!(count = inherited.len(), "using sockets passed by systemd");
        inherited
    };
    // Root made the dir: open its files now, handing new ones to the
    // service user; they stay usable even where that user cannot walk the
    // path. Otherwise the owner opens them after the drop.
    let (opened, state_dir_fd) = match prepared {
        state::Prepared::ByRoot => {
            let fd = std::fs::File::open(&state_dir)
                .map_err(|e| Error::io(format!("opening {}", state_dir.display()), e))?;
            (Some(daemon::open_state_files(&state_dir, owner)?), Some(fd))
        }
        state::Prepared::ForOwner => (None, None),
    };
    // Before the drop: a delegated cgroup may belong to root until handed over.
    let cgroup_base = mitzod::sandbox::cgroup::prepare_delegated_base(
        owner.map(|(u, g)| (u.as_raw(), g.as_raw())),
    );
    privileges::drop_privileges(target.as_ref())?;
    let (state_dir, (token, db)) = match (opened, state_dir_fd) {
        (Some(files), Some(fd)) => (dev::reach_state_dir(&state_dir, &fd)?, files),
        _ => {
            state::tighten_state_dir(&state_dir)?;
            let files = daemon::open_state_files(&state_dir, None)?;
            (state_dir, files)
        }
    };
    if let Some(t) = &target {
        tracing::info!(user = %t.user, uid = %t.uid, gid = %t.gid, "dropped privileges");
        if dev_mode {
            eprintln!(
                "mitzod --dev: started as root; now running as user {} (uid {})",
                t.user, t.uid
            );
        }
    }
    let landlock = mitzod::sandbox::landlock_abi();
    if landlock.supported() {
        tracing::info!("{landlock}");
    } else {
        match config.sandbox.landlock {
            config::LandlockMode::Required => tracing::error!(
                "{landlock}; agents will not start (sandbox.landlock = \"required\")"
            ),
            config::LandlockMode::BestEffort => tracing::warn!(
                "{landlock}; agents will run UNSANDBOXED (sandbox.landlock = \"best-effort\")"
            ),
        }
    }
    // Orphans of agents are reparented to us, so they can be found and killed.
    if let Err(e) = mitzod::sandbox::set_child_subreaper() {
        tracing::warn!(error = %e, "PR_SET_CHILD_SUBREAPER failed");
    }
    let limits = mitzod::sandbox::cgroup::Limits {
        pids_max: (config.session.pids_max > 0).then_some(config.session.pids_max),
        memory_max: config.session.memory_max,
    };
    match &cgroup_base {
        Some(base) => tracing::info!(base = %base.display(), ?limits, "each agent runs under a reaper in a session cgroup"),
        None => tracing::info!("no delegated cgroup: each agent runs under a reaper; session.pids_max and session.memory_max are not applied"),
    }
    mitzod::sandbox::configure_containment(mitzod::sandbox::ContainmentConfig {
        cgroup_base,
        limits,
        ..Default::default()
    });
    if let Some(phrase) = new_passphrase {
        eprintln!(
            "mitzod --dev: owner passphrase (shown once, kept in {}/passphrase): {phrase}",
            dev::DEV_DIR
        );
    }
    if dev_mode {
        eprintln!("mitzod --dev: listening on http://127.0.0.1:3100");
    }
    daemon::run(daemon::Prepared {
        config,
        state_dir,
        credentials,
        listeners,
        token,
        db,
        config_file,
    })
}

fn check_config(path: Option<PathBuf>) -> Result<()> {
    let config = load_config(path)?;
    if let (Some(user), true) = (&config.user, privileges::running_as_root()) {
        privileges::resolve_target(user, config.group.as_deref())?;
    }
    config.resolved_state_dir()?;
    credentials::load(&config)?;
    println!("configuration OK");
    Ok(())
}

fn hash_passphrase() -> Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut input)
        .map_err(|e| Error::io("reading the passphrase from stdin", e))?;
    let plain = mitzod::secret::Secret::new(input.trim_end_matches(['\n', '\r']).to_string());
    println!("{}", mitzod::auth::passphrase::hash(&plain)?);
    Ok(())
}

fn token(action: TokenAction, config_path: Option<PathBuf>, dev_mode: bool) -> Result<()> {
    let state_dir = if dev_mode {
        std::env::current_dir()
            .map_err(|e| Error::io("current directory", e))?
            .join(dev::DEV_DIR)
    } else {
        load_config(config_path)?.resolved_state_dir()?
    };
    let path = state_dir.join(state::INTERNAL_TOKEN_FILE);
    match action {
        TokenAction::Path => println!("{}", path.display()),
        TokenAction::Rotate => {
            state::rotate_internal_token(&state_dir)?;
            println!("rotated {}", path.display());
        }
    }
    Ok(())
}
