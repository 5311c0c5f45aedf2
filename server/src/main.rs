//! `mitzod`: the command line. Start-up order matters and is spelled out in
//! `serve`: inherited fds, config, secrets, state dir, privilege drop, and
//! only then the runtime.
#![allow(unsafe_code)] // the terminal echo switch for the passphrase prompt

mod check;

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use mitzod::config::{self, Config};
use mitzod::error::{Error, StartupError};

type Result<T, E = StartupError> = std::result::Result<T, E>;
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
        /// No config needed: 127.0.0.1:3100, state in ./.mitzo-dev, generated
        /// secrets; a `--config` file and MITZOD_* variables apply over these.
        #[arg(long)]
        dev: bool,
    },
    /// Check what `serve` and the first session would refuse: the file and
    /// variables, credentials, user, state dir, listen addresses, repos, agent.
    CheckConfig {
        #[arg(long, env = "MITZOD_CONFIG")]
        config: Option<PathBuf>,
        /// Check the file, the variables, the user and the credentials only,
        /// not this machine's paths, ports and agent (for a config meant
        /// for another machine).
        #[arg(long)]
        file_only: bool,
        /// Read the file and the variables the way `serve` does (every key
        /// and value), and nothing of this machine: no user, credential or
        /// path is looked at (for checking a config at build time, as the
        /// NixOS module does).
        #[arg(long, conflicts_with = "file_only")]
        parse_only: bool,
    },
    /// Print the argon2id PHC string of a passphrase: asked twice without
    /// echo on a terminal, else read from stdin. At least 12 characters.
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
        /// PORT=SOCKET: relay loopback PORT to the proxy's Unix SOCKET.
        #[arg(long)]
        forward: Option<String>,
        /// The agent may not create Unix sockets (a network of its own).
        #[arg(long)]
        no_unix_sockets: bool,
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
        Command::CheckConfig {
            config,
            file_only,
            parse_only,
        } => check_config(config, file_only, parse_only),
        Command::HashPassphrase => hash_passphrase(),
        Command::Token {
            action,
            config,
            dev,
        } => token(action, config, dev),
        Command::SandboxExec { policy, command } => {
            // Warnings (best-effort enforcement) go to stderr, where the caller sees them.
            mitzod::logging::init(Some("warn"));
            let code = mitzo_sandbox::cli::sandbox_exec(&policy, &command);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        Command::Reaper {
            parent,
            ruleset_fd,
            grace_ms,
            forward,
            no_unix_sockets,
            command,
        } => {
            let forward = forward.and_then(|f| {
                let (port, path) = f.split_once('=')?;
                Some((port.parse().ok()?, PathBuf::from(path)))
            });
            let code = mitzo_sandbox::reaper::run(mitzo_sandbox::reaper::ReaperArgs {
                parent,
                ruleset_fd,
                grace: std::time::Duration::from_millis(grace_ms),
                forward,
                no_unix_sockets,
                command,
            });
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Once, on stderr (which is the journal under systemd).
        Err(e) => {
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
    // Still one thread: the arena limit must come before any other.
    mitzod::memory::limit_arenas();
    let config_file = config_path
        .as_ref()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    let (mut config, target, new_passphrase, notes) = if dev_mode {
        let setup = dev::prepare(config_file.as_deref(), &config::process_env())?;
        (
            setup.config,
            setup.target,
            setup.new_passphrase,
            setup.notes,
        )
    } else {
        let config = load_config(config_path)?;
        let target = match &config.user {
            Some(user) if privileges::running_as_root() => {
                Some(privileges::resolve_target(user, config.group.as_deref())?)
            }
            _ => None,
        };
        (config, target, None, Vec::new())
    };
    mitzod::logging::init(config.log_level.as_deref());
    if privileges::running_as_root() && target.is_none() {
        return Err(StartupError::Privileges(
            "started as root but no `user` is configured: set `user` (and `group`) in the config, or start mitzod as an unprivileged user".into(),
        ));
    }
    let state_dir = config.resolved_state_dir()?;
    // As root: read the credentials and fix the state dir's ownership now;
    // neither is possible after the drop. Credentials first, so a bad one
    // stops start-up before anything is touched.
    let credentials = credentials::load(&config)?;
    config.agent.api_key = credentials.agent_api_key.clone();
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
    let cgroup_base =
        mitzo_sandbox::cgroup::prepare_delegated_base(owner.map(|(u, g)| (u.as_raw(), g.as_raw())));
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
    }
    if config.agent.api_key.is_some() {
        tracing::info!("agents get ANTHROPIC_API_KEY from agent.api_key_file / the anthropic-api-key credential");
    }
    let agent_line = dev::describe_agent(&config);
    tracing::info!("{agent_line}");
    let landlock = mitzo_sandbox::landlock_abi();
    if landlock.supported() {
        tracing::info!("{landlock}");
    } else {
        match config.sandbox.landlock {
            mitzo_sandbox::Enforcement::Required => tracing::error!(
                "{landlock}; agents will not start (sandbox.landlock = \"required\")"
            ),
            mitzo_sandbox::Enforcement::BestEffort => tracing::warn!(
                "{landlock}; agents will run UNSANDBOXED (sandbox.landlock = \"best-effort\")"
            ),
        }
    }
    let mut network_note = None;
    if dev_mode {
        // Before serving, where the first session's fate is on screen; after
        // the drop, so as the user agents run as.
        let probe = if config.agent.network.isolated() {
            mitzo_sandbox::netns::probe()
        } else {
            Ok(())
        };
        let me = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid {}", nix::unistd::Uid::effective()));
        let refused = probe.is_err();
        let line = dev::describe_network(&config, probe, &me);
        if refused {
            tracing::warn!("{line}");
        } else {
            tracing::info!("{line}");
        }
        network_note = Some(line);
    } else if config.agent.network.isolated() {
        // The probe forks and creates namespaces (milliseconds): it only
        // informs the log, each session probes again before its agent
        // starts, so it runs beside start-up rather than before serving.
        let network = config.agent.network;
        let spawned = std::thread::Builder::new()
            .name("netns-probe".into())
            .spawn(move || match mitzo_sandbox::netns::probe() {
                Ok(()) => tracing::info!(
                    "agent.network = {:?}: each agent gets user and network namespaces of its own{}",
                    network.as_str(),
                    if network == config::NetworkMode::Proxy {
                        ", reaching only agent.allowed_hosts through mitzod's proxy"
                    } else {
                        ", with no network"
                    }
                ),
                Err(why) => tracing::error!(
                    "agent.network = {:?} but {why}; agents will not start (set agent.network = \"ports\" to use Landlock's TCP port rules instead)",
                    network.as_str()
                ),
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the namespace probe");
        }
    } else {
        tracing::info!(
            "agent.network = \"ports\": agents use the host's network, limited to TCP ports {:?}",
            config.agent.allowed_connect_ports
        );
    }
    // Orphans of agents are reparented to us, so they can be found and killed.
    if let Err(e) = mitzo_sandbox::set_child_subreaper() {
        tracing::warn!(error = %e, "PR_SET_CHILD_SUBREAPER failed");
    }
    let mut limits = mitzo_sandbox::cgroup::Limits {
        pids_max: (config.session.pids_max > 0).then_some(config.session.pids_max),
        memory_max: config.session.memory_max,
    };
    match &cgroup_base {
        Some(base) => {
            limits = mitzo_sandbox::cgroup::effective_limits(base, limits);
            tracing::info!(base = %base.display(), ?limits, "each agent runs under a reaper in a session cgroup")
        }
        None => tracing::info!("no delegated cgroup: each agent runs under a reaper; session.pids_max and session.memory_max are not applied"),
    }
    mitzo_sandbox::configure_containment(mitzo_sandbox::ContainmentConfig {
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
        for note in notes
            .iter()
            .chain([&agent_line])
            .chain(network_note.as_ref())
        {
            eprintln!("mitzod --dev: {note}");
        }
        for addr in &config.listen {
            match addr {
                config::ListenAddr::Tcp(a) => {
                    eprintln!("mitzod --dev: listening on http://{a}/")
                }
                config::ListenAddr::Unix(_) => eprintln!("mitzod --dev: listening on {addr}"),
            }
        }
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

fn check_config(path: Option<PathBuf>, file_only: bool, parse_only: bool) -> Result<()> {
    let config = load_config(path)?;
    if parse_only {
        println!("configuration OK (parsed only: no user, credential or path was checked)");
        return Ok(());
    }
    let report = check::run(&config, file_only);
    for note in &report.notes {
        println!("note: {note}");
    }
    for problem in &report.problems {
        eprintln!("mitzod: {problem}");
    }
    if report.problems.is_empty() {
        println!("configuration OK");
        Ok(())
    } else {
        // Each problem was printed above; this only sets the exit status.
        std::process::exit(1)
    }
}

const MIN_PASSPHRASE_CHARS: usize = 12;

fn hash_passphrase() -> Result<()> {
    let stdin = std::io::stdin();
    let plain = if stdin.is_terminal() {
        let first = prompt_hidden("New owner passphrase: ")?;
        check_passphrase(&first)?;
        let second = prompt_hidden("Again: ")?;
        if !first.matches(second.expose()) {
            return Err(StartupError::Credential(
                "the two passphrases differ; nothing was printed".into(),
            ));
        }
        first
    } else {
        let mut input = String::new();
        stdin
            .take(4096)
            .read_to_string(&mut input)
            .map_err(|e| Error::io("reading the passphrase from stdin", e))?;
        let plain = mitzod::secret::Secret::new(input.trim_end_matches(['\n', '\r']).to_string());
        check_passphrase(&plain)?;
        plain
    };
    println!("{}", mitzod::auth::passphrase::hash(&plain)?);
    Ok(())
}

fn check_passphrase(plain: &mitzod::secret::Secret) -> Result<()> {
    let chars = plain.expose_str().chars().count();
    if chars < MIN_PASSPHRASE_CHARS {
        return Err(StartupError::Credential(format!(
            "the passphrase has {chars} characters; at least {MIN_PASSPHRASE_CHARS} are required"
        )));
    }
    Ok(())
}

/// Read one line from the terminal on stdin with echo off, the prompt on stderr.
fn prompt_hidden(prompt: &str) -> Result<mitzod::secret::Secret> {
    use std::os::fd::AsRawFd;
    let fd = std::io::stdin().as_raw_fd();
    let mut term = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr fills the struct on success; it is only read then.
    if unsafe { libc::tcgetattr(fd, term.as_mut_ptr()) } != 0 {
        return Err(StartupError::from(Error::io(
            "reading the terminal's settings",
            std::io::Error::last_os_error(),
        )));
    }
    // SAFETY: initialised by the successful tcgetattr above.
    let saved = unsafe { term.assume_init() };
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // Echo off before the prompt shows, so nothing typed after it is echoed
    // (TCSANOW: input already typed is kept, not flushed).
    // SAFETY: a valid termios for this fd.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        return Err(StartupError::from(Error::io(
            "turning off the terminal's echo",
            std::io::Error::last_os_error(),
        )));
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read.map_err(|e| Error::io("reading the passphrase", e))?;
    let secret = mitzod::secret::Secret::new(line.trim_end_matches(['\n', '\r']).to_string());
    zeroize_string(line);
    Ok(secret)
}

fn zeroize_string(s: String) {
    let mut bytes = s.into_bytes();
    bytes.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&bytes);
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
