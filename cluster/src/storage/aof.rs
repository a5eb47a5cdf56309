//! [`AofEngine`]: the whole data set in memory, made durable by an
//! append-only log. This is Redis's AOF model, and the Dynamo paper's
//! "in-memory buffer with a persistent backing store".
//!
//! # How it works
//!
//! - Every write appends a record to `aof.log` in the engine's directory,
//!   then changes the in-memory ordered map. Both happen under the log's
//!   lock, so the log's order is the map's order. Reads only take the map's
//!   read lock.
//! - [`Durability::EveryWrite`] syncs the log before a write returns.
//!   [`Durability::Periodic`] keeps records in a buffer that a background
//!   thread writes and syncs every `flush_every_ms`. Metadata writes always
//!   sync.
//! - A restart replays the log. A crash leaves a prefix of it: a torn last
//!   record (cut short, zeros, or a bad CRC-32 on the final record) ends the
//!   replay, and the file is cut there so that later records are not
//!   appended after garbage. A bad record with more data after it is
//!   corruption: the engine refuses to open (as Redis refuses a corrupt AOF)
//!   instead of dropping what follows.
//! - After a failed write to the log, the engine refuses every later write
//!   (as Redis stops accepting writes when its AOF fails). Otherwise a record
//!   written after a torn one would be lost at the next replay.
//! - When the log exceeds [`REWRITE_MIN_BYTES`] and twice the live data, it
//!   is rewritten in the background, as Redis's BGREWRITEAOF: the write that
//!   crosses the line starts a rewrite buffer, and a thread writes the map
//!   to a new file, one record per key, reading it a chunk of keys at a
//!   time under its read lock (writers wait for one chunk at most, never
//!   for a copy of the whole map), and syncs it. Meanwhile writes go on to
//!   the old log and are also kept in the rewrite buffer; at the end, under
//!   the log's lock, the buffer is appended to the new file, which is synced
//!   and renamed over the old one. Replaying the buffer after the chunks
//!   gives every key its last value, whether or not its chunk saw the
//!   writes made during the rewrite. A failed
//!   rewrite leaves the old log, complete, in place. At start a log past
//!   the line is rewritten before the engine opens.
//! - Namespaces are engines of their own in subdirectories `ns-<name>`.
//!
//! Record: `body length u32 LE | CRC-32 of body u32 LE | body`, where body
//! is `op u8 | key length u32 LE | key | value`.
//!
//! # Caveats
//!
//! - Everything is held in memory, plus, while a rewrite runs, the writes
//!   made meanwhile (in the rewrite buffer).
//! - One process per directory: a `LOCK` file is locked for the engine's
//!   life.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{ordered::KeyMap, Durability, Engine, Entry, StorageError};

const LOG_FILE: &str = "aof.log";
const REWRITE_FILE: &str = "aof.log.rewrite";
const LOCK_FILE: &str = "LOCK";
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_CLEAR: u8 = 3;
const OP_META: u8 = 4;
/// Header (length, CRC) plus op and key length.
const RECORD_OVERHEAD: u64 = 13;
/// A record body longer than this is corruption, not data.
const MAX_BODY: u32 = 1 << 30;
/// The log is rewritten only past this size (and twice the live data).
pub const REWRITE_MIN_BYTES: u64 = 64 << 20;
/// Buffer of records not yet written to the file.
const WRITE_BUFFER: usize = 1 << 20;
/// How long `open` waits for a directory another engine still locks.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// An in-memory ordered map persisted by an append-only log.
pub struct AofEngine {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    durability: Durability,
    maps: RwLock<Maps>,
    log: Mutex<Log>,
    /// Set when the engine is dropped, to stop the flusher.
    stopping: Mutex<bool>,
    wake: Condvar,
    rewrite_min_bytes: u64,
    /// The background rewrite's thread, while one runs or until joined.
    rewriter: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

#[derive(Default)]
struct Maps {
    data: KeyMap,
    meta: HashMap<String, Vec<u8>>,
    /// What the live entries would take in a rewritten log.
    live_bytes: u64,
}

struct Log {
    writer: BufWriter<File>,
    /// Bytes in the log, buffered ones included.
    bytes: u64,
    /// Records appended since the last sync.
    unsynced: bool,
    /// A write to the file failed: no more writes are accepted.
    failed: Option<String>,
    /// While a background rewrite runs: the records appended since its copy
    /// of the map was taken, to append to the new file before it replaces
    /// this one.
    rewrite_buffer: Option<Vec<u8>>,
}

fn record_len(key: &[u8], value: &[u8]) -> u64 {
    RECORD_OVERHEAD + key.len() as u64 + value.len() as u64
}

impl AofEngine {
    /// Opens (creating if needed) the engine in `dir` and replays its log.
    pub fn open(dir: &Path, durability: Durability) -> Result<AofEngine, StorageError> {
        AofEngine::open_with(dir, durability, REWRITE_MIN_BYTES)
    }

    /// [`AofEngine::open`] with the log-size threshold of rewrites (tests).
    pub fn open_with(
        dir: &Path,
        durability: Durability,
        rewrite_min_bytes: u64,
    ) -> Result<AofEngine, StorageError> {
        if let Durability::Periodic { flush_every_ms: 0 } = durability {
            return Err(StorageError::Config(
                "flush_every_ms must be positive".into(),
            ));
        }
        let io = |source: io::Error| StorageError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = lock_dir(dir)?;
        let path = dir.join(LOG_FILE);
        let (maps, good_len) = replay(dir, &path)?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        if file_len > good_len {
            tracing::warn!(
                path = %path.display(),
                kept = good_len,
                dropped = file_len - good_len,
                "append-only log ends in a torn or corrupt record: cut there"
            );
            file.set_len(good_len).map_err(io)?;
            file.sync_all().map_err(io)?;
            file = OpenOptions::new().append(true).open(&path).map_err(io)?;
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            durability,
            maps: RwLock::new(maps),
            log: Mutex::new(Log {
                writer: BufWriter::with_capacity(WRITE_BUFFER, file),
                bytes: good_len,
                unsynced: false,
                failed: None,
                rewrite_buffer: None,
            }),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
            rewrite_min_bytes,
            rewriter: Mutex::new(None),
            _lock: lock,
        });
        // Nothing else runs yet: a long log is rewritten in place, now.
        if shared.rewrite_due(&shared.log()) {
            let started = Instant::now();
            let (file, bytes) = shared.rewrite_now().map_err(&io)?;
            let mut log = shared.log();
            log.writer = BufWriter::with_capacity(WRITE_BUFFER, file);
            log.bytes = bytes;
            tracing::info!(
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "append-only log rewritten at start"
            );
        }
        let flusher = match durability {
            Durability::Periodic { flush_every_ms } => {
                let shared = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("aof-flush".into())
                        .spawn(move || shared.flush_periodically(flush_every_ms))
                        .map_err(io)?,
                )
            }
            Durability::EveryWrite => None,
        };
        Ok(AofEngine { shared, flusher })
    }
}

/// Locks `dir/LOCK`, waiting up to [`LOCK_WAIT`] for another engine to let go.
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StorageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked {
                    path: dir.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StorageError::Io {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Replays the log at `path` into maps; returns them and the length of the
/// log's intact prefix. A bad record at the end (cut short, zeros, or a
/// final record whose CRC fails: a write the crash tore) ends the replay; a
/// bad record with intact-looking data after it is corruption, and the
/// engine refuses to open rather than drop what follows.
fn replay(dir: &Path, path: &Path) -> Result<(Maps, u64), StorageError> {
    let mut maps = Maps::default();
    let log = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((maps, 0)),
        Err(source) => {
            return Err(StorageError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut at = 0usize;
    while at < log.len() {
        match parse_record(&log[at..]) {
            Some((used, op, key, value)) => {
                match op {
                    OP_PUT => maps.put(key, value),
                    OP_DELETE => maps.delete(key),
                    OP_CLEAR => maps.clear(),
                    _ => maps.meta_put(&String::from_utf8_lossy(key), value),
                }
                at += used;
            }
            None => {
                let rest = &log[at..];
                let declared = rest
                    .get(0..4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
                let torn = rest.iter().all(|&b| b == 0)
                    || declared.is_none_or(|len| 8 + len >= rest.len());
                if torn {
                    break;
                }
                return Err(StorageError::Corrupt {
                    path: dir.to_path_buf(),
                    detail: format!(
                        "bad record at byte {at} of {} with {} bytes after it; \
                         move the file away to start empty, or cut it at {at} to keep \
                         what precedes",
                        path.display(),
                        rest.len()
                    ),
                });
            }
        }
    }
    Ok((maps, at as u64))
}

/// One intact record at the start of `bytes`: (bytes used, op, key, value).
fn parse_record(bytes: &[u8]) -> Option<(usize, u8, &[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    if !(5..=MAX_BODY).contains(&len) {
        return None;
    }
    let body = bytes.get(8..8 + len as usize)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let op = body[0];
    if !(OP_PUT..=OP_META).contains(&op) {
        return None;
    }
    let key_len = u32::from_le_bytes(body[1..5].try_into().ok()?) as usize;
    let payload = &body[5..];
    if key_len > payload.len() {
        return None;
    }
    let (key, value) = payload.split_at(key_len);
    Some((8 + len as usize, op, key, value))
}

impl Maps {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        let added = record_len(key, value);
        match self.data.insert(key, value.to_vec()) {
            Some(old) => self.live_bytes = self.live_bytes - record_len(key, &old) + added,
            None => self.live_bytes += added,
        }
    }

    fn delete(&mut self, key: &[u8]) {
        if let Some(old) = self.data.remove(key) {
            self.live_bytes -= record_len(key, &old);
        }
    }

    fn clear(&mut self) {
        for (key, value) in std::mem::take(&mut self.data) {
            self.live_bytes -= record_len(&key, &value);
        }
    }

    fn meta_put(&mut self, name: &str, value: &[u8]) {
        let added = record_len(name.as_bytes(), value);
        match self.meta.insert(name.to_string(), value.to_vec()) {
            Some(old) => {
                self.live_bytes = self.live_bytes - record_len(name.as_bytes(), &old) + added
            }
            None => self.live_bytes += added,
        }
    }
}

impl Log {
    /// Appends one record to the buffer (and to the file when it fills).
    fn append(&mut self, op: u8, key: &[u8], value: &[u8]) -> io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(io::Error::other(format!(
                "the append-only log failed earlier ({why}); writes are refused until a restart"
            )));
        }
        let result = write_record(&mut self.writer, op, key, value);
        match &result {
            Ok(()) => {
                self.bytes += record_len(key, value);
                self.unsynced = true;
                if let Some(buffer) = &mut self.rewrite_buffer {
                    // The record was encoded once already: it cannot fail.
                    write_record(buffer, op, key, value)?;
                }
            }
            Err(e) => self.failed = Some(e.to_string()),
        }
        result
    }

    /// Writes the buffer to the file and syncs the file's data. Always
    /// syncs (even with nothing appended since the flusher's last pass): the
    /// flusher clears `unsynced` before its own sync has finished.
    fn sync(&mut self) -> io::Result<()> {
        let result = self
            .writer
            .flush()
            .and_then(|()| self.writer.get_ref().sync_data());
        match &result {
            Ok(()) => self.unsynced = false,
            Err(e) => self.failed = Some(e.to_string()),
        }
        result
    }
}

/// Entries a rewrite reads from the map at a time, under its read lock.
const REWRITE_CHUNK: usize = 1024;

/// Writes a record for each metadata entry, then for each data entry (read
/// a chunk at a time: `next_chunk(from)` gives the entries at or after
/// `from`, at most [`REWRITE_CHUNK`]), to a new file at `path` and syncs it;
/// returns the file and its size.
fn write_snapshot(
    path: &Path,
    meta: &HashMap<String, Vec<u8>>,
    mut next_chunk: impl FnMut(&[u8]) -> Vec<Entry>,
) -> io::Result<(File, u64)> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, File::create(path)?);
    let mut bytes = 0;
    for (name, value) in meta {
        write_record(&mut out, OP_META, name.as_bytes(), value)?;
        bytes += record_len(name.as_bytes(), value);
    }
    let mut from = Vec::new();
    loop {
        let chunk = next_chunk(&from);
        for (key, value) in &chunk {
            write_record(&mut out, OP_PUT, key, value)?;
            bytes += record_len(key, value);
        }
        match chunk.last() {
            Some((last, _)) if chunk.len() == REWRITE_CHUNK => {
                // The smallest key after the last one.
                from.clone_from(last);
                from.push(0);
            }
            _ => break,
        }
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((file, bytes))
}

fn write_record(out: &mut impl Write, op: u8, key: &[u8], value: &[u8]) -> io::Result<()> {
    let key_len = u32::try_from(key.len()).map_err(|_| io::Error::other("key too large"))?;
    let body_len = 5 + key.len() + value.len();
    let body_len = u32::try_from(body_len)
        .ok()
        .filter(|len| *len <= MAX_BODY)
        .ok_or_else(|| io::Error::other("record too large"))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[op]);
    crc.update(&key_len.to_le_bytes());
    crc.update(key);
    crc.update(value);
    out.write_all(&body_len.to_le_bytes())?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.write_all(&[op])?;
    out.write_all(&key_len.to_le_bytes())?;
    out.write_all(key)?;
    out.write_all(value)
}

impl Shared {
    // Each operation is a log append plus a single map change: a panic cannot
    // leave the map half-updated in a way that matters, so poisoned locks
    // are recovered.
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn maps(&self) -> RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|e| e.into_inner())
    }

    fn maps_mut(&self) -> RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|e| e.into_inner())
    }

    fn io(&self, source: io::Error) -> StorageError {
        StorageError::Io {
            path: self.dir.clone(),
            source,
        }
    }

    /// Appends a record, applies `change` to the maps, and makes it as
    /// durable as the engine's durability (or `always_sync`) asks.
    fn write(
        self: &Arc<Self>,
        op: u8,
        key: &[u8],
        value: &[u8],
        always_sync: bool,
        change: impl FnOnce(&mut Maps),
    ) -> Result<(), StorageError> {
        let mut log = self.log();
        log.append(op, key, value).map_err(|e| self.io(e))?;
        change(&mut self.maps_mut());
        if always_sync || self.durability == Durability::EveryWrite {
            log.sync().map_err(|e| self.io(e))?;
        }
        self.maybe_rewrite(&mut log)
    }

    /// Whether the log has grown past the threshold and twice the live
    /// data, with no rewrite running.
    fn rewrite_due(&self, log: &Log) -> bool {
        // Checked on every write: the size test first, so that the map's lock
        // is only taken once the log is big.
        log.bytes > self.rewrite_min_bytes
            && log.rewrite_buffer.is_none()
            && log.bytes > self.maps().live_bytes.saturating_mul(2)
    }

    /// Starts a background rewrite when one is due (see the module notes).
    fn maybe_rewrite(self: &Arc<Self>, log: &mut Log) -> Result<(), StorageError> {
        if !self.rewrite_due(log) {
            return Ok(());
        }
        let mut rewriter = self.rewriter.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(done) = rewriter.take() {
            // The previous rewrite ended (its buffer is gone): reap it.
            let _ = done.join();
        }
        // Only the metadata is copied here. The data is read by the thread
        // a chunk at a time while writes go on: every write from now on is
        // also in the rewrite buffer, which is appended after the chunks, so
        // a chunk that missed a write, or caught it, ends the same once the
        // buffer is replayed over it (records are whole puts and deletes).
        let meta = self.maps().meta.clone();
        log.rewrite_buffer = Some(Vec::new());
        let shared = self.clone();
        let spawned = std::thread::Builder::new()
            .name("aof-rewrite".into())
            .spawn(move || shared.rewrite_in_background(meta));
        match spawned {
            Ok(handle) => *rewriter = Some(handle),
            Err(error) => {
                log.rewrite_buffer = None;
                tracing::warn!(%error, "could not start the append-only log rewrite");
            }
        }
        Ok(())
    }

    /// The rewrite thread: writes the copy, then swaps the files under the
    /// log's lock. On failure the old log stays in use.
    fn rewrite_in_background(&self, meta: HashMap<String, Vec<u8>>) {
        let started = Instant::now();
        let tmp = self.dir.join(REWRITE_FILE);
        let chunks = |from: &[u8]| self.maps().data.scan(from, None, REWRITE_CHUNK);
        let result = write_snapshot(&tmp, &meta, chunks).and_then(|(file, bytes)| {
            let mut log = self.log();
            let swapped = self.swap_in(&mut log, file, bytes);
            log.rewrite_buffer = None;
            swapped
        });
        match result {
            Ok((before, after)) => tracing::info!(
                before,
                after,
                ms = started.elapsed().as_millis() as u64,
                "append-only log rewritten"
            ),
            Err(error) => {
                let _ = std::fs::remove_file(&tmp);
                self.log().rewrite_buffer = None;
                tracing::warn!(dir = %self.dir.display(), %error, "append-only log rewrite failed; the old log stays");
            }
        }
    }

    /// Appends the rewrite buffer to the new file, syncs it and puts it in
    /// place of the log; returns the log's size before and after.
    fn swap_in(&self, log: &mut Log, mut file: File, bytes: u64) -> io::Result<(u64, u64)> {
        if let Some(why) = &log.failed {
            return Err(io::Error::other(format!("the log failed meanwhile: {why}")));
        }
        let buffer = log.rewrite_buffer.take().unwrap_or_default();
        file.write_all(&buffer)?;
        file.sync_data()?;
        drop(file);
        let file = match self.install_rewritten() {
            Ok(file) => file,
            Err(error) => {
                // The rename may have happened: the writer's file may no
                // longer be the log a restart replays, so a later write
                // could be lost. Refuse writes, as after a failed append.
                log.failed = Some(format!("installing the rewritten log: {error}"));
                return Err(error);
            }
        };
        let before = log.bytes;
        // The old writer's unwritten records are in the buffer, so in the
        // new file: dropping it only writes them to the replaced file.
        log.writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        log.bytes = bytes + buffer.len() as u64;
        log.unsynced = false;
        Ok((before, log.bytes))
    }

    /// Rewrites the log from the maps in the caller's thread (at start).
    fn rewrite_now(&self) -> io::Result<(File, u64)> {
        let tmp = self.dir.join(REWRITE_FILE);
        let (file, bytes) = {
            let maps = self.maps();
            write_snapshot(&tmp, &maps.meta, |from| {
                maps.data.scan(from, None, REWRITE_CHUNK)
            })?
        };
        drop(file);
        Ok((self.install_rewritten()?, bytes))
    }

    /// Renames the synced rewrite file over the log, syncs the directory
    /// (so the rename survives a crash) and opens the new log for appending.
    fn install_rewritten(&self) -> io::Result<File> {
        std::fs::rename(self.dir.join(REWRITE_FILE), self.dir.join(LOG_FILE))?;
        File::open(&self.dir)?.sync_all()?;
        OpenOptions::new()
            .append(true)
            .open(self.dir.join(LOG_FILE))
    }

    /// Waits for a running background rewrite to end.
    fn join_rewriter(&self) {
        let handle = self
            .rewriter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// The background flusher of [`Durability::Periodic`].
    fn flush_periodically(&self, every_ms: u64) {
        let every = Duration::from_millis(every_ms);
        let mut stopping = self.stopping.lock().unwrap_or_else(|e| e.into_inner());
        while !*stopping {
            stopping = self
                .wake
                .wait_timeout(stopping, every)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if let Err(error) = self.sync_outside_the_lock() {
                tracing::error!(dir = %self.dir.display(), %error, "append-only log sync failed");
            }
        }
    }

    /// Writes the buffer under the log's lock, then syncs the file without
    /// holding it, so writers do not wait for the disk. (A rewrite may
    /// replace the file meanwhile: the new one was synced when written.)
    fn sync_outside_the_lock(&self) -> io::Result<()> {
        let file = {
            let mut log = self.log();
            if !log.unsynced {
                return Ok(());
            }
            if let Err(e) = log.writer.flush() {
                log.failed = Some(e.to_string());
                return Err(e);
            }
            log.unsynced = false;
            log.writer.get_ref().try_clone()?
        };
        let result = file.sync_data();
        if let Err(e) = &result {
            self.log().failed = Some(e.to_string());
        }
        result
    }
}

impl Drop for AofEngine {
    fn drop(&mut self) {
        *self
            .shared
            .stopping
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        self.shared.join_rewriter();
        if let Err(error) = self.shared.log().sync() {
            tracing::warn!(dir = %self.shared.dir.display(), %error, "final sync of the append-only log failed");
        }
    }
}

impl Engine for AofEngine {
    fn name(&self) -> &'static str {
        "aof"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.shared.maps().data.get(key).cloned())
    }

    fn warm(&self, keys: &[&[u8]]) {
        self.shared.maps().data.warm(keys);
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.shared
            .write(OP_PUT, key, value, false, |maps| maps.put(key, value))
    }

    fn delete(&self, key: &[u8]) -> Result<(), StorageError> {
        if !self.shared.maps().data.contains_key(key) {
            return Ok(());
        }
        self.shared
            .write(OP_DELETE, key, &[], false, |maps| maps.delete(key))
    }

    fn scan_from(&self, start: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        Ok(self.shared.maps().data.scan(start, None, limit))
    }

    fn scan_range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.shared.maps().data.scan(start, Some(end), limit))
    }

    fn count(&self) -> Result<u64, StorageError> {
        Ok(self.shared.maps().data.len() as u64)
    }

    fn clear(&self) -> Result<(), StorageError> {
        self.shared.write(OP_CLEAR, &[], &[], false, Maps::clear)
    }

    fn flush(&self) -> Result<(), StorageError> {
        let shared = &self.shared;
        shared.log().sync().map_err(|e| shared.io(e))
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.shared.maps().meta.get(name).cloned())
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        self.shared
            .write(OP_META, name.as_bytes(), value, true, |maps| {
                maps.meta_put(name, value)
            })
    }

    fn size_bytes(&self) -> u64 {
        self.shared.log().bytes
    }

    fn namespace(&self, name: &str) -> Result<Arc<dyn Engine>, StorageError> {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = self.shared.dir.join(format!("ns-{safe}"));
        Ok(Arc::new(AofEngine::open_with(
            &dir,
            self.shared.durability,
            self.shared.rewrite_min_bytes,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const PERIODIC: Durability = Durability::Periodic { flush_every_ms: 20 };

    #[test]
    fn a_reopened_engine_replays_its_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = AofEngine::open(dir.path(), PERIODIC).unwrap();
            engine.put(b"a", b"1").unwrap();
            engine.put(b"b", b"2").unwrap();
            engine.put(b"a", b"3").unwrap();
            engine.delete(b"b").unwrap();
            engine.meta_put("node_id", b"42").unwrap();
            engine.namespace("hints").unwrap().put(b"h", b"x").unwrap();
        }
        let engine = AofEngine::open(dir.path(), PERIODIC).unwrap();
        assert_eq!(engine.get(b"a").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(engine.get(b"b").unwrap(), None);
        assert_eq!(
            engine.meta_get("node_id").unwrap().as_deref(),
            Some(&b"42"[..])
        );
        assert_eq!(engine.count().unwrap(), 1);
        let hints = engine.namespace("hints").unwrap();
        assert_eq!(hints.get(b"h").unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(engine.get(b"h").unwrap(), None);
    }

    #[test]
    fn a_torn_tail_is_cut_and_later_writes_survive() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = AofEngine::open(dir.path(), Durability::EveryWrite).unwrap();
            engine.put(b"kept", b"yes").unwrap();
            engine.put(b"torn", b"half").unwrap();
        }
        // A crash in the middle of the last record.
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        drop(file);
        {
            let engine = AofEngine::open(dir.path(), Durability::EveryWrite).unwrap();
            assert_eq!(engine.get(b"kept").unwrap().as_deref(), Some(&b"yes"[..]));
            assert_eq!(engine.get(b"torn").unwrap(), None);
            engine.put(b"after", b"ok").unwrap();
        }
        let engine = AofEngine::open(dir.path(), Durability::EveryWrite).unwrap();
        assert_eq!(engine.get(b"after").unwrap().as_deref(), Some(&b"ok"[..]));
        assert_eq!(engine.count().unwrap(), 2);
    }

    #[test]
    fn corruption_before_the_end_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = AofEngine::open(dir.path(), Durability::EveryWrite).unwrap();
            engine.put(b"first", b"1").unwrap();
            engine.put(b"second", b"2").unwrap();
            engine.put(b"third", b"3").unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8 + 5 + 2] ^= 0xff; // inside the first record's key
        std::fs::write(&path, &bytes).unwrap();
        match AofEngine::open(dir.path(), Durability::EveryWrite) {
            Err(StorageError::Corrupt { detail, .. }) => {
                assert!(detail.contains("byte 0"), "{detail}")
            }
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok(_) => panic!("a corrupt log opened"),
        }
        // The file is left as it was, for the operator to look at.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_corrupt_last_record_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = AofEngine::open(dir.path(), Durability::EveryWrite).unwrap();
            engine.put(b"first", b"1").unwrap();
            engine.put(b"second", b"2").unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let engine = AofEngine::open(dir.path(), Durability::EveryWrite).unwrap();
        assert_eq!(engine.get(b"first").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(engine.get(b"second").unwrap(), None);
    }

    /// Every data entry of `engine`, as a map.
    fn everything_in(engine: &AofEngine) -> BTreeMap<Vec<u8>, Vec<u8>> {
        engine
            .scan_from(&[], usize::MAX)
            .unwrap()
            .into_iter()
            .collect()
    }

    #[test]
    fn the_log_is_rewritten_once_mostly_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let threshold = 64 * 1024;
        {
            let engine =
                AofEngine::open_with(dir.path(), Durability::EveryWrite, threshold).unwrap();
            for round in 0..200u32 {
                for key in 0..10u32 {
                    engine
                        .put(&key.to_be_bytes(), &round.to_be_bytes().repeat(16))
                        .unwrap();
                }
            }
            engine.shared.join_rewriter();
            // A rewrite that fell due while another ran (writes go on during
            // one) starts at the next write: make that write, same value.
            let last = 199u32.to_be_bytes().repeat(16);
            engine.put(&0u32.to_be_bytes(), &last).unwrap();
            engine.shared.join_rewriter();
            assert!(
                engine.size_bytes() <= threshold + 2 * 1024,
                "{}",
                engine.size_bytes()
            );
        }
        let engine = AofEngine::open_with(dir.path(), Durability::EveryWrite, threshold).unwrap();
        assert_eq!(engine.count().unwrap(), 10);
        let last = 199u32.to_be_bytes().repeat(16);
        assert_eq!(engine.get(&3u32.to_be_bytes()).unwrap(), Some(last));
    }

    #[test]
    fn writes_made_while_a_rewrite_runs_survive_it() {
        let dir = tempfile::tempdir().unwrap();
        let threshold = 64 * 1024;
        let mut expected = BTreeMap::new();
        {
            let engine = AofEngine::open_with(dir.path(), PERIODIC, threshold).unwrap();
            // Many rounds over 50 keys: rewrites start again and again while
            // the writes (puts, deletes, a clear) go on.
            for round in 0..400u32 {
                for key in 0..50u32 {
                    let key = key.to_be_bytes().to_vec();
                    if (round + 3) % 7 == 0 && key[3] % 5 == 0 {
                        engine.delete(&key).unwrap();
                        expected.remove(&key);
                    } else {
                        let value = round.to_be_bytes().repeat(8);
                        engine.put(&key, &value).unwrap();
                        expected.insert(key, value);
                    }
                }
                if round == 200 {
                    engine.clear().unwrap();
                    expected.clear();
                }
            }
            engine.meta_put("node_id", b"7").unwrap();
            engine.shared.join_rewriter();
            assert!(
                engine.size_bytes() < 400 * 50 * 45,
                "the log was never rewritten: {} bytes",
                engine.size_bytes()
            );
        }
        assert!(!dir.path().join(REWRITE_FILE).exists());
        let engine = AofEngine::open_with(dir.path(), PERIODIC, threshold).unwrap();
        let stored = everything_in(&engine);
        assert_eq!(stored, expected);
        assert_eq!(engine.meta_get("node_id").unwrap(), Some(b"7".to_vec()));
    }

    #[test]
    fn a_rewrite_read_in_many_chunks_while_keys_change_keeps_every_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let threshold = 256 * 1024;
        let mut expected = BTreeMap::new();
        let mut rewrites = 0;
        {
            let engine = AofEngine::open_with(dir.path(), PERIODIC, threshold).unwrap();
            // Cold keys, over several chunks, written once: only the chunked
            // read of the map can carry them into a rewritten log.
            for key in 0..REWRITE_CHUNK as u32 * 4 + 100 {
                let key = [b"cold".as_slice(), &key.to_be_bytes()].concat();
                let value = key.repeat(3);
                engine.put(&key, &value).unwrap();
                expected.insert(key, value);
            }
            // Hot keys rewritten until the log is rewritten several times;
            // now and then a cold key changes or goes, during a rewrite.
            for round in 0..4000u32 {
                let hot = [b"hot".as_slice(), &(round % 64).to_be_bytes()].concat();
                let value = round.to_be_bytes().repeat(8);
                engine.put(&hot, &value).unwrap();
                expected.insert(hot, value);
                if round % 97 == 0 {
                    let cold = [b"cold".as_slice(), &(round * 7 % 4096).to_be_bytes()].concat();
                    if round % 2 == 0 {
                        engine.delete(&cold).unwrap();
                        expected.remove(&cold);
                    } else {
                        engine.put(&cold, b"changed").unwrap();
                        expected.insert(cold, b"changed".to_vec());
                    }
                }
                if round % 50 == 0 && engine.shared.log().rewrite_buffer.is_some() {
                    rewrites += 1;
                }
            }
            engine.shared.join_rewriter();
        }
        assert!(rewrites > 0, "no rewrite overlapped the writes");
        let engine = AofEngine::open_with(dir.path(), PERIODIC, threshold).unwrap();
        let stored = everything_in(&engine);
        assert_eq!(stored.len(), expected.len());
        assert!(
            stored == expected,
            "the rewritten log lost or revived writes"
        );
    }

    #[test]
    fn a_directory_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _engine = AofEngine::open(dir.path(), PERIODIC).unwrap();
        let started = Instant::now();
        match AofEngine::open(dir.path(), PERIODIC) {
            Err(StorageError::Locked { .. }) => {}
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("a second engine opened a directory in use"),
        }
        assert!(started.elapsed() >= LOCK_WAIT);
    }
}
