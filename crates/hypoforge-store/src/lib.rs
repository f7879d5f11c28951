//! The SQLite store behind `hypoforge run`: runs, hypotheses, their verdicts, every trial and the
//! results computed from them.
//!
//! Invariants the run loop builds on:
//! - Every write is its own transaction (WAL journal), so a process killed at any instant leaves
//!   the store as it was after the last completed write: a run loses at most the trials in flight.
//! - Trials are keyed by content, `(hypothesis hash, protocol digest, seed)`, not by run: a trial
//!   is trained once, whichever run asks for it again.
//! - One process writes at a time ([`Store::lock_for_writing`]); readers never block it.
//! - Losses are stored as the bits of their `f64`, so a resumed run reads back exactly what it
//!   computed, NaN and infinities included.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

/// Bumped with every change to [`SCHEMA`]; a store from a newer build is refused, not guessed at.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    created INTEGER NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE hypotheses (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    provenance TEXT NOT NULL
);
CREATE TABLE entries (
    run INTEGER NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL,
    round INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    hash TEXT NOT NULL REFERENCES hypotheses(hash),
    verdict TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (run, kind, round, ordinal)
);
CREATE TABLE trials (
    hash TEXT NOT NULL,
    protocol TEXT NOT NULL,
    seed INTEGER NOT NULL,
    task TEXT NOT NULL,
    failed_cause TEXT,
    val_loss_bits INTEGER,
    val_accuracy_bits INTEGER,
    PRIMARY KEY (hash, protocol, seed)
);
CREATE TABLE results (
    run INTEGER NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run, key)
);
";

/// What went wrong with the store, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "the store {path} is being written by another hypoforge process{holder}; wait for it to finish or stop it"
    )]
    Busy { path: PathBuf, holder: String },
    #[error(
        "the store {path} has schema version {found}, newer than this build's {known}; use the hypoforge that wrote it"
    )]
    Schema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("no run {0} in this store; `hypoforge status` lists the runs")]
    NoRun(i64),
    #[error(
        "the store {path} cannot be written: the disk (or the file size limit) is full; free space and resume the run"
    )]
    Full { path: PathBuf },
    #[error(
        "the store {path} cannot be written ({message}): a full disk, a file size limit or a failing disk; fix that and resume the run"
    )]
    Io { path: PathBuf, message: String },
    #[error(
        "the store {path} cannot be written: it is read-only; check the permissions of the file and its folder"
    )]
    ReadOnly { path: PathBuf },
    #[error("store {path}: {what}: {message}")]
    Sql {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("store {path}: {what} holds a value this build cannot read: {value:?}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        value: String,
    },
}

/// A run as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    pub id: i64,
    /// Unix seconds.
    pub created: i64,
    /// The run's configuration, as given (TOML).
    pub config: String,
    pub state: RunState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Started and not finished: either in progress or stopped (killed, interrupted, out of
    /// budget); `hypoforge resume` continues it.
    Running,
    Done,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Done => "done",
        }
    }
    fn parse(s: &str) -> Option<RunState> {
        match s {
            "running" => Some(RunState::Running),
            "done" => Some(RunState::Done),
            _ => None,
        }
    }
}

/// A hypothesis's source and provenance, stored once per content hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HypothesisRecord {
    pub hash: String,
    pub kind: String,
    pub name: String,
    pub source: String,
    /// JSON: generator, strategy, prompt, model, attempts...
    pub provenance: String,
}

/// A hypothesis's place and verdict in one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: String,
    pub round: u32,
    pub ordinal: u32,
    pub hash: String,
    /// `valid`, `invalid`, `did_not_compile` or `duplicate`.
    pub verdict: String,
    /// The compiler or validator message, or the hash of the hypothesis this one duplicates.
    pub detail: String,
}

/// Where a trial is stored: the hypothesis, the protocol (a digest of the task and of
/// everything else that decides the numbers) and the seed. `task` is kept for reading only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrialKey {
    pub hash: String,
    pub protocol: String,
    pub seed: u64,
    pub task: String,
}

/// A stored trial's outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum TrialRecord {
    Finished {
        val_loss: f64,
        val_accuracy: Option<f64>,
    },
    Failed {
        cause: String,
    },
}

/// A store file. Cheap to share between threads: every call takes the connection for one
/// statement or one transaction.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// Held while a process writes to a store; released when dropped or when the process dies,
/// however it dies (an advisory lock on `<store>.lock`).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl Store {
    /// Open the store at `path`, creating it (not its folder) when missing.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_error = |message: String| StoreError::Open {
            path: path.to_owned(),
            message,
        };
        match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => {
                return Err(open_error(format!(
                    "the folder {} does not exist; create it first",
                    dir.display()
                )));
            }
            _ => {}
        }
        let conn = Connection::open(path).map_err(|e| open_error(describe(&e)))?;
        let store = Store {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        };
        store.configure()?;
        Ok(store)
    }

    /// Open an existing store for reading and writing; a missing file is an error, not a new
    /// store (for `resume`, `status`, `export`, `report`).
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Open {
                path: path.to_owned(),
                message: "no such file; `hypoforge run --config FILE` creates a store".into(),
            });
        }
        Store::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| self.error("configure", &e))?;
        // WAL: a commit is one append, readers see the last commit, and a killed writer leaves
        // nothing half-done. NORMAL sync loses nothing to a killed process (only to power loss).
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| self.error("set the journal mode", &e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path: self.path.clone(),
                message: format!("SQLite refused the WAL journal (got {mode})"),
            });
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| self.error("configure", &e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.error("read the schema version", &e))?;
        match version {
            0 => {
                let tx = conn
                    .unchecked_transaction()
                    .map_err(|e| self.error("create the schema", &e))?;
                tx.execute_batch(SCHEMA)
                    .and_then(|()| {
                        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                    })
                    .and_then(|()| tx.commit())
                    .map_err(|e| self.error("create the schema", &e))?;
                Ok(())
            }
            SCHEMA_VERSION => Ok(()),
            found => Err(StoreError::Schema {
                path: self.path.clone(),
                found,
                known: SCHEMA_VERSION,
            }),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the connection cannot leave a transaction half-applied (SQLite
        // rolls it back), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, what: &'static str, e: &rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full {
                path: self.path.clone(),
            },
            Some(ErrorCode::SystemIoFailure) => StoreError::Io {
                path: self.path.clone(),
                message: describe(e),
            },
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly {
                path: self.path.clone(),
            },
            Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => {
                StoreError::ReadOnly {
                    path: self.path.clone(),
                }
            }
            _ => StoreError::Sql {
                path: self.path.clone(),
                what,
                message: describe(e),
            },
        }
    }

    /// Take the writer lock, or say who holds it.
    pub fn lock_for_writing(&self) -> Result<WriterLock, StoreError> {
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    StoreError::ReadOnly {
                        path: self.path.clone(),
                    }
                }
                _ => StoreError::Open {
                    path: self.path.clone(),
                    message: format!("cannot create the lock file {}: {e}", lock_path.display()),
                },
            })?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the next process's message; best effort.
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(file, "{}", std::process::id());
                Ok(WriterLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim().parse::<u32>() {
                    Ok(pid) => format!(" (pid {pid})"),
                    Err(_) => String::new(),
                };
                Err(StoreError::Busy {
                    path: self.path.clone(),
                    holder,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Open {
                path: self.path.clone(),
                message: format!("cannot lock {}: {e}", lock_path.display()),
            }),
        }
    }

    /// Record a new run; returns its id.
    pub fn create_run(&self, config: &str, created: i64) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO runs (created, config, state) VALUES (?1, ?2, ?3)",
            params![created, config, RunState::Running.as_str()],
        )
        .map_err(|e| self.error("create a run", &e))?;
        Ok(conn.last_insert_rowid())
    }

    pub fn run(&self, id: i64) -> Result<RunRecord, StoreError> {
        self.conn()
            .query_row(
                "SELECT id, created, config, state FROM runs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?)),
            )
            .optional()
            .map_err(|e| self.error("read a run", &e))?
            .ok_or(StoreError::NoRun(id))
            .and_then(|row| self.run_record(row))
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, created, config, state FROM runs ORDER BY id")
            .map_err(|e| self.error("list runs", &e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.error("list runs", &e))?;
        rows.into_iter().map(|row| self.run_record(row)).collect()
    }

    fn run_record(
        &self,
        (id, created, config, state): (i64, i64, String, String),
    ) -> Result<RunRecord, StoreError> {
        let state = RunState::parse(&state).ok_or(StoreError::Corrupt {
            path: self.path.clone(),
            what: "a run's state",
            value: state,
        })?;
        Ok(RunRecord {
            id,
            created,
            config,
            state,
        })
    }

    pub fn set_run_state(&self, id: i64, state: RunState) -> Result<(), StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE runs SET state = ?2 WHERE id = ?1",
                params![id, state.as_str()],
            )
            .map_err(|e| self.error("update a run", &e))?;
        if changed == 0 {
            return Err(StoreError::NoRun(id));
        }
        Ok(())
    }

    /// Record a hypothesis (once per hash) and its entry in a run, in one transaction.
    pub fn add_entry(
        &self,
        run: i64,
        hypothesis: &HypothesisRecord,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(|e| self.error("add a hypothesis", &e))?;
        tx.execute(
            "INSERT OR IGNORE INTO hypotheses (hash, kind, name, source, provenance)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                hypothesis.hash,
                hypothesis.kind,
                hypothesis.name,
                hypothesis.source,
                hypothesis.provenance
            ],
        )
        .and_then(|_| {
            tx.execute(
                "INSERT INTO entries (run, kind, round, ordinal, hash, verdict, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run,
                    entry.kind,
                    entry.round,
                    entry.ordinal,
                    entry.hash,
                    entry.verdict,
                    entry.detail
                ],
            )
        })
        .and_then(|_| tx.commit())
        .map_err(|e| self.error("add a hypothesis", &e))
    }

    /// A run's entries of `kind` (all kinds when `None`), in round and ordinal order.
    pub fn entries(&self, run: i64, kind: Option<&str>) -> Result<Vec<Entry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT kind, round, ordinal, hash, verdict, detail FROM entries
                 WHERE run = ?1 AND (?2 IS NULL OR kind = ?2) ORDER BY kind, round, ordinal",
            )
            .map_err(|e| self.error("list hypotheses", &e))?;
        stmt.query_map(params![run, kind], |r| {
            Ok(Entry {
                kind: r.get(0)?,
                round: r.get(1)?,
                ordinal: r.get(2)?,
                hash: r.get(3)?,
                verdict: r.get(4)?,
                detail: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.error("list hypotheses", &e))
    }

    pub fn hypothesis(&self, hash: &str) -> Result<Option<HypothesisRecord>, StoreError> {
        self.conn()
            .query_row(
                "SELECT hash, kind, name, source, provenance FROM hypotheses WHERE hash = ?1",
                [hash],
                |r| {
                    Ok(HypothesisRecord {
                        hash: r.get(0)?,
                        kind: r.get(1)?,
                        name: r.get(2)?,
                        source: r.get(3)?,
                        provenance: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.error("read a hypothesis", &e))
    }

    pub fn trial(&self, key: &TrialKey) -> Result<Option<TrialRecord>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT failed_cause, val_loss_bits, val_accuracy_bits FROM trials
                 WHERE hash = ?1 AND protocol = ?2 AND seed = ?3",
                params![key.hash, key.protocol, key.seed as i64],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.error("read a trial", &e))?;
        let Some((cause, loss, accuracy)) = row else {
            return Ok(None);
        };
        let from_bits = |b: i64| f64::from_bits(b as u64);
        match (cause, loss) {
            (Some(cause), _) => Ok(Some(TrialRecord::Failed { cause })),
            (None, Some(loss)) => Ok(Some(TrialRecord::Finished {
                val_loss: from_bits(loss),
                val_accuracy: accuracy.map(from_bits),
            })),
            (None, None) => Err(StoreError::Corrupt {
                path: self.path.clone(),
                what: "a trial",
                value: format!("{key:?} has neither a loss nor a cause"),
            }),
        }
    }

    /// Commit one trial. Storing the same key again keeps the first outcome: a trial is a pure
    /// function of its key, so the two are the same.
    pub fn put_trial(&self, key: &TrialKey, record: &TrialRecord) -> Result<(), StoreError> {
        let (cause, loss, accuracy) = match record {
            TrialRecord::Failed { cause } => (Some(cause.as_str()), None, None),
            TrialRecord::Finished {
                val_loss,
                val_accuracy,
            } => (
                None,
                Some(val_loss.to_bits() as i64),
                val_accuracy.map(|a| a.to_bits() as i64),
            ),
        };
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO trials
                 (hash, protocol, seed, task, failed_cause, val_loss_bits, val_accuracy_bits)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    key.hash,
                    key.protocol,
                    key.seed as i64,
                    key.task,
                    cause,
                    loss,
                    accuracy
                ],
            )
            .map_err(|e| self.error("record a trial", &e))?;
        Ok(())
    }

    /// How many trials the store holds (all runs).
    pub fn trial_count(&self) -> Result<u64, StoreError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM trials", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.error("count trials", &e))
    }

    /// Set a run's result or progress marker `key` (JSON or plain text).
    pub fn put_result(&self, run: i64, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO results (run, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run, key) DO UPDATE SET value = excluded.value",
                params![run, key, value],
            )
            .map_err(|e| self.error("record a result", &e))?;
        Ok(())
    }

    pub fn result(&self, run: i64, key: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT value FROM results WHERE run = ?1 AND key = ?2",
                params![run, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error("read a result", &e))
    }

    /// A run's results and markers whose key starts with `prefix`, in key order.
    pub fn results(&self, run: i64, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT key, value FROM results WHERE run = ?1 AND substr(key, 1, length(?2)) = ?2
                 ORDER BY key",
            )
            .map_err(|e| self.error("list results", &e))?;
        stmt.query_map(params![run, prefix], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.error("list results", &e))
    }
}

/// SQLite's message, with the extended code's meaning when it adds something.
fn describe(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(err, Some(message)) => format!("{message} ({:?})", err.code),
        other => other.to_string(),
    }
}
