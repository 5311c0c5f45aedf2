//! Request bodies: every JSON body mitzod parses (files write, tasks CRUD,
//! task tools, signals, `.mitzo.json`) from arbitrary bytes, then its
//! validation and, for task bodies, the database code on an in-memory
//! board. Nothing may panic; accepted values must respect their caps.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use mitzod::files::WriteBody;
use mitzod::repo_config::RepoConfig;
use mitzod::tasks::{self, CreateTask, PatchTask, SetBody, SignalBody};
use rusqlite::Connection;

thread_local! {
    static DB: RefCell<Connection> = RefCell::new(mitzo_testkit::memory_db());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<WriteBody>(data) {
        if let Ok((content, expected)) = body.decode() {
            assert!(content.len() as u64 <= mitzod::files::MAX_FILE_BYTES);
            assert!(expected.map_or(true, |e| e.len() as u64 <= mitzod::files::MAX_FILE_BYTES));
        }
    }
    // parse() validates what it accepts; the point here is that it never panics.
    let _ = RepoConfig::parse(data);
    DB.with(|db| {
        let mut c = db.borrow_mut();
        if let Ok(body) = serde_json::from_slice::<CreateTask>(data) {
            if let Ok((task, _)) = tasks::create(&mut c, &body) {
                assert!(task.title.chars().count() <= tasks::MAX_TITLE);
                let _ = tasks::patch(&mut c, &task.id, &PatchTask::default());
            }
        }
        if let Ok(body) = serde_json::from_slice::<PatchTask>(data) {
            let first: Option<String> = c.query_row("SELECT id FROM tasks LIMIT 1", [], |r| r.get(0)).ok();
            if let Some(id) = first {
                let _ = tasks::patch(&mut c, &id, &body);
            }
        }
        if let Ok(body) = serde_json::from_slice::<SetBody>(data) {
            let _ = tasks::tool_set(&mut c, "fuzz-session", &body);
        }
        if let Ok(body) = serde_json::from_slice::<SignalBody>(data) {
            let _ = tasks::resolve_signal(&mut c, &body, None);
        }
        // Keep the board small.
        let _ = c.execute("DELETE FROM tasks WHERE rowid NOT IN (SELECT rowid FROM tasks ORDER BY rowid DESC LIMIT 50)", []);
    });
});
