//! What a person reads to decide a tool call: a one-line title, a short
//! summary, and for file edits a unified diff against the file as it is
//! now. The file is read through the confined files code (beneath the
//! worktree, never following a link out of it), bounded in size; when a
//! diff cannot be made the summary says why instead of failing.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Largest file read to compute a diff.
pub const MAX_DIFF_INPUT: u64 = 1024 * 1024;
/// Largest diff sent.
pub const MAX_DIFF: usize = 64 * 1024;
const MAX_SUMMARY: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub title: String,
    pub summary: String,
    pub diff: Option<String>,
}

impl Approval {
    /// The audit log's entry: the title and the whole summary (bounded
    /// by [`describe`]) on one line, its line breaks written as ` · `.
    pub fn audit_line(&self) -> String {
        format!("{}: {}", self.title, self.summary.replace('\n', " · "))
    }
}

/// What a phone notification shows of an audit line: its first 500
/// characters (ntfy turns a message over 4 KiB into an attachment).
pub fn notice_line(audit_line: &str) -> String {
    cut(audit_line, 500)
}

/// `text` bounded as every summary is (for summaries not made by
/// [`describe`]).
pub fn bounded_summary(text: &str) -> String {
    cut(text, MAX_SUMMARY)
}

fn s<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

/// `path` relative to the worktree when it is inside (lexically), else
/// as given.
fn relative(path: &str, cwd: &Path) -> (String, Option<String>) {
    let p = Path::new(path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let mut norm = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                norm.pop();
            }
            std::path::Component::CurDir => {}
            other => norm.push(other.as_os_str()),
        }
    }
    let root = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    for base in [root.as_path(), cwd] {
        if let Ok(rel) = norm.strip_prefix(base) {
            let rel = rel.display().to_string();
            return (rel.clone(), Some(rel));
        }
    }
    (path.to_string(), None)
}

/// Describe a tool call for the owner (blocking: reads the target file).
pub fn describe(tool: &str, input: &Value, cwd: &Path) -> Approval {
    let json = || {
        cut(
            &serde_json::to_string_pretty(input).unwrap_or_default(),
            MAX_SUMMARY,
        )
    };
    let (title, summary, diff) = match tool {
        "Bash" => {
            let mut summary = format!("$ {}", s(input, "command").unwrap_or("(no command)"));
            summary.push_str(&format!("\nin {}", cwd.display()));
            if let Some(d) = s(input, "description").filter(|d| !d.trim().is_empty()) {
                summary.push_str(&format!("\n{d}"));
            }
            if input.get("run_in_background").and_then(Value::as_bool) == Some(true) {
                summary.push_str("\n(runs in the background)");
            }
            ("Run a command".to_string(), summary, None)
        }
        "Write" | "Edit" | "MultiEdit" => {
            let raw = s(input, "file_path").unwrap_or("");
            let (shown, rel) = relative(raw, cwd);
            let verb = if tool == "Write" { "Write" } else { "Edit" };
            let (summary, diff) = match rel {
                None => (format!("{shown}: outside the worktree; no diff"), None),
                Some(rel) => file_change(tool, input, cwd, &rel),
            };
            (format!("{verb} {shown}"), summary, diff)
        }
        "NotebookEdit" => {
            let (shown, _) = relative(s(input, "notebook_path").unwrap_or(""), cwd);
            let mode = s(input, "edit_mode").unwrap_or("replace");
            let cell = s(input, "cell_id").unwrap_or("(new cell)");
            (
                format!("Edit notebook {shown}"),
                format!(
                    "{mode} cell {cell}\n{}",
                    cut(s(input, "new_source").unwrap_or(""), 1000)
                ),
                None,
            )
        }
        "WebFetch" => (
            "Fetch a web page".to_string(),
            format!(
                "{}\n{}",
                s(input, "url").unwrap_or("(no url)"),
                cut(s(input, "prompt").unwrap_or(""), 500)
            )
            .trim_end()
            .to_string(),
            None,
        ),
        "WebSearch" => (
            "Search the web".to_string(),
            s(input, "query").unwrap_or("").to_string(),
            None,
        ),
        "Read" | "Glob" | "Grep" | "LS" => {
            let what = s(input, "file_path")
                .or_else(|| s(input, "pattern"))
                .or_else(|| s(input, "path"))
                .unwrap_or("");
            (format!("{tool} {}", relative(what, cwd).0), json(), None)
        }
        "Task" => (
            "Start a subagent".to_string(),
            s(input, "description")
                .or_else(|| s(input, "prompt"))
                .map(|d| cut(d, 1000))
                .unwrap_or_else(json),
            None,
        ),
        t if t.starts_with("mcp__") => {
            let mut parts = t.splitn(3, "__").skip(1);
            let server = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("");
            (
                format!("Use {name} of MCP server {server}"),
                format!("server {server}, tool {name}\n{}", json()),
                None,
            )
        }
        _ => (format!("Use {tool}"), json(), None),
    };
    Approval {
        title: cut(&title, 200),
        summary: cut(&summary, MAX_SUMMARY),
        diff,
    }
}

/// The current content of `rel` beneath the worktree: `Ok(None)` when it
/// does not exist yet, `Err(why)` when it cannot be diffed.
fn current(cwd: &Path, rel: &str) -> Result<Option<String>, String> {
    let root =
        crate::files::open_root_dir(cwd).map_err(|e| format!("cannot open the worktree: {e}"))?;
    use std::os::fd::AsRawFd;
    let (file, meta) = match crate::files::open_regular(root.as_raw_fd(), rel) {
        Ok(f) => f,
        Err(crate::error::Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(format!("cannot read it ({e})")),
    };
    if meta.len() > MAX_DIFF_INPUT {
        return Err(format!(
            "the file is too large to diff ({} bytes; the limit is {MAX_DIFF_INPUT})",
            meta.len()
        ));
    }
    let mut buf = Vec::new();
    file.take(MAX_DIFF_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read it ({e})"))?;
    if buf.len() as u64 > MAX_DIFF_INPUT {
        return Err("the file is too large to diff".into());
    }
    if buf.contains(&0) {
        return Err("binary file; no diff".into());
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| "binary file (not UTF-8); no diff".into())
}

/// The summary and diff of a Write, Edit or MultiEdit.
fn file_change(tool: &str, input: &Value, cwd: &Path, rel: &str) -> (String, Option<String>) {
    let before = match current(cwd, rel) {
        Ok(b) => b,
        Err(why) => return (format!("{rel}: {why}"), None),
    };
    let existed = before.is_some();
    let before = before.unwrap_or_default();
    let after = match tool {
        "Write" => Ok(s(input, "content").unwrap_or("").to_string()),
        "Edit" => apply_edit(&before, input),
        _ => input
            .get("edits")
            .and_then(Value::as_array)
            .ok_or_else(|| "no edits given".to_string())
            .and_then(|edits| {
                edits
                    .iter()
                    .try_fold(before.clone(), |text, e| apply_edit(&text, e))
            }),
    };
    let after = match after {
        Ok(a) => a,
        Err(why) => return (format!("{rel}: {why}; no diff"), None),
    };
    let summary = match (tool, existed) {
        ("Write", false) => format!("create {rel} ({} bytes)", after.len()),
        ("Write", true) => format!("overwrite {rel} ({} → {} bytes)", before.len(), after.len()),
        _ => format!("edit {rel}"),
    };
    let old_name = if existed {
        format!("a/{rel}")
    } else {
        "/dev/null".to_string()
    };
    let diff = similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &format!("b/{rel}"))
        .to_string();
    (summary, Some(cap_diff(diff)))
}

fn apply_edit(text: &str, edit: &Value) -> Result<String, String> {
    let old = s(edit, "old_string").unwrap_or("");
    let new = s(edit, "new_string").unwrap_or("");
    if old.is_empty() {
        // Claude Code's Edit with an empty old_string creates the file.
        return Ok(if text.is_empty() {
            new.to_string()
        } else {
            format!("{new}{text}")
        });
    }
    if !text.contains(old) {
        return Err("the text to replace is not in the file".into());
    }
    Ok(
        if edit.get("replace_all").and_then(Value::as_bool) == Some(true) {
            text.replace(old, new)
        } else {
            text.replacen(old, new, 1)
        },
    )
}

fn cap_diff(diff: String) -> String {
    if diff.len() <= MAX_DIFF {
        return diff;
    }
    let mut end = MAX_DIFF;
    while !diff.is_char_boundary(end) {
        end -= 1;
    }
    let cut = diff[..end].rfind('\n').map(|i| i + 1).unwrap_or(end);
    format!(
        "{}… diff cut at {} KiB ({} bytes not shown)\n",
        &diff[..cut],
        MAX_DIFF / 1024,
        diff.len() - cut
    )
}

#[cfg(test)]
#[path = "approval_tests.rs"]
mod tests;
