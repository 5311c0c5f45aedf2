//! The one SQLite database in the state dir (WAL): schema migrations and a
//! handle that runs queries off the async runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::error::{Error, Result, StartupError};

/// The schema migrations, `migrations/NNNN_*.sql`: file N moves the schema
/// from version N-1 (`PRAGMA user_version`) to N, in one transaction. Never
/// edit a shipped one (`shipped_migrations_are_unchanged` pins each file's
/// hash); add the next number instead.
pub(crate) const MIGRATIONS: &[&str] = &[
    // Owner auth: meta, revoked tokens.
    include_str!("migrations/0001_owner_auth.sql"),
    // The task board.
    include_str!("migrations/0002_tasks.sql"),
    // Agent sessions, their events, the permission audit log.
    include_str!("migrations/0003_sessions.sql"),
    // Typed state and mode, a title and the repo's name; the CHECK
    // constraints keep the database to the values the code knows. Rows
    // written before keep their values where valid (an unknown state reads
    // as interrupted, an unknown mode as ask) and take their summary as title.
    include_str!("migrations/0004_session_state.sql"),
    // Whether retention dropped part of a session's history.
    include_str!("migrations/0005_history_compacted.sql"),
];

/// Bring `conn`'s schema to the newest version, one migration per
/// transaction; refuses a database newer than this mitzod.
pub fn migrate(conn: &mut Connection) -> Result<(), StartupError> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(StartupError::StateDir(format!(
            "database schema version {version} is newer than this mitzod knows ({}); refusing to downgrade",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    /// Told of every disk-full failure and every write that lands.
    health: Arc<crate::health::Health>,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, StartupError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Db, StartupError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Db, StartupError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Lets retention give freed pages back to the file system. Takes
        // effect only on a database without tables yet; an existing one
        // keeps its mode until a one-off `VACUUM` (see the README).
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: an acknowledged write survives a crash of the process or box.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            health: Arc::default(),
        })
    }

    /// Run `f` on the connection from the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    {
        let conn = self.conn.clone();
        let health = self.health.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            watched(&health, &mut guard, f)
        })
        .await
        .map_err(|e| Error::internal(format!("database task failed: {e}")))?
    }

    /// Synchronous access, for start-up and CLI commands.
    pub fn with<R>(&self, f: impl FnOnce(&mut Connection) -> Result<R>) -> Result<R> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        watched(&self.health, &mut guard, f)
    }

    /// Whether the state directory's disk was full at the last write.
    pub fn health(&self) -> &Arc<crate::health::Health> {
        &self.health
    }
}

/// Run `f`, telling `health` when it failed for a full disk or when it
/// changed rows and succeeded (so the disk has room again).
fn watched<R>(
    health: &crate::health::Health,
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<R>,
) -> Result<R> {
    let before = conn.total_changes();
    let result = f(conn);
    match &result {
        Err(e) if e.is_disk_full() => health.note_disk_full(e),
        Ok(_) if conn.total_changes() != before => health.note_write_ok(),
        _ => {}
    }
    result
}

pub fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of each shipped migration file, in order. A database that
    /// ran a migration never runs it again, so an edit to a shipped file
    /// would leave existing databases and new ones with different schemas.
    const SHIPPED: &[&str] = &[
        "2d964d09379d6bd782bcc9c03e75b51f7d3b3f4e1c99d0eb649759e79c1578bf",
        "b9fc87a661eedc6f4901c6c86d2736657202cff5f17a9f3a37580e5678edf082",
        "60572379ddbf70f1697b02cbf5ff67359a9252a98e49b6816cedcb2b13023d0e",
        "d565c039d2466f1c45d1b9c5237f3c316c4ed0edb08982b30a5f39a48a72290d",
        "6aeb84bc73c4c32b04ca12a45b70b2d261f0a759abb41342f2f05eb8dc2b8487",
    ];

    #[test]
    fn shipped_migrations_are_unchanged() {
        use sha2::{Digest, Sha256};
        for (i, want) in SHIPPED.iter().enumerate() {
            let sql = MIGRATIONS
                .get(i)
                .unwrap_or_else(|| panic!("shipped migration {} is no longer included", i + 1));
            assert_eq!(
                hex::encode(Sha256::digest(sql.as_bytes())),
                *want,
                "migration {} changed after it shipped; add a new migration instead",
                i + 1
            );
        }
        assert_eq!(
            MIGRATIONS.len(),
            SHIPPED.len(),
            "a new migration: pin its hash in SHIPPED"
        );
    }

    #[test]
    fn every_migration_file_is_included_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/migrations");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), MIGRATIONS.len(), "{names:?}");
        for (i, name) in names.iter().enumerate() {
            assert!(
                name.starts_with(&format!("{:04}_", i + 1)) && name.ends_with(".sql"),
                "{name}: expected {:04}_<what>.sql",
                i + 1
            );
            let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
            assert_eq!(text, MIGRATIONS[i], "{name} is not migration {}", i + 1);
        }
    }

    #[test]
    fn sessions_migrate_to_typed_state_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            // A database as version 3 left it, with a row the code no longer knows.
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            let insert = "INSERT INTO sessions (id, source, summary, mode, repo, cwd, isolation, headless, state, created_at, last_modified) VALUES (?1, 's', ?2, ?3, '/r', '/r', 1, 0, ?4, 1, 2)";
            conn.execute(insert, ["a", "Old work", "agent", "requires_action"])
                .unwrap();
            conn.execute(insert, ["b", "", "yolo", "exploded"]).unwrap();
        }
        let db = Db::open(&path).unwrap();
        db.with(|c| {
            let a = crate::sessions::store::get(c, "a")?.unwrap();
            assert_eq!(a.state, mitzo_protocol::SessionState::RequiresAction);
            assert_eq!(a.mode, mitzo_protocol::Mode::Agent);
            assert_eq!(a.title, "Old work");
            let b = crate::sessions::store::get(c, "b")?.unwrap();
            assert_eq!(b.state, mitzo_protocol::SessionState::Interrupted);
            assert_eq!(b.mode, mitzo_protocol::Mode::Ask);
            // The CHECK constraints hold from now on.
            assert!(c
                .execute("UPDATE sessions SET state = 'exploded' WHERE id = 'a'", [])
                .is_err());
            assert!(c
                .execute("UPDATE sessions SET mode = 'yolo' WHERE id = 'a'", [])
                .is_err());
            // Control: a known value is accepted.
            c.execute("UPDATE sessions SET state = 'idle' WHERE id = 'a'", [])?;
            Ok(())
        })
        .unwrap();
    }
}
