//! The embedded store: SQLite in WAL mode with `synchronous=FULL`. One thread owns the
//! connection and runs every command waiting in its channel inside one transaction, so
//! concurrent requests share a commit (a lone `synchronous=FULL` commit costs ≈ 190 µs).
//!
//! Order without scanning: each (route, destination, partitionkey) line has at most one *head*
//! (`ready` or `leased`); the messages behind it are `waiting` and are promoted one at a time
//! when the head is acknowledged or dies. Leasing reads only due heads through a partial
//! index, so its cost does not grow with a backlog behind a receiver that is down.

use super::archive::{Archive, Archived, Query, Record, Row};
use super::{
    AttemptLog, BoxFuture, Consumer, DeadLetter, DeadLetters, Enqueued, EventBatch, Lease, Leased,
    Message, Producer, QueueError, Request, Settlement, ms,
};
use crate::model::clock::now_ms;
use crate::telemetry::metrics as m;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How many commands one transaction takes at most.
const BATCH: usize = 512;
/// How many commands may wait for the writer. Beyond it an enqueue is refused at once
/// (intake answers 503 with `Retry-After`) and other commands wait their turn: pressure
/// goes back to the senders, memory does not grow.
const CHANNEL: usize = 4096;
/// How long a lease lasts before the message is offered again (a worker that died).
const LEASE: Duration = Duration::from_secs(300);

/// An answer waiting for the transaction's commit result.
type Reply = Box<dyn FnOnce(Result<(), QueueError>)>;

enum Command {
    Enqueue(
        Vec<EventBatch>,
        Option<(super::archive::Received, Row)>,
        oneshot::Sender<Result<Enqueued, QueueError>>,
    ),
    Lease(usize, oneshot::Sender<Result<Vec<Leased>, QueueError>>),
    Settle(i64, Settlement, oneshot::Sender<Result<(), QueueError>>),
    DeadLetters(
        Option<i64>,
        usize,
        oneshot::Sender<Result<Vec<DeadLetter>, QueueError>>,
    ),
    Replay(Option<i64>, oneshot::Sender<Result<usize, QueueError>>),
    Purge(oneshot::Sender<Result<usize, QueueError>>),
    GetSetting(String, oneshot::Sender<Result<Option<String>, QueueError>>),
    SetSetting(String, String, oneshot::Sender<Result<(), QueueError>>),
    Archive(Vec<Row>, oneshot::Sender<Result<(), QueueError>>),
}

/// What the writer keeps of the archive: records younger than `retention_ms`, at most
/// `max_bytes` of record text (a zero retention keeps nothing).
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    /// Age limit, ms.
    pub retention_ms: i64,
    /// Size limit, bytes of record text.
    pub max_bytes: u64,
}

impl ArchiveLimits {
    /// No archive.
    pub const OFF: ArchiveLimits = ArchiveLimits {
        retention_ms: 0,
        max_bytes: 0,
    };
}

/// A change of a line's live-message count, applied to [`Depths`] after the commit:
/// (`route/destination`, partitionkey, change).
type Delta = (String, String, i64);

/// Live-message counters per `route/destination` and per line (destination and partitionkey),
/// kept beside the table so intake can refuse work, or queue a proxy route's event behind
/// its call's waiting messages, without a query.
#[derive(Default)]
struct Depths {
    destinations: Mutex<HashMap<String, Arc<AtomicU64>>>,
    lines: Mutex<HashMap<String, u64>>,
}

fn line_key(destination: &str, partitionkey: &str) -> String {
    format!("{destination}\u{1f}{partitionkey}")
}

impl Depths {
    fn apply(&self, (destination, partitionkey, delta): Delta) {
        let counter = self.counter(&destination);
        if delta >= 0 {
            counter.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(delta.unsigned_abs()))
            });
        }
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let key = line_key(&destination, &partitionkey);
        let live = lines
            .get(&key)
            .copied()
            .unwrap_or(0)
            .saturating_add_signed(delta);
        if live == 0 {
            lines.remove(&key);
        } else {
            lines.insert(key, live);
        }
    }
    fn line_is_live(&self, destination: &str, partitionkey: &str) -> bool {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&line_key(destination, partitionkey))
    }
    fn counter(&self, key: &str) -> Arc<AtomicU64> {
        let mut map = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up on every queued request: allocate the key only the first time.
        if let Some(counter) = map.get(key) {
            return counter.clone();
        }
        map.entry(key.to_string()).or_default().clone()
    }
    fn total(&self) -> u64 {
        let map = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        map.values().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// The SQLite queue.
pub struct SqliteQueue {
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    /// A second connection for archive reads, so a long read never holds the writer.
    reader: Arc<Mutex<Option<Connection>>>,
    depths: Arc<Depths>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether the last write failed for want of disk space.
    no_space: Arc<std::sync::atomic::AtomicBool>,
}

/// Whether the database at `path` can be opened for writing, or created: the file itself if
/// it exists, else the nearest existing folder above it must take a new file.
pub(super) fn check_writable(path: &Path) -> Result<(), String> {
    let refuse = |what: &Path, e: std::io::Error| {
        format!(
            "store.path {}: {} is not writable: {e}",
            path.display(),
            what.display()
        )
    };
    if path.exists() {
        return std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| refuse(path, e));
    }
    let mut folder = path.parent().unwrap_or(Path::new("."));
    if folder.as_os_str().is_empty() {
        folder = Path::new(".");
    }
    while !folder.exists() {
        folder = folder.parent().unwrap_or(Path::new("."));
        if folder.as_os_str().is_empty() {
            folder = Path::new(".");
        }
    }
    if !folder.is_dir() {
        return Err(format!(
            "store.path {}: {} is not a folder",
            path.display(),
            folder.display()
        ));
    }
    let probe = folder.join(format!(".callgate-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| refuse(folder, e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

impl SqliteQueue {
    /// Opens (creating) the database at `path`, recovers leases left by a crash, and starts
    /// the writer thread. `dedupe_window` is how long inbound event keys are remembered.
    /// `max_depth` is `delivery.max_queue_depth`: an enqueue that would take a destination
    /// beyond it is refused whole, atomically (concurrent requests cannot overshoot it).
    pub fn open(
        path: &Path,
        dedupe_window: Duration,
        max_depth: u64,
    ) -> Result<SqliteQueue, QueueError> {
        SqliteQueue::open_with(path, dedupe_window, max_depth, true, ArchiveLimits::OFF)
    }

    /// [`SqliteQueue::open`], keeping an archive within `archive` (pruned by the writer).
    pub fn open_archived(
        path: &Path,
        dedupe_window: Duration,
        max_depth: u64,
        archive: ArchiveLimits,
    ) -> Result<SqliteQueue, QueueError> {
        SqliteQueue::open_with(path, dedupe_window, max_depth, true, archive)
    }

    /// Opens the database for administration (`callgate dlq`) beside a running gateway:
    /// leases are left alone.
    pub fn open_admin(path: &Path) -> Result<SqliteQueue, QueueError> {
        SqliteQueue::open_with(
            path,
            Duration::from_secs(24 * 3600),
            u64::MAX,
            false,
            ArchiveLimits::OFF,
        )
    }

    fn open_with(
        path: &Path,
        dedupe_window: Duration,
        max_depth: u64,
        recover: bool,
        archive: ArchiveLimits,
    ) -> Result<SqliteQueue, QueueError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                QueueError::Store(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT OR IGNORE INTO meta(key, value)
               SELECT 'schema', CASE WHEN EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'tasks') THEN '1' ELSE '2' END;
             CREATE TABLE IF NOT EXISTS tasks(
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               route TEXT NOT NULL, destination TEXT NOT NULL, partitionkey TEXT NOT NULL,
               event_id TEXT NOT NULL, event_type TEXT NOT NULL, record TEXT NOT NULL,
               state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
               next_at INTEGER NOT NULL, lease_until INTEGER, created_at INTEGER NOT NULL,
               dead_at INTEGER);",
        )?;
        // Stores written before the ordering key had one name call its column `partition`.
        let renamed: i64 = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('tasks') WHERE name = 'partition'",
            [],
            |r| r.get(0),
        )?;
        if renamed > 0 {
            conn.execute(
                "ALTER TABLE tasks RENAME COLUMN partition TO partitionkey",
                [],
            )?;
            tracing::info!("store upgraded: column partition renamed partitionkey");
        }
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS tasks_line ON tasks(route, destination, partitionkey, id)
               WHERE state != 'dead';
             CREATE INDEX IF NOT EXISTS tasks_due ON tasks(next_at) WHERE state = 'ready';
             CREATE TABLE IF NOT EXISTS attempts(
               task_id INTEGER NOT NULL, at INTEGER NOT NULL, status INTEGER,
               error TEXT, excerpt TEXT);
             CREATE INDEX IF NOT EXISTS attempts_task ON attempts(task_id);
             CREATE TABLE IF NOT EXISTS dedupe(key TEXT PRIMARY KEY, seen_at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS dedupe_age ON dedupe(seen_at);
             CREATE TABLE IF NOT EXISTS archive(
               seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, record TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS archive_at ON archive(at);
             CREATE TABLE IF NOT EXISTS archive_keys(
               key TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(key, seq)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS archive_keys_seq ON archive_keys(seq);",
        )?;
        let archived_bytes: f64 = conn.query_row(
            "SELECT total(length(CAST(record AS BLOB))) FROM archive",
            [],
            |r| r.get(0),
        )?;
        // A crash leaves leases behind: their attempts may or may not have reached the
        // receiver, so they are offered again (at-least-once).
        let recovered = if recover {
            conn.execute(
                "UPDATE tasks SET state = 'ready', lease_until = NULL WHERE state = 'leased'",
                [],
            )?
        } else {
            0
        };
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "recovered leased messages left by an unclean stop"
            );
        }
        if recover {
            // Schema 1 kept every live message `ready` and found heads by scanning: mark
            // the ones behind a head `waiting`, once.
            let schema: String =
                conn.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                    r.get(0)
                })?;
            if schema == "1" {
                let moved = conn.execute(
                    "UPDATE tasks SET state = 'waiting'
                     WHERE state = 'ready' AND EXISTS (
                       SELECT 1 FROM tasks p WHERE p.route = tasks.route
                         AND p.destination = tasks.destination AND p.partitionkey = tasks.partitionkey
                         AND p.state != 'dead' AND p.id < tasks.id)",
                    [],
                )?;
                conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'", [])?;
                tracing::info!(moved, "store upgraded to schema 2 (line heads)");
            }
        }
        let depths = Arc::new(Depths::default());
        {
            let mut stmt = conn.prepare(
                "SELECT route, destination, partitionkey, COUNT(*) FROM tasks WHERE state != 'dead'
                 GROUP BY route, destination, partitionkey",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            for row in rows {
                let (route, dest, partitionkey, n) = row?;
                depths.apply((format!("{route}/{dest}"), partitionkey, n));
            }
        }
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(Duration::from_secs(5))?;
        let (tx, rx) = mpsc::channel(CHANNEL);
        let thread_depths = depths.clone();
        let window = ms(dedupe_window);
        let kept = Kept {
            limits: archive,
            bytes: archived_bytes as u64,
        };
        let thread = std::thread::Builder::new()
            .name("callgate-sqlite".into())
            .spawn(move || writer(conn, rx, thread_depths, window, max_depth, kept))
            .map_err(|e| QueueError::Store(e.to_string()))?;
        Ok(SqliteQueue {
            commands: Mutex::new(Some(tx)),
            reader: Arc::new(Mutex::new(Some(reader))),
            depths,
            thread: Mutex::new(Some(thread)),
            no_space: Arc::default(),
        })
    }

    fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> Command,
    ) -> BoxFuture<'_, Result<T, QueueError>>
    where
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let sender = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let command = make(tx);
        // Only a write that adds rows shows the disk has room again: a lease or a settlement
        // can go through on a full disk (it rewrites pages it has), and must not tell
        // `/readyz` that intake would.
        let adds_rows = matches!(command, Command::Enqueue(..) | Command::Archive(..));
        let no_space = self.no_space.clone();
        Box::pin(async move {
            let Some(sender) = sender else {
                return Err(QueueError::Closed);
            };
            let sent = match command {
                // Intake is refused at once when the writer is behind; workers and admin wait.
                command @ Command::Enqueue(..) => match sender.try_send(command) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::TrySendError::Full(_)) => return Err(QueueError::Busy),
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
                },
                command => sender.send(command).await.map_err(|_| ()),
            };
            if sent.is_err() {
                return Err(QueueError::Closed);
            }
            let result = rx.await.unwrap_or(Err(QueueError::Closed));
            // The disk is full until a write that adds rows goes through again.
            let full = match &result {
                Err(QueueError::NoSpace(_)) => Some(true),
                Ok(_) if adds_rows => Some(false),
                _ => None,
            };
            if let Some(full) = full
                && no_space.swap(full, std::sync::atomic::Ordering::Relaxed) != full
            {
                metrics::gauge!(m::STORE_FULL).set(if full { 1.0 } else { 0.0 });
                if full {
                    tracing::error!(
                        "the store's disk is full: webhooks get 503 until space is freed"
                    );
                } else {
                    tracing::warn!("the store writes again: its disk has space");
                }
            }
            result
        })
    }

    /// Stops the writer thread after the commands already sent; waits for it.
    pub fn close(&self) {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SqliteQueue {
    fn drop(&mut self) {
        self.close();
    }
}

impl Producer for SqliteQueue {
    fn enqueue(&self, events: Vec<EventBatch>) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        self.send(|tx| Command::Enqueue(events, None, tx))
    }
    fn enqueue_archived(
        &self,
        events: Vec<EventBatch>,
        record: super::archive::Received,
    ) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        // Serialised here, on the caller's thread: the writer only inserts. The record goes
        // along (moved, not copied) to be marked should the store find a duplicate.
        let record = Record::Received(record);
        let row = Row::of(&record);
        let Record::Received(record) = record else {
            unreachable!("made as Received above")
        };
        self.send(|tx| Command::Enqueue(events, Some((record, row)), tx))
    }
    fn depth(&self, route: &str, destination: &str) -> u64 {
        self.depths
            .counter(&format!("{route}/{destination}"))
            .load(Ordering::Relaxed)
    }
    fn total_depth(&self) -> u64 {
        self.depths.total()
    }
    fn no_space(&self) -> bool {
        self.no_space.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn is_waiting(&self, route: &str, destination: &str, partitionkey: &str) -> bool {
        self.depths
            .line_is_live(&format!("{route}/{destination}"), partitionkey)
    }
}

impl Consumer for SqliteQueue {
    fn lease(&self, max: usize) -> BoxFuture<'_, Result<Vec<Leased>, QueueError>> {
        self.send(|tx| Command::Lease(max, tx))
    }
    fn settle(
        &self,
        lease: Lease,
        settlement: Settlement,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        self.send(|tx| Command::Settle(lease.id, settlement, tx))
    }
}

impl super::Settings for SqliteQueue {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<String>, QueueError>> {
        let key = key.to_string();
        self.send(|tx| Command::GetSetting(key, tx))
    }
    fn set(&self, key: &str, value: &str) -> BoxFuture<'_, Result<(), QueueError>> {
        let (key, value) = (key.to_string(), value.to_string());
        self.send(|tx| Command::SetSetting(key, value, tx))
    }
}

impl Archive for SqliteQueue {
    fn append(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), QueueError>> {
        let rows = records.iter().map(Row::of).collect();
        self.send(|tx| Command::Archive(rows, tx))
    }
    fn read(&self, query: Query) -> BoxFuture<'_, Result<Vec<Archived>, QueueError>> {
        let reader = self.reader.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let guard = reader.lock().unwrap_or_else(|e| e.into_inner());
                let conn = guard.as_ref().ok_or(QueueError::Closed)?;
                read_archive(conn, &query)
            })
            .await
            .map_err(|e| QueueError::Store(e.to_string()))?
        })
    }
}

/// Archive records matching `query`, oldest first: through the key index when a key is
/// given, else through the time index; a search term is looked for in each record's text
/// (its JSON string, quoted) and then checked against the record's terms.
fn read_archive(conn: &Connection, query: &Query) -> Result<Vec<Archived>, QueueError> {
    let until = query.until.unwrap_or(i64::MAX);
    let after = query.after.map_or(-1, |a| a as i64);
    // Without a term every row selected matches: SQLite applies the limit.
    let limit = match &query.term {
        Some(_) => -1,
        None => i64::try_from(query.limit).unwrap_or(i64::MAX),
    };
    let needle = query
        .term
        .as_ref()
        .map(|t| serde_json::to_string(t).unwrap_or_default())
        .unwrap_or_default();
    let mut statement = match &query.key {
        Some(_) => conn.prepare_cached(
            "SELECT a.seq, a.record FROM archive_keys k JOIN archive a ON a.seq = k.seq
             WHERE k.key = ?1 AND a.at >= ?2 AND a.at < ?3 AND a.seq > ?4
               AND (?6 = '' OR instr(a.record, ?6) > 0)
             ORDER BY a.seq LIMIT ?5",
        )?,
        None => conn.prepare_cached(
            "SELECT seq, record FROM archive
             WHERE ?1 IS NULL AND at >= ?2 AND at < ?3 AND seq > ?4
               AND (?6 = '' OR instr(record, ?6) > 0)
             ORDER BY seq LIMIT ?5",
        )?,
    };
    let mut rows = statement.query(params![query.key, query.since, until, after, limit, needle])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let (seq, text): (i64, String) = (row.get(0)?, row.get(1)?);
        let record = match serde_json::from_str::<Record>(&text) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(seq, error = %e, "unreadable archive record: skipped");
                continue;
            }
        };
        let archived = Archived {
            seq: seq as u64,
            record,
        };
        if query
            .term
            .as_ref()
            .is_some_and(|term| !archived.record.terms().contains(term))
        {
            continue;
        }
        out.push(archived);
        if out.len() >= query.limit {
            break;
        }
    }
    Ok(out)
}

/// The archive's limits and the bytes of record text it holds now.
struct Kept {
    limits: ArchiveLimits,
    bytes: u64,
}

impl Kept {
    /// Appends records with their keys.
    fn append(&mut self, tx: &Connection, rows: Vec<Row>, now: i64) -> Result<(), QueueError> {
        if self.limits.retention_ms == 0 {
            return Ok(());
        }
        let mut insert = tx.prepare_cached("INSERT INTO archive(at, record) VALUES (?1, ?2)")?;
        let mut key =
            tx.prepare_cached("INSERT OR IGNORE INTO archive_keys(key, seq) VALUES (?1, ?2)")?;
        for row in rows {
            let at = if row.at > 0 { row.at } else { now };
            insert.execute(params![at, row.text])?;
            let seq = tx.last_insert_rowid();
            for k in &row.keys {
                key.execute(params![k, seq])?;
            }
            self.bytes += row.text.len() as u64;
        }
        Ok(())
    }

    /// Drops records older than the retention, then the oldest while over the size limit.
    fn prune(&mut self, tx: &Connection, now: i64, sweep: bool) -> Result<(), rusqlite::Error> {
        if self.limits.retention_ms == 0 {
            return Ok(());
        }
        let mut dropped = false;
        if sweep {
            let mut old = tx.prepare_cached(
                "DELETE FROM archive WHERE at < ?1 RETURNING length(CAST(record AS BLOB))",
            )?;
            let freed: i64 = old
                .query_map([now.saturating_sub(self.limits.retention_ms)], |r| {
                    r.get::<_, i64>(0)
                })?
                .sum::<Result<i64, _>>()?;
            dropped |= freed > 0;
            self.bytes = self.bytes.saturating_sub(freed as u64);
        }
        // In small steps, so that no more goes than the limit needs.
        while self.bytes > self.limits.max_bytes {
            let mut oldest = tx.prepare_cached(
                "DELETE FROM archive WHERE seq IN (SELECT seq FROM archive ORDER BY seq LIMIT 16)
                 RETURNING length(CAST(record AS BLOB))",
            )?;
            let lengths: Vec<i64> = oldest
                .query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<_, _>>()?;
            if lengths.is_empty() {
                self.bytes = 0;
                break;
            }
            dropped = true;
            self.bytes = self
                .bytes
                .saturating_sub(lengths.iter().sum::<i64>() as u64);
        }
        if dropped {
            tx.execute(
                "DELETE FROM archive_keys WHERE seq < (SELECT coalesce(min(seq), 9223372036854775807) FROM archive)",
                [],
            )?;
        }
        Ok(())
    }
}

impl DeadLetters for SqliteQueue {
    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>> {
        self.send(|tx| Command::DeadLetters(None, limit, tx))
    }
    fn show(&self, id: i64) -> BoxFuture<'_, Result<DeadLetter, QueueError>> {
        let fut = self.send(|tx| Command::DeadLetters(Some(id), 1, tx));
        Box::pin(async move {
            fut.await?
                .into_iter()
                .next()
                .ok_or(QueueError::NotFound(id))
        })
    }
    fn replay(&self, id: Option<i64>) -> BoxFuture<'_, Result<usize, QueueError>> {
        self.send(|tx| Command::Replay(id, tx))
    }
    fn purge(&self) -> BoxFuture<'_, Result<usize, QueueError>> {
        self.send(Command::Purge)
    }
}

/// The writer thread: takes every waiting command (up to `BATCH`), runs them in one
/// transaction, commits, then answers them all. Depth counters change only after commit.
fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Command>,
    depths: Arc<Depths>,
    window: i64,
    max_depth: u64,
    mut kept: Kept,
) {
    let mut last_sweep = 0i64;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let now = now_ms();
        let commands = batch.len() as u64;
        let mut replies: Vec<Reply> = Vec::new();
        let mut deltas: Vec<Delta> = Vec::new();
        let result = (|| -> Result<(), rusqlite::Error> {
            let mut tx = conn.transaction()?;
            let sweep = now - last_sweep > 60_000;
            if sweep {
                tx.execute("DELETE FROM dedupe WHERE seen_at < ?1", [now - window])?;
                tx.execute(
                    "UPDATE tasks SET state = 'ready', lease_until = NULL
                     WHERE state = 'leased' AND lease_until < ?1",
                    [now],
                )?;
                last_sweep = now;
            }
            for command in batch {
                run(
                    &mut tx,
                    command,
                    now,
                    &mut replies,
                    &mut deltas,
                    (&depths, max_depth, &mut kept),
                );
            }
            kept.prune(&tx, now, sweep)?;
            tx.commit()
        })();
        let outcome = result.map_err(QueueError::from);
        if outcome.is_ok() {
            metrics::counter!(m::STORE_COMMITS).increment(1);
            metrics::counter!(m::STORE_COMMIT_COMMANDS).increment(commands);
            for delta in deltas {
                depths.apply(delta);
            }
        } else if let Err(e) = &outcome {
            tracing::error!(error = %e, "store transaction failed");
        }
        for reply in replies {
            reply(outcome.clone());
        }
    }
}

/// Runs one command inside its own savepoint of the open transaction, so a failing command
/// leaves nothing behind while the others of the batch commit. Its answer is sent after the
/// commit (an error of the whole transaction replaces it).
fn run(
    tx: &mut rusqlite::Transaction<'_>,
    command: Command,
    now: i64,
    replies: &mut Vec<Reply>,
    deltas: &mut Vec<Delta>,
    (depths, max_depth, kept): (&Depths, u64, &mut Kept),
) {
    fn defer<T: Send + 'static>(
        replies: &mut Vec<Reply>,
        reply: oneshot::Sender<Result<T, QueueError>>,
        value: Result<T, QueueError>,
    ) {
        replies.push(Box::new(move |commit| {
            let _ = reply.send(commit.and(value));
        }));
    }
    fn isolated<T>(
        tx: &mut rusqlite::Transaction<'_>,
        deltas: &mut Vec<Delta>,
        f: impl FnOnce(&Connection, &mut Vec<Delta>) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let sp = tx.savepoint()?;
        let mut local = Vec::new();
        let value = f(&sp, &mut local)?;
        sp.commit()?;
        deltas.extend(local);
        Ok(value)
    }
    match command {
        Command::Enqueue(events, record, reply) => {
            let mut change: HashMap<String, i64> = HashMap::new();
            for (destination, _, by) in deltas.iter() {
                *change.entry(destination.clone()).or_default() += by;
            }
            let mut limit = Limit {
                depths,
                change,
                max_depth,
            };
            // The messages and the payload's archive record commit together.
            let value = isolated(tx, deltas, |c, d| {
                let (enqueued, duplicate) = enqueue(c, events, now, d, &mut limit)?;
                if let Some((mut record, mut row)) = record {
                    if duplicate.contains(&true) {
                        record.mark_duplicates(&duplicate);
                        row = Row::of(&Record::Received(record));
                    }
                    kept.append(c, vec![row], now)?;
                }
                Ok(enqueued)
            });
            defer(replies, reply, value);
        }
        Command::Lease(max, reply) => {
            let value = isolated(tx, deltas, |c, _| {
                lease(c, max, now).map_err(QueueError::from)
            });
            defer(replies, reply, value);
        }
        Command::Settle(id, settlement, reply) => {
            let value = isolated(tx, deltas, |c, d| {
                settle(c, id, settlement, now, d).map_err(QueueError::from)
            });
            defer(replies, reply, value);
        }
        Command::DeadLetters(id, limit, reply) => {
            let value = dead_letters(tx, id, limit).map_err(QueueError::from);
            defer(replies, reply, value);
        }
        Command::Replay(id, reply) => {
            let value = isolated(tx, deltas, |c, d| replay(c, id, now, d));
            defer(replies, reply, value);
        }
        Command::GetSetting(key, reply) => {
            let value = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = ?1",
                    [format!("setting.{key}")],
                    |r| r.get::<_, String>(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(QueueError::from(e)),
                });
            defer(replies, reply, value);
        }
        Command::SetSetting(key, value, reply) => {
            let value = isolated(tx, deltas, |c, _| {
                c.execute(
                    "INSERT INTO meta(key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [format!("setting.{key}"), value],
                )?;
                Ok(())
            });
            defer(replies, reply, value);
        }
        Command::Archive(records, reply) => {
            let value = isolated(tx, deltas, |c, _| kept.append(c, records, now));
            defer(replies, reply, value);
        }
        Command::Purge(reply) => {
            let value = isolated(tx, deltas, |c, _| {
                c.execute(
                    "DELETE FROM attempts WHERE task_id IN (SELECT id FROM tasks WHERE state = 'dead')",
                    [],
                )?;
                Ok(c.execute("DELETE FROM tasks WHERE state = 'dead'", [])?)
            });
            defer(replies, reply, value);
        }
    }
}

/// Whether the (route, destination, partitionkey) line has a live message.
fn line_is_live(tx: &Connection, m: &Message) -> Result<bool, rusqlite::Error> {
    tx.prepare_cached(
        "SELECT 1 FROM tasks WHERE route = ?1 AND destination = ?2 AND partitionkey = ?3
           AND state != 'dead' LIMIT 1",
    )?
    .exists(params![m.route, m.destination, m.partitionkey])
}

/// Makes the oldest waiting message of a line its head.
fn promote(
    tx: &Connection,
    route: &str,
    destination: &str,
    partitionkey: &str,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "UPDATE tasks SET state = 'ready' WHERE id = (
           SELECT id FROM tasks WHERE route = ?1 AND destination = ?2 AND partitionkey = ?3
             AND state != 'dead' AND state = 'waiting' ORDER BY id LIMIT 1)",
    )?
    .execute(params![route, destination, partitionkey])?;
    Ok(())
}

/// The depth limit as seen inside a transaction: committed counters plus what earlier
/// commands of the same transaction changed.
struct Limit<'a> {
    depths: &'a Depths,
    /// Uncommitted changes per destination: earlier commands of the transaction, then the
    /// messages this command admitted so far.
    change: HashMap<String, i64>,
    max_depth: u64,
}

impl Limit<'_> {
    /// Admits one more message for `destination`, or refuses the whole command.
    fn admit(&mut self, destination: &str) -> Result<(), QueueError> {
        let change = self.change.get(destination).copied().unwrap_or(0);
        let depth = self
            .depths
            .counter(destination)
            .load(Ordering::Relaxed)
            .saturating_add_signed(change);
        if depth >= self.max_depth {
            return Err(QueueError::Full {
                destination: destination.to_string(),
                depth,
                max: self.max_depth,
            });
        }
        *self.change.entry(destination.to_string()).or_default() += 1;
        Ok(())
    }
}

fn enqueue(
    tx: &Connection,
    events: Vec<EventBatch>,
    now: i64,
    deltas: &mut Vec<Delta>,
    limit: &mut Limit<'_>,
) -> Result<(Enqueued, Vec<bool>), QueueError> {
    let mut out = Enqueued::default();
    let mut duplicate = Vec::with_capacity(events.len());
    let mut mark =
        tx.prepare_cached("INSERT OR IGNORE INTO dedupe(key, seen_at) VALUES (?1, ?2)")?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO tasks(route, destination, partitionkey, event_id, event_type, record, state,
                           next_at, created_at, dead_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
    )?;
    for event in events {
        let seen = mark.execute(params![event.dedupe_key, now])? == 0;
        duplicate.push(seen);
        if seen {
            out.duplicates += 1;
            continue;
        }
        for new in event.messages {
            let m = &new.message;
            if new.failure.is_none() {
                limit.admit(&m.destination_key())?;
            }
            let state = match &new.failure {
                Some(_) => "dead",
                None if line_is_live(tx, m)? => "waiting",
                None => "ready",
            };
            insert.execute(params![
                m.route,
                m.destination,
                m.partitionkey,
                m.event_id,
                m.event_type,
                m.request.to_record(),
                state,
                now,
                new.failure.as_ref().map(|_| now),
            ])?;
            match &new.failure {
                None => deltas.push((m.destination_key(), m.partitionkey.clone(), 1)),
                Some(reason) => log_attempt(
                    tx,
                    tx.last_insert_rowid(),
                    &AttemptLog {
                        at: now,
                        status: None,
                        error: Some(reason.clone()),
                        excerpt: None,
                    },
                )?,
            }
            out.stored += 1;
        }
    }
    Ok((out, duplicate))
}

const COLUMNS: &str =
    "id, route, destination, partitionkey, event_id, event_type, record, attempts, created_at";

fn lease(tx: &Connection, max: usize, now: i64) -> Result<Vec<Leased>, rusqlite::Error> {
    let mut select = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE state = 'ready' AND next_at <= ?1
         ORDER BY next_at, id LIMIT ?2"
    ))?;
    let rows: Vec<(i64, Message, u32, i64)> = select
        .query_map(params![now, max as i64], row_to_message)?
        .collect::<Result<_, _>>()?;
    let mut mark =
        tx.prepare_cached("UPDATE tasks SET state = 'leased', lease_until = ?2 WHERE id = ?1")?;
    rows.into_iter()
        .map(|(id, message, attempts, created_at)| {
            mark.execute(params![id, now + ms(LEASE)])?;
            Ok(Leased {
                lease: Lease { id },
                message,
                attempts,
                created_at,
            })
        })
        .collect()
}

fn row_to_message(r: &rusqlite::Row<'_>) -> Result<(i64, Message, u32, i64), rusqlite::Error> {
    let record: String = r.get(6)?;
    let request = Request::from_record(&record).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            6,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(e),
        )
    })?;
    let message = Message {
        route: r.get(1)?,
        destination: r.get(2)?,
        partitionkey: r.get(3)?,
        event_id: r.get(4)?,
        event_type: r.get(5)?,
        request,
    };
    Ok((r.get(0)?, message, r.get::<_, i64>(7)? as u32, r.get(8)?))
}

fn log_attempt(tx: &Connection, id: i64, log: &AttemptLog) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO attempts(task_id, at, status, error, excerpt) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, log.at, log.status, log.error, log.excerpt])?;
    Ok(())
}

fn settle(
    tx: &Connection,
    id: i64,
    settlement: Settlement,
    now: i64,
    deltas: &mut Vec<Delta>,
) -> Result<(), rusqlite::Error> {
    let line: Option<(String, String, String)> = tx
        .prepare_cached(
            "SELECT route, destination, partitionkey FROM tasks WHERE id = ?1 AND state = 'leased'",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((route, destination, partitionkey)) = line else {
        return Ok(()); // already settled, or replayed meanwhile
    };
    let key = format!("{route}/{destination}");
    match settlement {
        Settlement::Ack => {
            tx.prepare_cached("DELETE FROM tasks WHERE id = ?1")?
                .execute([id])?;
            tx.prepare_cached("DELETE FROM attempts WHERE task_id = ?1")?
                .execute([id])?;
            promote(tx, &route, &destination, &partitionkey)?;
            deltas.push((key, partitionkey, -1));
        }
        Settlement::Retry { after, log } => {
            log_attempt(tx, id, &log)?;
            tx.prepare_cached(
                "UPDATE tasks SET state = 'ready', lease_until = NULL, attempts = attempts + 1,
                                  next_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, now.saturating_add(ms(after))])?;
        }
        Settlement::Defer { after } => {
            tx.prepare_cached(
                "UPDATE tasks SET state = 'ready', lease_until = NULL, next_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, now.saturating_add(ms(after))])?;
        }
        Settlement::Dead { log } => {
            log_attempt(tx, id, &log)?;
            tx.prepare_cached(
                "UPDATE tasks SET state = 'dead', lease_until = NULL, attempts = attempts + 1,
                                  dead_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, now])?;
            promote(tx, &route, &destination, &partitionkey)?;
            deltas.push((key, partitionkey, -1));
        }
    }
    Ok(())
}

fn dead_letters(
    tx: &Connection,
    id: Option<i64>,
    limit: usize,
) -> Result<Vec<DeadLetter>, rusqlite::Error> {
    let mut select = tx.prepare_cached(&format!(
        "SELECT {COLUMNS}, dead_at
         FROM tasks WHERE state = 'dead' AND (?1 IS NULL OR id = ?1) ORDER BY id LIMIT ?2"
    ))?;
    let rows: Vec<((i64, Message, u32, i64), i64)> = select
        .query_map(params![id, limit as i64], |r| {
            Ok((row_to_message(r)?, r.get(9)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut logs = tx.prepare_cached(
        "SELECT at, status, error, excerpt FROM attempts WHERE task_id = ?1 ORDER BY at, rowid",
    )?;
    rows.into_iter()
        .map(|((id, message, attempts, created_at), dead_at)| {
            let attempt_log = logs
                .query_map([id], |r| {
                    Ok(AttemptLog {
                        at: r.get(0)?,
                        status: r.get(1)?,
                        error: r.get(2)?,
                        excerpt: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(DeadLetter {
                id,
                message,
                attempts,
                created_at,
                dead_at,
                attempt_log,
            })
        })
        .collect()
}

fn replay(
    tx: &Connection,
    id: Option<i64>,
    now: i64,
    deltas: &mut Vec<Delta>,
) -> Result<usize, QueueError> {
    let mut select = tx.prepare_cached(
        "SELECT id, route, destination, partitionkey FROM tasks
         WHERE state = 'dead' AND (?1 IS NULL OR id = ?1) ORDER BY id",
    )?;
    let rows: Vec<(i64, String, String, String)> = select
        .query_map(params![id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    if rows.is_empty()
        && let Some(id) = id
    {
        return Err(QueueError::NotFound(id));
    }
    for (task, route, destination, partitionkey) in &rows {
        // Behind whatever its line still holds: a replay never jumps the queue.
        let live = tx
            .prepare_cached(
                "SELECT 1 FROM tasks WHERE route = ?1 AND destination = ?2 AND partitionkey = ?3
                   AND state != 'dead' LIMIT 1",
            )?
            .exists(params![route, destination, partitionkey])?;
        tx.execute(
            "UPDATE tasks SET state = ?3, attempts = 0, next_at = ?2, dead_at = NULL WHERE id = ?1",
            params![task, now, if live { "waiting" } else { "ready" }],
        )?;
        tx.execute("DELETE FROM attempts WHERE task_id = ?1", [task])?;
        deltas.push((format!("{route}/{destination}"), partitionkey.clone(), 1));
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeliveryConfig;
    use crate::delivery::{HttpRequest, Store, suite};

    fn open(path: &Path) -> Store {
        SqliteQueue::open(
            path,
            DeliveryConfig::default().dedupe_window,
            DeliveryConfig::default().max_queue_depth,
        )
        .map(|q| {
            let q = std::sync::Arc::new(q);
            let closer = q.clone();
            let mut store = Store::new(q.clone(), q.clone(), q.clone(), move || closer.close());
            store.settings = Some(q);
            store
        })
        .unwrap()
    }

    #[tokio::test]
    async fn passes_the_queue_suite() {
        for run in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("q.db");
            match run {
                0 => suite::order_dedupe_and_dead_letters(&open(&path)).await,
                1 => suite::deferral_keeps_order_and_budget(&open(&path)).await,
                _ => suite::leases_and_dedupe_survive_a_restart(|| async { open(&path) }).await,
            }
        }
    }

    /// A store keeping an hour of archive, at most `max_bytes`.
    fn archived(path: &Path, max_bytes: u64) -> SqliteQueue {
        SqliteQueue::open_archived(
            path,
            Duration::from_secs(3600),
            1000,
            ArchiveLimits {
                retention_ms: 3_600_000,
                max_bytes,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn passes_the_archive_suite() {
        let dir = tempfile::tempdir().unwrap();
        let q = archived(&dir.path().join("q.db"), 1 << 20);
        crate::delivery::archive::suite::reads_by_time_and_key(&q).await;
    }

    #[tokio::test]
    async fn an_archived_enqueue_marks_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::delivery::open_store(
            &crate::config::StoreConfig::Sqlite {
                path: dir.path().join("q.db"),
            },
            &DeliveryConfig::default(),
            &crate::config::ArchiveConfig::default(),
            false,
        )
        .await
        .unwrap();
        crate::delivery::archive::suite::archived_enqueue_marks_duplicates(&store).await;
    }

    /// A record that cannot be read (written by hand, or damaged) is skipped with a warning;
    /// the others are still read.
    #[tokio::test]
    async fn an_unreadable_archive_record_is_skipped() {
        use crate::delivery::archive::Query;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let q = archived(&path, 1 << 20);
        crate::delivery::archive::suite::reads_by_time_and_key(&q).await;
        let all = Query {
            since: 0,
            limit: usize::MAX,
            ..Query::default()
        };
        let before = q.read(all.clone()).await.unwrap().len();
        let raw = Connection::open(&path).unwrap();
        for junk in [
            "not json",
            "{\"kind\":\"nothing\"}",
            "{\"kind\":\"outcome\"}",
            "\u{0}",
        ] {
            raw.execute(
                "INSERT INTO archive(at, record) VALUES (?1, ?2)",
                params![now_ms(), junk],
            )
            .unwrap();
        }
        assert_eq!(q.read(all).await.unwrap().len(), before);
    }

    /// The archive keeps to its size limit: the oldest records go first, their keys with them.
    #[tokio::test]
    async fn the_archive_is_pruned_by_size() {
        use crate::delivery::archive::{Outcome, Query};
        let dir = tempfile::tempdir().unwrap();
        let q = archived(&dir.path().join("q.db"), 64 * 1024);
        let now = now_ms();
        for chunk in 0..20 {
            let records = (0..100)
                .map(|n| {
                    Record::Outcome(Outcome {
                        at: now,
                        route: "r".into(),
                        destination: "d".into(),
                        event_id: format!("e{chunk}-{n}"),
                        partitionkey: format!("call-{chunk}"),
                        outcome: "delivered".into(),
                        attempt: 1,
                        status: Some(200),
                        detail: Some("x".repeat(100)),
                    })
                })
                .collect();
            q.append(records).await.unwrap();
        }
        let kept = q
            .read(Query {
                since: 0,
                limit: usize::MAX,
                ..Query::default()
            })
            .await
            .unwrap();
        let bytes: usize = kept
            .iter()
            .map(|a| serde_json::to_string(&a.record).unwrap().len())
            .sum();
        assert!(bytes <= 64 * 1024, "{bytes} bytes kept");
        assert!(
            kept.len() > 100,
            "only the oldest went: {} kept",
            kept.len()
        );
        let oldest = q
            .read(Query {
                since: 0,
                key: Some("call-0".into()),
                limit: usize::MAX,
                ..Query::default()
            })
            .await
            .unwrap();
        assert!(
            oldest.is_empty(),
            "the first records and their keys are gone"
        );
        let newest = q
            .read(Query {
                since: 0,
                key: Some("call-19".into()),
                limit: usize::MAX,
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(newest.len(), 100);
    }

    /// The archive keeps to its retention: a record older than it goes at the writer's
    /// sweep (the first transaction sweeps, then one a minute), its index key with it.
    #[tokio::test]
    async fn the_archive_is_pruned_by_age() {
        use crate::delivery::archive::{Outcome, Query};
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteQueue::open_archived(
            &dir.path().join("q.db"),
            Duration::from_secs(3600),
            1000,
            ArchiveLimits {
                retention_ms: 60_000,
                max_bytes: 1 << 20,
            },
        )
        .unwrap();
        let now = now_ms();
        let outcome = |at: i64, call: &str| {
            Record::Outcome(Outcome {
                at,
                route: "r".into(),
                destination: "d".into(),
                event_id: format!("e-{call}"),
                partitionkey: call.into(),
                outcome: "delivered".into(),
                attempt: 1,
                status: Some(200),
                detail: None,
            })
        };
        q.append(vec![
            outcome(now - 120_000, "call-old"),
            outcome(now - 1_000, "call-new"),
        ])
        .await
        .unwrap();
        let read = |key: Option<&str>| {
            q.read(Query {
                since: 0,
                key: key.map(str::to_owned),
                limit: usize::MAX,
                ..Query::default()
            })
        };
        let kept = read(None).await.unwrap();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].record.at(), now - 1_000);
        assert!(read(Some("call-old")).await.unwrap().is_empty());
        assert_eq!(read(Some("call-new")).await.unwrap().len(), 1);
        let raw = Connection::open(dir.path().join("q.db")).unwrap();
        let keys: i64 = raw
            .query_row("SELECT count(*) FROM archive_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(keys, 1, "the old record's key went with it");
    }

    /// A store written by callgate 0.1 (schema 1, v1 records, every live row `ready`) opens,
    /// keeps its per-call order and delivers its messages.
    #[tokio::test]
    async fn a_version_1_store_still_delivers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema', '1');
                 CREATE TABLE tasks(
                   id INTEGER PRIMARY KEY AUTOINCREMENT,
                   route TEXT NOT NULL, destination TEXT NOT NULL, partition TEXT NOT NULL,
                   event_id TEXT NOT NULL, event_type TEXT NOT NULL, record TEXT NOT NULL,
                   state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                   next_at INTEGER NOT NULL, lease_until INTEGER, created_at INTEGER NOT NULL,
                   dead_at INTEGER);
                 CREATE TABLE attempts(task_id INTEGER NOT NULL, at INTEGER NOT NULL,
                   status INTEGER, error TEXT, excerpt TEXT);
                 CREATE TABLE dedupe(key TEXT PRIMARY KEY, seen_at INTEGER NOT NULL);",
            )
            .unwrap();
            for (n, state) in [(1, "leased"), (2, "ready"), (3, "ready")] {
                let record = format!(
                    r#"{{"v":1,"method":"POST","url":"http://127.0.0.1:9/","headers":[["content-type","application/json"]],"body":"{{\"n\":{n}}}"}}"#
                );
                conn.execute(
                    "INSERT INTO tasks(route, destination, partition, event_id, event_type,
                                       record, state, next_at, created_at)
                     VALUES ('r', 'd', 'call', ?1, 'call.connected', ?2, ?3, 0, 0)",
                    params![format!("e{n}"), record, state],
                )
                .unwrap();
            }
        }
        let store = open(&path);
        assert_eq!(store.producer.depth("r", "d"), 3);
        let mut got = Vec::new();
        loop {
            let leased = store.consumer.lease(10).await.unwrap();
            if leased.is_empty() {
                break;
            }
            assert_eq!(leased.len(), 1, "one call, one head at a time");
            let l = leased.into_iter().next().unwrap();
            let Request::Http(HttpRequest { body, url, .. }) = &l.message.request else {
                panic!("an HTTP message was stored");
            };
            assert_eq!(url, "http://127.0.0.1:9/");
            got.push((l.message.event_id.clone(), body.clone().unwrap()));
            store
                .consumer
                .settle(l.lease, Settlement::Ack)
                .await
                .unwrap();
        }
        assert_eq!(
            got,
            [
                ("e1".to_string(), r#"{"n":1}"#.to_string()),
                ("e2".into(), r#"{"n":2}"#.into()),
                ("e3".into(), r#"{"n":3}"#.into())
            ]
        );
        assert_eq!(store.producer.total_depth(), 0);
        store.close();
    }
}
