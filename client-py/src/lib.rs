//! `mitzo_client._native`: the Rust core of the `mitzo_client` Python package.
//!
//! HTTP, JSON, token discovery and retries live here; the exception classes
//! and the `mitzo` command live in the Python half of the package.

mod convert;
mod discovery;
mod http;

use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyString};
use serde_json::{Map, Value};

use discovery::{DiscoveryError, Source};
use http::{Call, CallError, Method, Transport};

const DEFAULT_URL: &str = "http://127.0.0.1:3100";
const ERRORS_MODULE: &str = "mitzo_client.errors";

/// Build an instance of one of the Python exception classes.
fn make_error(
    py: Python<'_>,
    class: &str,
    message: String,
    status: Option<u16>,
    error: Option<String>,
    retry_after: Option<f64>,
) -> PyErr {
    let built = (|| -> PyResult<PyErr> {
        let cls = py.import(ERRORS_MODULE)?.getattr(class)?;
        let kw = PyDict::new(py);
        kw.set_item("status", status)?;
        kw.set_item("error", error)?;
        kw.set_item("retry_after", retry_after)?;
        let inst = cls.call((message,), Some(&kw))?;
        Ok(PyErr::from_value(inst))
    })();
    built.unwrap_or_else(|e| e)
}

fn call_error_to_py(py: Python<'_>, e: CallError) -> PyErr {
    match e {
        CallError::Status {
            status,
            error,
            retry_after,
            what,
        } => {
            let class = match status {
                400 | 422 => "BadRequestError",
                401 => "AuthenticationError",
                403 => "PermissionDeniedError",
                404 => "NotFoundError",
                409 => "ConflictError",
                410 => "GoneError",
                413 => "RequestTooLargeError",
                429 => "RateLimitError",
                503 => "ServiceUnavailableError",
                500..=599 => "ServerError",
                _ => "APIStatusError",
            };
            let mut message = format!("{what}: {status} {error}");
            if let Some(s) = retry_after {
                message.push_str(&format!(" (retry after {s} s)"));
            }
            make_error(py, class, message, Some(status), Some(error), retry_after)
        }
        CallError::Connection { message } => {
            make_error(py, "APIConnectionError", message, None, None, None)
        }
        CallError::Closed => make_error(
            py,
            "MitzoError",
            "this Client is closed".into(),
            None,
            None,
            None,
        ),
        CallError::BadResponse { message } => make_error(
            py,
            "ServerError",
            message.clone(),
            None,
            Some(message),
            None,
        ),
    }
}

fn emit_warnings(py: Python<'_>, warnings: Vec<String>) -> PyResult<()> {
    if warnings.is_empty() {
        return Ok(());
    }
    let category = py
        .import(ERRORS_MODULE)?
        .getattr("InsecureTokenFileWarning")?;
    for w in warnings {
        let msg = CString::new(w.replace('\0', "")).unwrap_or_default();
        PyErr::warn(py, &category, &msg, 1)?;
    }
    Ok(())
}

/// An id for a URL path segment: a str, or an int (not a bool).
fn id_arg(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err("an id must be a str or an int"));
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        let s = s.to_cow()?.into_owned();
        if s.is_empty() {
            return Err(PyValueError::new_err("an id must not be empty"));
        }
        return Ok(s);
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(obj.str()?.to_cow()?.into_owned());
    }
    Err(PyTypeError::new_err("an id must be a str or an int"))
}

/// A client for mitzod's HTTP API.
///
/// One `Client` may be shared between threads. Every call releases the GIL
/// while it talks to the server.
#[pyclass(module = "mitzo_client._native", frozen)]
struct Client {
    transport: Transport,
    session_id: Option<String>,
}

impl Client {
    fn run(&self, py: Python<'_>, call: Call<'_>) -> PyResult<PyObject> {
        let mut warnings = Vec::new();
        let result = py.allow_threads(|| self.transport.call(&call, &mut warnings));
        emit_warnings(py, warnings)?;
        match result {
            Ok(v) => Ok(convert::json_to_py(py, &v)?.unbind()),
            Err(e) => Err(call_error_to_py(py, e)),
        }
    }

    fn get(&self, py: Python<'_>, path: String) -> PyResult<PyObject> {
        self.run(py, call(Method::Get, &path, None))
    }

    fn send(
        &self,
        py: Python<'_>,
        method: Method,
        path: String,
        body: Value,
    ) -> PyResult<PyObject> {
        self.run(py, call(method, &path, Some(body)))
    }

    fn tool_call(
        &self,
        py: Python<'_>,
        method: Method,
        tool: &str,
        body: Option<Value>,
        session_id: Option<String>,
    ) -> PyResult<PyObject> {
        let path = format!("/api/internal/task-tools/{tool}");
        let mut c = call(method, &path, body);
        c.client_id = session_id.or_else(|| self.session_id.clone());
        self.run(py, c)
    }
}

fn call(method: Method, path: &str, body: Option<Value>) -> Call<'_> {
    Call {
        method,
        path,
        query: Vec::new(),
        body,
        auth: true,
        client_id: None,
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (url=None, token=None, timeout=10.0, session_id=None))]
    fn new(
        py: Python<'_>,
        url: Option<String>,
        token: Option<String>,
        timeout: f64,
        session_id: Option<String>,
    ) -> PyResult<Self> {
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(PyValueError::new_err(
                "timeout must be a positive number of seconds",
            ));
        }
        let url = url
            .or_else(|| env_var("MITZO_URL"))
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(PyValueError::new_err(format!(
                "url must start with http:// or https://, got {url:?}"
            )));
        }
        let found = match discovery::discover(
            token,
            &env_var,
            std::env::current_dir().ok().as_deref(),
            Path::new(discovery::SYSTEM_TOKEN_FILE),
        ) {
            Ok(f) => f,
            Err(e) => {
                let class = match e {
                    DiscoveryError::NotFound(_) => "TokenNotFoundError",
                    DiscoveryError::Malformed { .. } => "InvalidTokenFileError",
                };
                return Err(make_error(py, class, e.to_string(), None, None, None));
            }
        };
        emit_warnings(py, found.warnings.clone())?;
        let session_id = session_id
            .or_else(|| env_var("MITZO_SESSION_ID"))
            .filter(|s| !s.trim().is_empty());
        Ok(Client {
            transport: Transport::new(&url, Duration::from_secs_f64(timeout), found),
            session_id,
        })
    }

    /// The server's base URL.
    #[getter]
    fn url(&self) -> String {
        self.transport.base().to_string()
    }

    /// Seconds a call may take, retries included.
    #[getter]
    fn timeout(&self) -> f64 {
        self.transport.timeout().as_secs_f64()
    }

    /// Where the token came from: "argument", "env:NAME" or "file:PATH".
    #[getter]
    fn token_source(&self) -> String {
        self.transport.source().to_string()
    }

    /// The token file in use, or None when the token did not come from a file.
    #[getter]
    fn token_file(&self) -> Option<String> {
        match self.transport.source() {
            Source::File(p) => Some(p.display().to_string()),
            _ => None,
        }
    }

    /// The session id sent as `X-Client-ID` by the task tools (argument or
    /// `MITZO_SESSION_ID`).
    #[getter]
    fn session_id(&self) -> Option<String> {
        self.session_id.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "Client(url={:?}, token_source={:?})",
            self.transport.base(),
            self.transport.source().to_string()
        )
    }

    /// `GET /api/version` (no credential sent).
    fn version(&self, py: Python<'_>) -> PyResult<PyObject> {
        let mut c = call(Method::Get, "/api/version", None);
        c.auth = false;
        self.run(py, c)
    }

    /// `GET /healthz` (no credential sent). Returns the body, or
    /// `{"ok": True}` when the server answered 200 with an empty body.
    fn health(&self, py: Python<'_>) -> PyResult<PyObject> {
        let mut c = call(Method::Get, "/healthz", None);
        c.auth = false;
        let mut warnings = Vec::new();
        let result = py.allow_threads(|| self.transport.call(&c, &mut warnings));
        emit_warnings(py, warnings)?;
        let v = match result {
            Ok(Value::Null) => serde_json::json!({"ok": true}),
            Ok(v) => v,
            // A plain-text 200 body is still healthy.
            Err(CallError::BadResponse { .. }) => serde_json::json!({"ok": true}),
            Err(e) => return Err(call_error_to_py(py, e)),
        };
        Ok(convert::json_to_py(py, &v)?.unbind())
    }

    /// Any API call: `method` is GET/POST/PUT/PATCH/DELETE, `path` starts
    /// with `/`. Idempotent methods are retried across a restart.
    #[pyo3(signature = (method, path, body=None, *, auth=true, client_id=None))]
    fn request(
        &self,
        py: Python<'_>,
        method: &str,
        path: &str,
        body: Option<&Bound<'_, PyAny>>,
        auth: bool,
        client_id: Option<String>,
    ) -> PyResult<PyObject> {
        let m = Method::parse(method)
            .ok_or_else(|| PyValueError::new_err(format!("unsupported method {method:?}")))?;
        if !path.starts_with('/') {
            return Err(PyValueError::new_err("path must start with '/'"));
        }
        let body = match body {
            Some(b) if !b.is_none() => Some(convert::py_to_json(b)?),
            _ => None,
        };
        let mut c = call(m, path, body);
        c.auth = auth;
        c.client_id = client_id;
        self.run(py, c)
    }

    /// Drop the client's kept-alive connections. Calls after this raise
    /// `MitzoError`. Also what `with Client() as c:` does on exit.
    fn close(&self) {
        self.transport.close();
    }

    /// True once `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.transport.is_closed()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type=None, exc=None, tb=None))]
    fn __exit__(
        &self,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        let _ = (exc_type, exc, tb);
        self.transport.close();
        false
    }

    // ---- sessions ----

    /// `POST /api/sessions`: a new session. With `initial_prompt` the agent
    /// starts at once (headless). `isolation`: its own worktree (default:
    /// the server's `session.isolation`).
    #[pyo3(signature = (source, initial_prompt=None, summary=None, mode=None, model=None, *, isolation=None, repo=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_session(
        &self,
        py: Python<'_>,
        source: &str,
        initial_prompt: Option<String>,
        summary: Option<String>,
        mode: Option<String>,
        model: Option<String>,
        isolation: Option<bool>,
        repo: Option<String>,
    ) -> PyResult<PyObject> {
        let mut body = Map::new();
        body.insert("source".into(), Value::String(source.to_string()));
        put(&mut body, "initialPrompt", initial_prompt);
        put(&mut body, "summary", summary);
        put(&mut body, "mode", mode);
        put(&mut body, "model", model);
        if let Some(i) = isolation {
            body.insert("isolation".into(), Value::Bool(i));
        }
        put(&mut body, "repo", repo);
        self.send(
            py,
            Method::Post,
            "/api/sessions".into(),
            Value::Object(body),
        )
    }

    /// `GET /api/sessions`: newest first, `limit` 1..=100.
    #[pyo3(signature = (offset=0, limit=50))]
    fn list_sessions(&self, py: Python<'_>, offset: u32, limit: u32) -> PyResult<PyObject> {
        let mut c = call(Method::Get, "/api/sessions", None);
        c.query = vec![("offset", offset.to_string()), ("limit", limit.to_string())];
        self.run(py, c)
    }

    /// `GET /api/sessions/active`: the sessions running now.
    fn active_sessions(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.get(py, "/api/sessions/active".into())
    }

    /// `GET /api/sessions/{id}/meta`.
    fn session_meta(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let path = format!("/api/sessions/{}/meta", http::segment(&id_arg(id)?));
        self.get(py, path)
    }

    /// `GET /api/sessions/{id}/events`: events with `seq > after`, at most
    /// `limit` (1..=5000, server default 1000). Page on with the last `seq`.
    #[pyo3(signature = (id, after=0, limit=None, *, before=None))]
    fn session_events(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        after: u64,
        limit: Option<u32>,
        before: Option<u64>,
    ) -> PyResult<PyObject> {
        let path = format!("/api/sessions/{}/events", http::segment(&id_arg(id)?));
        let mut c = call(Method::Get, &path, None);
        c.query = match before {
            // Backwards from the end: the newest `limit` events before `before`.
            Some(b) => vec![("before", b.to_string())],
            None => vec![("after", after.to_string())],
        };
        if let Some(l) = limit {
            c.query.push(("limit", l.to_string()));
        }
        self.run(py, c)
    }

    /// `DELETE /api/sessions/{id}`: stop its agent and forget it.
    fn delete_session(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let path = format!("/api/sessions/{}", http::segment(&id_arg(id)?));
        self.run(py, call(Method::Delete, &path, None))
    }

    // ---- repos ----

    /// `GET /api/repos`: every repo a session may run in (`repo_path` and `[repos]`).
    fn repos(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.get(py, "/api/repos".into())
    }

    /// `POST /api/repos/open`: a worktree of a configured repo for
    /// `session_id` (created, or the existing one). Name the repo by
    /// `repo_name` (a `[repos]` key) or `repo_path` (any configured repo's
    /// path). Without `session_id` a new id is made.
    #[pyo3(signature = (repo_name=None, session_id=None, *, repo_path=None))]
    fn open_repo(
        &self,
        py: Python<'_>,
        repo_name: Option<String>,
        session_id: Option<String>,
        repo_path: Option<String>,
    ) -> PyResult<PyObject> {
        let mut body = Map::new();
        put(&mut body, "repoName", repo_name);
        put(&mut body, "repoPath", repo_path);
        let id = match session_id {
            Some(id) => id,
            None => new_session_id(),
        };
        body.insert("sessionId".into(), Value::String(id));
        self.send(
            py,
            Method::Post,
            "/api/repos/open".into(),
            Value::Object(body),
        )
    }

    /// `POST /api/repos/close`: remove a worktree `open_repo` made (its
    /// changes are discarded, its branch stays).
    fn close_worktree(&self, py: Python<'_>, path: &str) -> PyResult<PyObject> {
        let body = serde_json::json!({ "path": path });
        self.send(py, Method::Post, "/api/repos/close".into(), body)
    }

    // ---- review ----

    /// `GET /api/sessions/{id}/review` (owner only: the client's token must
    /// be the owner's, from a login): the session's branch, fetched from
    /// its checkout, against the main checkout's current branch: its
    /// commits, the files it changes and the diff (cut at 1 MiB, `truncated`).
    fn review(&self, py: Python<'_>, session_id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let path = format!(
            "/api/sessions/{}/review",
            http::segment(&id_arg(session_id)?)
        );
        self.get(py, path)
    }

    /// `POST /api/sessions/{id}/merge` (owner only): merge the session's
    /// branch into the main checkout's current branch with a merge commit.
    /// `ConflictError` (409) when the checkout has uncommitted changes, the
    /// merge conflicts, or there is nothing to merge; the checkout is then
    /// left as it was.
    fn merge(&self, py: Python<'_>, session_id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let path = format!(
            "/api/sessions/{}/merge",
            http::segment(&id_arg(session_id)?)
        );
        self.send(py, Method::Post, path, Value::Object(Map::new()))
    }

    // ---- task board ----

    /// `GET /api/tasks`, optionally only one `status` and/or one session's.
    #[pyo3(signature = (status=None, session_id=None))]
    fn list_tasks(
        &self,
        py: Python<'_>,
        status: Option<String>,
        session_id: Option<String>,
    ) -> PyResult<PyObject> {
        let mut c = call(Method::Get, "/api/tasks", None);
        if let Some(s) = status {
            c.query.push(("status", s));
        }
        if let Some(s) = session_id {
            c.query.push(("sessionId", s));
        }
        self.run(py, c)
    }

    /// `GET /api/tasks/{id}`.
    fn get_task(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        self.get(py, format!("/api/tasks/{}", http::segment(&id_arg(id)?)))
    }

    /// `POST /api/tasks`. `priority` 0..=100; `artifacts` string values.
    #[pyo3(signature = (title, description=None, priority=None, *, status=None, session_id=None, artifacts=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_task(
        &self,
        py: Python<'_>,
        title: &str,
        description: Option<String>,
        priority: Option<i64>,
        status: Option<String>,
        session_id: Option<String>,
        artifacts: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let mut body = Map::new();
        body.insert("title".into(), Value::String(title.to_string()));
        put(&mut body, "description", description);
        if let Some(p) = priority {
            body.insert("priority".into(), Value::from(p));
        }
        put(&mut body, "status", status);
        put(&mut body, "sessionId", session_id);
        if let Some(a) = artifacts {
            body.insert("artifacts".into(), string_map(a, false)?);
        }
        self.send(py, Method::Post, "/api/tasks".into(), Value::Object(body))
    }

    /// `PATCH /api/tasks/{id}`: only the given fields change. `detach=True`
    /// clears the session; an `artifacts` value of None removes that key.
    #[pyo3(signature = (id, *, title=None, description=None, status=None, priority=None, session_id=None, detach=false, artifacts=None))]
    #[allow(clippy::too_many_arguments)]
    fn update_task(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        title: Option<String>,
        description: Option<String>,
        status: Option<String>,
        priority: Option<i64>,
        session_id: Option<String>,
        detach: bool,
        artifacts: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let path = format!("/api/tasks/{}", http::segment(&id_arg(id)?));
        let mut body = Map::new();
        put(&mut body, "title", title);
        put(&mut body, "description", description);
        put(&mut body, "status", status);
        if let Some(p) = priority {
            body.insert("priority".into(), Value::from(p));
        }
        match (session_id, detach) {
            (Some(_), true) => {
                return Err(PyValueError::new_err(
                    "give session_id or detach=True, not both",
                ))
            }
            (Some(s), false) => {
                body.insert("sessionId".into(), Value::String(s));
            }
            (None, true) => {
                body.insert("sessionId".into(), Value::Null);
            }
            (None, false) => {}
        }
        if let Some(a) = artifacts {
            body.insert("artifacts".into(), string_map(a, true)?);
        }
        self.send(py, Method::Patch, path, Value::Object(body))
    }

    /// `DELETE /api/tasks/{id}`.
    fn delete_task(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let path = format!("/api/tasks/{}", http::segment(&id_arg(id)?));
        self.run(py, call(Method::Delete, &path, None))
    }

    /// `POST /api/tasks/{id}/approve`: a task in review becomes done.
    fn approve_task(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let path = format!("/api/tasks/{}/approve", http::segment(&id_arg(id)?));
        self.send(py, Method::Post, path, Value::Object(Map::new()))
    }

    /// `POST /api/tasks/{id}/reject`: back to in_progress with `feedback`.
    fn reject_task(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        feedback: &str,
    ) -> PyResult<PyObject> {
        let path = format!("/api/tasks/{}/reject", http::segment(&id_arg(id)?));
        self.send(
            py,
            Method::Post,
            path,
            serde_json::json!({"feedback": feedback}),
        )
    }

    // ---- agent task tools ----

    /// Replace this session's not-yet-started tasks; the first starts.
    /// `tasks`: ``[{"title": ..., "description"?: ..., "priority"?: int}]``.
    #[pyo3(signature = (tasks, session_id=None))]
    fn set_tasks(
        &self,
        py: Python<'_>,
        tasks: &Bound<'_, PyAny>,
        session_id: Option<String>,
    ) -> PyResult<PyObject> {
        let tasks = convert::py_to_json(tasks)?;
        if !tasks.is_array() {
            return Err(PyTypeError::new_err("tasks must be a list of dicts"));
        }
        let body = serde_json::json!({ "tasks": tasks });
        self.tool_call(py, Method::Post, "set", Some(body), session_id)
    }

    /// The current task goes to review with `summary`; the next one starts.
    #[pyo3(signature = (summary, session_id=None))]
    fn complete_task(
        &self,
        py: Python<'_>,
        summary: &str,
        session_id: Option<String>,
    ) -> PyResult<PyObject> {
        let body = serde_json::json!({ "summary": summary });
        self.tool_call(py, Method::Post, "complete", Some(body), session_id)
    }

    /// This session's tasks and a summary line for the agent.
    #[pyo3(signature = (session_id=None))]
    fn task_status(&self, py: Python<'_>, session_id: Option<String>) -> PyResult<PyObject> {
        self.tool_call(py, Method::Get, "status", None, session_id)
    }

    /// The current task becomes blocked with `reason`.
    #[pyo3(signature = (reason, session_id=None))]
    fn block_task(
        &self,
        py: Python<'_>,
        reason: &str,
        session_id: Option<String>,
    ) -> PyResult<PyObject> {
        let body = serde_json::json!({ "reason": reason });
        self.tool_call(py, Method::Post, "block", Some(body), session_id)
    }

    /// Record `key: value` (text) on the current task.
    #[pyo3(signature = (key, value, session_id=None))]
    fn add_artifact(
        &self,
        py: Python<'_>,
        key: &str,
        value: &str,
        session_id: Option<String>,
    ) -> PyResult<PyObject> {
        let body = serde_json::json!({ "key": key, "value": value });
        self.tool_call(py, Method::Post, "artifact", Some(body), session_id)
    }

    // ---- signals ----

    /// `POST /api/signals/resolve`: an outside event (CI, review, approval)
    /// for the tasks whose artifacts name the PR (`pr_url`, or `repo` and
    /// `pr`). Returns how many tasks it moved.
    #[pyo3(signature = (r#type, status, repo=None, pr=None, pr_url=None, artifacts=None))]
    #[allow(clippy::too_many_arguments)]
    fn resolve_signal(
        &self,
        py: Python<'_>,
        r#type: &str,
        status: &str,
        repo: Option<String>,
        pr: Option<&Bound<'_, PyAny>>,
        pr_url: Option<String>,
        artifacts: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let mut body = Map::new();
        body.insert("type".into(), Value::String(r#type.to_string()));
        body.insert("status".into(), Value::String(status.to_string()));
        put(&mut body, "repo", repo);
        if let Some(p) = pr {
            if !p.is_none() {
                if p.is_instance_of::<PyBool>() {
                    return Err(PyTypeError::new_err("pr must be an int or a str"));
                }
                let v = convert::py_to_json(p)?;
                if !(v.is_u64() || v.is_string()) {
                    return Err(PyTypeError::new_err(
                        "pr must be a non-negative int or a str",
                    ));
                }
                body.insert("pr".into(), v);
            }
        }
        put(&mut body, "pr_url", pr_url);
        if let Some(a) = artifacts {
            body.insert("artifacts".into(), string_map(a, false)?);
        }
        self.send(
            py,
            Method::Post,
            "/api/signals/resolve".into(),
            Value::Object(body),
        )
    }
}

fn put(body: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        body.insert(key.to_string(), Value::String(v));
    }
}

/// A `{str: str}` mapping (values may be None when `nulls`), as the server takes it.
fn string_map(obj: &Bound<'_, PyAny>, nulls: bool) -> PyResult<Value> {
    let v = convert::py_to_json(obj)?;
    let Value::Object(m) = &v else {
        return Err(PyTypeError::new_err(
            "artifacts must be a dict of str to str",
        ));
    };
    for (k, val) in m {
        if !(val.is_string() || (nulls && val.is_null())) {
            return Err(PyTypeError::new_err(format!(
                "artifacts[{k:?}] must be a str{}",
                if nulls { " or None" } else { "" }
            )));
        }
    }
    Ok(v)
}

/// A mitzod session id for today (UTC), in the server's own format
/// (`mitzo_protocol::session_id`).
fn new_session_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut bytes = [0u8; 6];
    if getrandom(&mut bytes).is_err() {
        // Time and pid are unique enough for a worktree name.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        bytes.copy_from_slice(&n.to_le_bytes()[..6]);
    }
    mitzo_protocol::session_id::format((secs / 86_400) as i64, bytes)
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// Where discovery would look for a token file, in order, without reading
/// tokens from the environment. Used by `mitzo token path`.
#[pyfunction]
fn token_file_candidates() -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = env_var("MITZO_TOKEN_FILE").filter(|p| !p.trim().is_empty()) {
        out.push(p.trim().to_string());
    }
    if let Some(p) = std::env::current_dir()
        .ok()
        .and_then(|d| discovery::dev_token_file(&d))
    {
        out.push(p.display().to_string());
    }
    if let Some(h) = env_var("HOME").filter(|h| !h.trim().is_empty()) {
        out.push(
            Path::new(h.trim())
                .join(".mitzo")
                .join("internal-token")
                .display()
                .to_string(),
        );
    }
    out.push(discovery::SYSTEM_TOKEN_FILE.to_string());
    out
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_function(wrap_pyfunction!(token_file_candidates, m)?)?;
    m.add("DEFAULT_URL", DEFAULT_URL)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
