//! One agent subprocess, spawned through the sandbox: a writer task for its
//! stdin, a bounded line reader for its stdout, the tail of its stderr, and
//! its exit. Everything it says arrives as an [`AgentEvent`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::protocol::{parse_line, Incoming};
use crate::error::{Error, Result};
use mitzo_sandbox::{Policy, SandboxedCommand};

/// Longest stdout line accepted; longer ones are an error, not an allocation.
pub const MAX_LINE: usize = 16 * 1024 * 1024;
const STDERR_TAIL: usize = 4096;
const TERM_GRACE: Duration = Duration::from_secs(3);

pub struct SpawnSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub policy: Policy,
    pub env: Vec<(OsString, OsString)>,
    pub network: AgentNetwork,
}

/// Which network the agent gets (`agent.network`).
#[derive(Debug, Clone, Default)]
pub enum AgentNetwork {
    /// The host's (Landlock's port rules apply).
    #[default]
    Host,
    /// A network namespace of its own with loopback only.
    Isolated,
    /// Loopback only, and a forwarder on
    /// [`crate::egress::FORWARD_PORT`] to this proxy socket.
    Proxy(PathBuf),
}

#[derive(Debug)]
pub enum AgentEvent {
    Message(Incoming),
    /// A line that could not be used; the stream goes on.
    Malformed(String),
    Exit(AgentExit),
}

#[derive(Debug, Clone)]
pub struct AgentExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stderr_tail: String,
}

impl AgentExit {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(0), _) => "agent exited".into(),
            (Some(c), _) => format!("agent exited with status {c}"),
            (_, Some(s)) => format!("agent killed by signal {s}"),
            _ => "agent exited".into(),
        }
    }
}

/// A running agent. Dropping it does not kill it; [`AgentProcess::terminate`] does.
pub struct AgentProcess {
    pub pid: u32,
    stdin: mpsc::UnboundedSender<Vec<u8>>,
}

impl AgentProcess {
    pub fn spawn(spec: SpawnSpec, events: mpsc::Sender<AgentEvent>) -> Result<AgentProcess> {
        // The agent runs under its session's reaper (and cgroup): nothing
        // it starts outlives the session.
        let session = spec
            .env
            .iter()
            .find(|(k, _)| k == "MITZO_SESSION_ID")
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = SandboxedCommand::new(&spec.program, &spec.policy, spec.env)?
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .contained(&session)?;
        match &spec.network {
            AgentNetwork::Host => {}
            AgentNetwork::Isolated => cmd = cmd.isolate_network()?,
            AgentNetwork::Proxy(socket) => {
                cmd = cmd
                    .isolate_network()?
                    .forward_to_proxy(crate::egress::FORWARD_PORT, socket)?
            }
        }
        // The protocol runs over socket pairs, not pipes: a process in the
        // agent's sandbox can open a pipe through /proc/<agent>/fd/N and
        // write protocol lines into it, but a socket cannot be opened that
        // way (ENXIO).
        let io = |e: std::io::Error| Error::io("creating the agent's stdio sockets", e);
        let (stdin_ours, stdin_theirs) = std::os::unix::net::UnixStream::pair().map_err(io)?;
        let (stdout_ours, stdout_theirs) = std::os::unix::net::UnixStream::pair().map_err(io)?;
        let (mut cmd, containment) = cmd.into_tokio_with_guard();
        cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(stdin_theirs)))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(stdout_theirs)))
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            Error::internal_from(
                format!("sandbox: cannot start agent {}", spec.program.display()),
                e,
            )
        })?;
        // The child's ends live on in the child only.
        drop(cmd);
        let pid = child
            .id()
            .ok_or_else(|| Error::internal("agent exited at once"))?;
        let Some(stderr) = child.stderr.take() else {
            return Err(Error::internal("agent stderr not captured"));
        };
        let adopt = |s: std::os::unix::net::UnixStream| {
            s.set_nonblocking(true)
                .and_then(|()| tokio::net::UnixStream::from_std(s))
                .map_err(io)
        };
        let mut stdin = adopt(stdin_ours)?;
        let stdout = adopt(stdout_ours)?;

        let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(mut line) = stdin_rx.recv().await {
                line.push(b'\n');
                if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
            // Sender gone: end of input tells the agent to finish.
            let _ = stdin.shutdown().await;
        });

        let tail = Arc::new(Mutex::new(Vec::<u8>::new()));
        let stderr_task = tokio::spawn(keep_tail(stderr, tail.clone()));
        let reader_events = events.clone();
        let reader = tokio::spawn(async move { read_lines(stdout, reader_events).await });
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tokio::task::spawn_blocking(move || containment.end()).await;
            // A descendant may still hold the pipes open: the exit is
            // reported anyway, after a short grace for the last lines.
            let grace = Duration::from_secs(2);
            let reader_abort = reader.abort_handle();
            let stderr_abort = stderr_task.abort_handle();
            if tokio::time::timeout(grace, reader).await.is_err() {
                reader_abort.abort();
            }
            if tokio::time::timeout(grace, stderr_task).await.is_err() {
                stderr_abort.abort();
            }
            let tail = tail
                .lock()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let (code, signal) = match status {
                Ok(s) => (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)),
                Err(_) => (None, None),
            };
            let _ = events
                .send(AgentEvent::Exit(AgentExit {
                    code,
                    signal,
                    stderr_tail: tail,
                }))
                .await;
        });
        Ok(AgentProcess {
            pid,
            stdin: stdin_tx,
        })
    }

    /// Queue one JSON line for the agent's stdin; false once it is gone.
    pub fn send(&self, message: &Value) -> bool {
        self.stdin.send(message.to_string().into_bytes()).is_ok()
    }

    /// End the agent and everything it started (its whole tree, including
    /// processes that left its process group), then let the waiter reap it.
    pub async fn terminate(&self) {
        let pid = self.pid;
        let _ = tokio::task::spawn_blocking(move || {
            mitzo_sandbox::terminate_session(pid, TERM_GRACE, true)
        })
        .await;
    }
}

async fn keep_tail<R: AsyncRead + Unpin>(mut r: R, tail: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut t) = tail.lock() {
            t.extend_from_slice(&buf[..n]);
            let excess = t.len().saturating_sub(STDERR_TAIL);
            t.drain(..excess);
        }
    }
}

/// Read newline-terminated lines of at most `MAX_LINE` bytes; a longer line
/// is reported and skipped without ever being held in memory.
/// The channel is bounded: a flooding agent blocks on its own stdout pipe
/// instead of growing mitzod's memory.
async fn read_lines<R: AsyncRead + Unpin>(r: R, events: mpsc::Sender<AgentEvent>) {
    let mut reader = BufReader::with_capacity(64 * 1024, r);
    let mut line: Vec<u8> = Vec::new();
    let mut overflow = false;
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let (chunk, complete) = match memchr(buf) {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !overflow {
            if line.len() + chunk.len() > MAX_LINE {
                overflow = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = complete.unwrap_or(buf.len());
        reader.consume(consumed);
        if complete.is_some() {
            if overflow {
                let _ = events
                    .send(AgentEvent::Malformed(format!(
                        "agent wrote a line over {} MiB; skipped",
                        MAX_LINE / (1024 * 1024)
                    )))
                    .await;
            } else if !line.iter().all(u8::is_ascii_whitespace) {
                let event = match parse_line(&line) {
                    Ok(msg) => AgentEvent::Message(msg),
                    Err(why) => AgentEvent::Malformed(format!("{why}: {}", preview(&line))),
                };
                let _ = events.send(event).await;
            }
            line.clear();
            overflow = false;
        }
    }
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n')
}

fn preview(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(&line[..line.len().min(120)]);
    s.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_skipped_not_held() {
        let mut data = Vec::new();
        data.extend_from_slice(b"{\"type\":\"result\"}\n");
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        data.extend_from_slice(b"\nnot json\n{\"type\":\"assistant\"}\n");
        let (tx, mut rx) = mpsc::channel(16);
        read_lines(&data[..], tx).await;
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e);
        }
        assert!(matches!(got[0], AgentEvent::Message(Incoming::Result(_))));
        assert!(matches!(&got[1], AgentEvent::Malformed(m) if m.contains("over 16 MiB")));
        assert!(matches!(&got[2], AgentEvent::Malformed(m) if m.contains("not JSON")));
        assert!(matches!(
            got[3],
            AgentEvent::Message(Incoming::Assistant(_))
        ));
        assert_eq!(got.len(), 4);
    }
}
