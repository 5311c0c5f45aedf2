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
                401 | 403 => "AuthError",
                404 => "NotFoundError",
                409 => "ConflictError",
                429 => "RateLimitedError",
                500..=599 => "ServerError",
                _ => "MitzoError",
            };
            let mut message = format!("{what}: {status} {error}");
            if let Some(s) = retry_after {
                message.push_str(&format!(" (retry after {s} s)"));
            }
            make_error(py, class, message, Some(status), Some(error), retry_after)
        }
        CallError::Connection { message } => {
            make_error(py, "ConnectionError", message, None, None, None)
        }
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

/// Insert `key: value` into a JSON body when `value` is not None.
fn put_opt(
    body: &mut Map<String, Value>,
    key: &str,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    if let Some(v) = value {
        if !v.is_none() {
            body.insert(key.to_string(), convert::py_to_json(v)?);
        }
    }
    Ok(())
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
        let found =
            match discovery::discover(token, &env_var, Path::new(discovery::SYSTEM_TOKEN_FILE)) {
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

    // ---- sessions ----

    #[pyo3(signature = (source, initial_prompt=None, summary=None, mode=None, model=None))]
    fn create_session(
        &self,
        py: Python<'_>,
        source: &str,
        initial_prompt: Option<&Bound<'_, PyAny>>,
        summary: Option<&Bound<'_, PyAny>>,
        mode: Option<&Bound<'_, PyAny>>,
        model: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let mut body = Map::new();
        body.insert("source".into(), Value::String(source.to_string()));
        put_opt(&mut body, "initialPrompt", initial_prompt)?;
        put_opt(&mut body, "summary", summary)?;
        put_opt(&mut body, "mode", mode)?;
        put_opt(&mut body, "model", model)?;
        self.send(
            py,
            Method::Post,
            "/api/sessions".into(),
            Value::Object(body),
        )
    }

    #[pyo3(signature = (offset=0, limit=50))]
    fn list_sessions(&self, py: Python<'_>, offset: u64, limit: u64) -> PyResult<PyObject> {
        let mut c = call(Method::Get, "/api/sessions", None);
        c.query = vec![("offset", offset.to_string()), ("limit", limit.to_string())];
        self.run(py, c)
    }

    fn session_meta(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let path = format!("/api/sessions/{}/meta", http::segment(&id_arg(id)?));
        self.get(py, path)
    }

    #[pyo3(signature = (id, after=0))]
    fn session_events(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        after: u64,
    ) -> PyResult<PyObject> {
        let path = format!("/api/sessions/{}/events", http::segment(&id_arg(id)?));
        let mut c = call(Method::Get, &path, None);
        c.query = vec![("after", after.to_string())];
        self.run(py, c)
    }

    fn delete_session(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let path = format!("/api/sessions/{}", http::segment(&id_arg(id)?));
        self.run(py, call(Method::Delete, &path, None))
    }

    // ---- repos ----

    fn repos(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.get(py, "/api/repos".into())
    }

    fn open_repo(&self, py: Python<'_>, repo_name: &str, session_id: &str) -> PyResult<PyObject> {
        let body = serde_json::json!({"repoName": repo_name, "sessionId": session_id});
        self.send(py, Method::Post, "/api/repos/open".into(), body)
    }

    // ---- task board ----

    fn list_tasks(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.get(py, "/api/tasks".into())
    }

    fn get_task(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        self.get(py, format!("/api/tasks/{}", http::segment(&id_arg(id)?)))
    }

    #[pyo3(signature = (title, description=None, priority=None))]
    fn create_task(
        &self,
        py: Python<'_>,
        title: &str,
        description: Option<&Bound<'_, PyAny>>,
        priority: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let mut body = Map::new();
        body.insert("title".into(), Value::String(title.to_string()));
        put_opt(&mut body, "description", description)?;
        put_opt(&mut body, "priority", priority)?;
        self.send(py, Method::Post, "/api/tasks".into(), Value::Object(body))
    }

    #[pyo3(signature = (id, **fields))]
    fn update_task(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyObject> {
        let path = format!("/api/tasks/{}", http::segment(&id_arg(id)?));
        let body = match fields {
            Some(f) => convert::py_to_json(f.as_any())?,
            None => Value::Object(Map::new()),
        };
        self.send(py, Method::Patch, path, body)
    }

    fn delete_task(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let path = format!("/api/tasks/{}", http::segment(&id_arg(id)?));
        self.run(py, call(Method::Delete, &path, None))
    }

    fn approve_task(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let path = format!("/api/tasks/{}/approve", http::segment(&id_arg(id)?));
        self.send(py, Method::Post, path, Value::Object(Map::new()))
    }

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

    #[pyo3(signature = (session_id=None))]
    fn task_status(&self, py: Python<'_>, session_id: Option<String>) -> PyResult<PyObject> {
        self.tool_call(py, Method::Get, "status", None, session_id)
    }

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

    #[pyo3(signature = (key, value, session_id=None))]
    fn add_artifact(
        &self,
        py: Python<'_>,
        key: &str,
        value: &Bound<'_, PyAny>,
        session_id: Option<String>,
    ) -> PyResult<PyObject> {
        let body = serde_json::json!({ "key": key, "value": convert::py_to_json(value)? });
        self.tool_call(py, Method::Post, "artifact", Some(body), session_id)
    }

    // ---- signals ----

    #[pyo3(signature = (r#type, status, repo=None, pr=None, pr_url=None, artifacts=None))]
    #[allow(clippy::too_many_arguments)]
    fn resolve_signal(
        &self,
        py: Python<'_>,
        r#type: &str,
        status: &str,
        repo: Option<&Bound<'_, PyAny>>,
        pr: Option<&Bound<'_, PyAny>>,
        pr_url: Option<&Bound<'_, PyAny>>,
        artifacts: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let mut body = Map::new();
        body.insert("type".into(), Value::String(r#type.to_string()));
        body.insert("status".into(), Value::String(status.to_string()));
        put_opt(&mut body, "repo", repo)?;
        put_opt(&mut body, "pr", pr)?;
        put_opt(&mut body, "pr_url", pr_url)?;
        put_opt(&mut body, "artifacts", artifacts)?;
        self.send(
            py,
            Method::Post,
            "/api/signals/resolve".into(),
            Value::Object(body),
        )
    }
}

/// Where discovery would look for a token file, in order, without reading
/// tokens from the environment. Used by `mitzo token path`.
#[pyfunction]
fn token_file_candidates() -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = env_var("MITZO_TOKEN_FILE").filter(|p| !p.trim().is_empty()) {
        out.push(p.trim().to_string());
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
