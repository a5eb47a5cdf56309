//! [`SledEngine`]: the persistent engine, on sled 0.34.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Durability, Engine, Entry, StorageError};

/// Name of the sled tree that holds node metadata.
const META_TREE: &str = "meta";

/// How long [`SledEngine::open`] retries a locked directory before failing.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// A persistent [`Engine`] backed by a sled database directory.
///
/// Data keys live in sled's default tree, metadata in a tree named `"meta"`.
/// sled holds an exclusive lock on the directory while the engine is open.
/// Dropping the engine flushes outstanding writes (and releases the lock once
/// sled's background threads have exited). See the [module docs](super) for
/// the [`Durability`] trade-off and sled's caveats.
pub struct SledEngine {
    db: sled::Db,
    /// The data keys: the default tree, or a namespace's own tree.
    tree: sled::Tree,
    meta: sled::Tree,
    path: PathBuf,
    durability: Durability,
}

impl std::fmt::Debug for SledEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEngine")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl SledEngine {
    /// Open (creating if needed) the sled database in directory `path`.
    ///
    /// `cache_capacity_bytes` bounds sled's in-memory page cache (`None`:
    /// sled's default, 1 GiB). Fails with [`StorageError::Config`] for
    /// `Durability::Periodic { flush_every_ms: 0 }`, and with
    /// [`StorageError::Locked`] if the directory is already open — by another
    /// process or by another live `SledEngine` in this process.
    ///
    /// A locked directory is retried for up to 2 seconds before `Locked` is
    /// returned: after an engine on the same directory is dropped, sled's
    /// background I/O threads can keep the lock for a few milliseconds more,
    /// so an immediate close-then-reopen would otherwise fail spuriously.
    pub fn open(
        path: &Path,
        durability: Durability,
        cache_capacity_bytes: Option<u64>,
    ) -> Result<SledEngine, StorageError> {
        let flush_every_ms = match durability {
            // Every write flushes synchronously; no background flusher needed.
            Durability::EveryWrite => None,
            Durability::Periodic { flush_every_ms: 0 } => {
                return Err(StorageError::Config(
                    "flush_every_ms must be greater than 0".to_string(),
                ))
            }
            Durability::Periodic { flush_every_ms } => Some(flush_every_ms),
        };
        let mut config = sled::Config::new()
            .path(path)
            .flush_every_ms(flush_every_ms)
            .mode(sled::Mode::HighThroughput);
        if let Some(bytes) = cache_capacity_bytes {
            config = config.cache_capacity(bytes);
        }
        // A directory closed a moment ago may still be locked: sled's shared
        // I/O thread pool drops its handle on the file (which holds the lock)
        // only after finishing the last queued write. Wait for that briefly.
        let started = Instant::now();
        let mut backoff = Duration::from_millis(1);
        let db = loop {
            match config.open().map_err(|e| map_err(path, e)) {
                Ok(db) => break db,
                Err(StorageError::Locked { .. }) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        };
        let meta = db.open_tree(META_TREE).map_err(|e| map_err(path, e))?;
        tracing::debug!(
            path = %path.display(),
            ?durability,
            recovered = db.was_recovered(),
            "opened sled storage"
        );
        Ok(SledEngine {
            tree: (*db).clone(),
            db,
            meta,
            path: path.to_path_buf(),
            durability,
        })
    }

    /// The directory this engine was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The durability mode this engine was opened with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    fn err(&self, e: sled::Error) -> StorageError {
        map_err(&self.path, e)
    }

    /// Flush now if every write must be durable before it is acknowledged.
    fn sync_if_every_write(&self) -> Result<(), StorageError> {
        if self.durability == Durability::EveryWrite {
            self.db.flush().map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}

/// Translate a sled error into a [`StorageError`] that names `path`.
fn map_err(path: &Path, e: sled::Error) -> StorageError {
    match e {
        // sled 0.34 reports a failed `try_lock_exclusive` on its `db` file as
        // an `io::ErrorKind::Other` with this message (config.rs, `try_lock`).
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StorageError::Locked {
                path: path.to_path_buf(),
            }
        }
        sled::Error::Io(source) => StorageError::Io {
            path: path.to_path_buf(),
            source,
        },
        sled::Error::Corruption { at, .. } => StorageError::Corrupt {
            path: path.to_path_buf(),
            detail: match at {
                Some(at) => format!("sled detected corruption at {at}"),
                None => "sled detected corruption".to_string(),
            },
        },
        other => StorageError::Engine(format!("sled: {other}")),
    }
}

impl Engine for SledEngine {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .tree
            .get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.tree.insert(key, value).map_err(|e| self.err(e))?;
        self.sync_if_every_write()
    }

    fn delete(&self, key: &[u8]) -> Result<(), StorageError> {
        self.tree.remove(key).map_err(|e| self.err(e))?;
        self.sync_if_every_write()
    }

    fn scan_from(&self, start: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for entry in self.tree.range(start..) {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            out.push((k.to_vec(), v.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn scan_range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        if limit == 0 || start >= end {
            return Ok(out);
        }
        for entry in self.tree.range(start..end) {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            out.push((k.to_vec(), v.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn count(&self) -> Result<u64, StorageError> {
        // `Tree::len` would silently count errors as keys; walk it ourselves.
        let mut n = 0u64;
        for key in self.tree.iter().keys() {
            key.map_err(|e| self.err(e))?;
            n += 1;
        }
        Ok(n)
    }

    fn clear(&self) -> Result<(), StorageError> {
        // Only this engine's tree: the "meta" tree and namespaces stay.
        self.tree.clear().map_err(|e| self.err(e))?;
        self.sync_if_every_write()
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().map(drop).map_err(|e| self.err(e))
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .meta
            .get(name.as_bytes())
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        self.meta
            .insert(name.as_bytes(), value)
            .map_err(|e| self.err(e))?;
        // Metadata is always durable, whatever the data durability mode.
        self.db.flush().map(drop).map_err(|e| self.err(e))
    }

    fn size_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn namespace(&self, name: &str) -> Result<std::sync::Arc<dyn Engine>, StorageError> {
        let tree = self
            .db
            .open_tree(format!("ns:{name}"))
            .map_err(|e| self.err(e))?;
        Ok(std::sync::Arc::new(SledEngine {
            db: self.db.clone(),
            tree,
            meta: self.meta.clone(),
            path: self.path.clone(),
            durability: self.durability,
        }))
    }
}

impl Drop for SledEngine {
    fn drop(&mut self) {
        // sled also flushes when its last tree handle goes away, but doing it
        // here lets us report a failure.
        if let Err(e) = self.db.flush() {
            tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "failed to flush sled storage on close"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;

    const PERIODIC: Durability = Durability::Periodic { flush_every_ms: 50 };

    fn open(path: &Path, durability: Durability) -> SledEngine {
        SledEngine::open(path, durability, Some(16 << 20)).expect("open sled")
    }

    fn key(prefix: &str, i: u32) -> Vec<u8> {
        format!("{prefix}{i:08}").into_bytes()
    }

    fn write_some(e: &SledEngine) {
        for i in 0..500 {
            e.put(&key("k", i), &i.to_le_bytes()).unwrap();
        }
        for i in (0..500).step_by(5) {
            e.delete(&key("k", i)).unwrap();
        }
        e.put(b"empty", b"").unwrap();
        e.meta_put("node_id", b"n1").unwrap();
    }

    fn check_some(e: &SledEngine) {
        assert_eq!(e.count().unwrap(), 401);
        for i in 0..500u32 {
            let want = (i % 5 != 0).then(|| i.to_le_bytes().to_vec());
            assert_eq!(e.get(&key("k", i)).unwrap(), want, "key {i}");
        }
        assert_eq!(e.get(b"empty").unwrap(), Some(vec![]));
        assert_eq!(e.meta_get("node_id").unwrap().as_deref(), Some(&b"n1"[..]));
    }

    #[test]
    fn survives_reopen_every_write_without_explicit_flush() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), Durability::EveryWrite);
        write_some(&e);
        drop(e);
        check_some(&open(dir.path(), Durability::EveryWrite));
    }

    #[test]
    fn survives_reopen_periodic_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), PERIODIC);
        write_some(&e);
        e.flush().unwrap();
        drop(e);
        check_some(&open(dir.path(), PERIODIC));
    }

    #[test]
    fn survives_reopen_periodic_close_flushes() {
        // A long interval: only the flush on drop can have persisted this.
        let dir = tempfile::tempdir().unwrap();
        let slow = Durability::Periodic {
            flush_every_ms: 3_600_000,
        };
        let e = open(dir.path(), slow);
        write_some(&e);
        drop(e);
        check_some(&open(dir.path(), slow));
    }

    #[test]
    fn durability_mode_can_change_between_opens() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), PERIODIC);
        write_some(&e);
        drop(e);
        let e = open(dir.path(), Durability::EveryWrite);
        check_some(&e);
        e.clear().unwrap();
        drop(e);
        // clear persisted, metadata kept
        let e = open(dir.path(), PERIODIC);
        assert_eq!(e.count().unwrap(), 0);
        assert_eq!(e.meta_get("node_id").unwrap().as_deref(), Some(&b"n1"[..]));
    }

    #[test]
    fn repeated_close_and_reopen_in_process() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..10u32 {
            let e = open(dir.path(), PERIODIC);
            assert_eq!(e.count().unwrap(), u64::from(round));
            e.put(&key("r", round), b"x").unwrap();
        }
        assert_eq!(open(dir.path(), PERIODIC).count().unwrap(), 10);
    }

    #[test]
    fn second_open_in_same_process_is_locked_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), PERIODIC);
        first.put(b"k", b"v").unwrap();
        let err = SledEngine::open(dir.path(), PERIODIC, None).unwrap_err();
        assert!(matches!(err, StorageError::Locked { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        // The failed attempt did not disturb the open engine...
        assert_eq!(first.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        first.put(b"k2", b"v2").unwrap();
        drop(first);
        // ...and once it is closed the directory opens again.
        let again = open(dir.path(), PERIODIC);
        assert_eq!(again.get(b"k2").unwrap().as_deref(), Some(&b"v2"[..]));
    }

    #[test]
    fn zero_flush_interval_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = SledEngine::open(dir.path(), Durability::Periodic { flush_every_ms: 0 }, None)
            .unwrap_err();
        assert!(matches!(err, StorageError::Config(_)), "{err:?}");
    }

    #[test]
    fn open_on_a_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"hello").unwrap();
        let err = SledEngine::open(&file, PERIODIC, None).unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[test]
    fn accessors_and_debug() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), Durability::EveryWrite);
        assert_eq!(e.path(), dir.path());
        assert_eq!(e.durability(), Durability::EveryWrite);
        assert_eq!(e.name(), "sled");
        assert!(format!("{e:?}").contains("EveryWrite"));
    }

    // ------------------------------------------------------------------
    // Cross-process tests. The test binary re-runs itself with
    // `--exact <child test> --ignored`; the child test does the work selected
    // by environment variables and reports progress on stdout, one marker per
    // line. Every wait has a timeout and the child is killed when the guard
    // drops, so a failure can never hang the test run.

    const CHILD_TEST: &str = "storage::sled_engine::tests::child_process_helper";
    const ENV_DIR: &str = "CLUSTER_STORAGE_CHILD_DIR";
    const ENV_MODE: &str = "CLUSTER_STORAGE_CHILD_MODE";
    /// How long a child may run, and how long the parent waits for a marker.
    const CHILD_LIFETIME: Duration = Duration::from_secs(60);
    const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

    /// Not a test: the body of the child process for the tests below.
    #[test]
    #[ignore = "helper run by the cross-process tests"]
    fn child_process_helper() {
        let (Ok(dir), Ok(mode)) = (std::env::var(ENV_DIR), std::env::var(ENV_MODE)) else {
            return;
        };
        let dir = Path::new(&dir);
        // libtest has already printed "test <name> ... " without a newline
        println!();
        let deadline = Instant::now() + CHILD_LIFETIME; // in case the parent died
        match mode.as_str() {
            "hold_lock" => {
                let _e = open(dir, PERIODIC);
                println!("READY");
                // hold the engine until the parent closes our stdin (or the deadline)
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || {
                    let _ = std::io::stdin().read_to_end(&mut Vec::new());
                    let _ = tx.send(());
                });
                let _ = rx.recv_timeout(CHILD_LIFETIME);
            }
            "every_write" => {
                let e = open(dir, Durability::EveryWrite);
                let mut i = 0;
                while Instant::now() < deadline {
                    e.put(&key("k", i), &[i as u8; 100]).unwrap();
                    println!("ACK {i}");
                    i += 1;
                }
            }
            "periodic" => {
                let e = open(dir, PERIODIC);
                for i in 0..1000 {
                    e.put(&key("a", i), &[1; 100]).unwrap();
                }
                e.flush().unwrap();
                println!("FLUSHED");
                for i in 0..1000 {
                    e.put(&key("b", i), &[2; 100]).unwrap();
                }
                // many background flush intervals
                std::thread::sleep(Duration::from_millis(1500));
                println!("SETTLED");
                let mut i = 0;
                while Instant::now() < deadline {
                    e.put(&key("c", i), &[3; 100]).unwrap();
                    i += 1;
                }
            }
            other => panic!("unknown child mode {other}"),
        }
    }

    /// A running child process; killed and reaped on drop.
    struct ChildGuard {
        child: Child,
        lines: mpsc::Receiver<String>,
    }

    impl ChildGuard {
        fn spawn(dir: &Path, mode: &str) -> ChildGuard {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    CHILD_TEST,
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(ENV_DIR, dir)
                .env(ENV_MODE, mode)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn child test process");
            let stdout = child.stdout.take().unwrap();
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            ChildGuard { child, lines }
        }

        /// The next line the child printed, or `None` at EOF.
        fn next_line(&self) -> Option<String> {
            match self.lines.recv_timeout(MARKER_TIMEOUT) {
                Ok(line) => Some(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("child process went silent"),
            }
        }

        fn wait_for(&self, marker: &str) {
            while let Some(line) = self.next_line() {
                if line.trim() == marker {
                    return;
                }
            }
            panic!("child exited before printing {marker}");
        }

        /// SIGKILL the child and wait for it: no destructors, no flush.
        fn kill_9(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for ChildGuard {
        fn drop(&mut self) {
            self.kill_9();
        }
    }

    #[test]
    fn open_locked_by_another_process_is_locked_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = ChildGuard::spawn(dir.path(), "hold_lock");
        child.wait_for("READY");
        let err = SledEngine::open(dir.path(), PERIODIC, None).unwrap_err();
        assert!(matches!(err, StorageError::Locked { .. }), "{err:?}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        // let the child close its engine and exit normally
        drop(child.child.stdin.take());
        let deadline = Instant::now() + MARKER_TIMEOUT;
        while child.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        // the lock died with the process
        open(dir.path(), PERIODIC);
    }

    #[test]
    fn every_write_acknowledged_writes_survive_kill_9() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = ChildGuard::spawn(dir.path(), "every_write");
        let ack = |line: &str| {
            line.trim()
                .strip_prefix("ACK ")
                .map(|n| n.parse::<u32>().unwrap())
        };
        let mut last_ack = None;
        while let Some(line) = child.next_line() {
            if let Some(n) = ack(&line) {
                last_ack = Some(n);
                if n == 200 {
                    break;
                }
            }
        }
        child.kill_9();
        // acks the child printed before dying are acknowledged writes too
        while let Some(line) = child.next_line() {
            if let Some(n) = ack(&line) {
                last_ack = Some(n);
            }
        }
        let last_ack = last_ack.expect("child acknowledged nothing");
        let e = open(dir.path(), Durability::EveryWrite);
        for i in 0..=last_ack {
            assert_eq!(
                e.get(&key("k", i)).unwrap(),
                Some(vec![i as u8; 100]),
                "acknowledged write {i} of {last_ack} lost"
            );
        }
    }

    #[test]
    fn periodic_loses_at_most_the_unflushed_tail_on_kill_9() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = ChildGuard::spawn(dir.path(), "periodic");
        child.wait_for("FLUSHED");
        child.wait_for("SETTLED");
        std::thread::sleep(Duration::from_millis(100)); // kill mid-stream of "c" writes
        child.kill_9();

        let e = open(dir.path(), PERIODIC);
        for i in 0..1000 {
            // explicitly flushed
            assert_eq!(e.get(&key("a", i)).unwrap(), Some(vec![1; 100]), "a{i}");
            // written long (many flush intervals) before the kill
            assert_eq!(e.get(&key("b", i)).unwrap(), Some(vec![2; 100]), "b{i}");
        }
        // The unflushed tail may be partly lost, but what survived is a
        // prefix of the write sequence: recovery never leaves holes.
        let c: Vec<_> = e.scan_from(b"c", usize::MAX).unwrap();
        for (n, (k, v)) in c.iter().enumerate() {
            assert_eq!(k, &key("c", n as u32), "hole in recovered writes");
            assert_eq!(v, &vec![3; 100]);
        }
        assert_eq!(e.count().unwrap(), 2000 + c.len() as u64);
    }
}
