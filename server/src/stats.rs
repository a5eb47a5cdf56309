//! Server-wide counters and the registry of connected clients.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

/// Counters shown by INFO.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted since start.
    pub connections_received: AtomicU64,
    /// Connections refused by `maxclients`.
    pub rejected_connections: AtomicU64,
    /// Commands executed.
    pub commands_processed: AtomicU64,
    /// Reads that found a value.
    pub keyspace_hits: AtomicU64,
    /// Reads that found none.
    pub keyspace_misses: AtomicU64,
    /// Protocol errors that closed a connection.
    pub protocol_errors: AtomicU64,
}

impl ServerStats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Zeroes the counters (CONFIG RESETSTAT).
    pub fn reset(&self) {
        for counter in [
            &self.connections_received,
            &self.rejected_connections,
            &self.commands_processed,
            &self.keyspace_hits,
            &self.keyspace_misses,
            &self.protocol_errors,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// What CLIENT LIST / CLIENT INFO show about one connection.
#[derive(Debug)]
pub struct ClientEntry {
    /// CLIENT ID.
    pub id: u64,
    /// The client's address.
    pub addr: SocketAddr,
    /// Our address of the connection.
    pub local_addr: SocketAddr,
    /// When it connected.
    pub connected_at: Instant,
    /// Milliseconds since `connected_at` of the last command.
    pub last_active_ms: AtomicU64,
    /// Protocol version (2 or 3).
    pub resp: AtomicU8,
    /// CLIENT SETNAME / SETINFO values.
    pub names: Mutex<ClientNames>,
}

/// The names a client gave itself.
#[derive(Debug, Default, Clone)]
pub struct ClientNames {
    /// CLIENT SETNAME.
    pub name: String,
    /// CLIENT SETINFO LIB-NAME.
    pub lib_name: String,
    /// CLIENT SETINFO LIB-VER.
    pub lib_ver: String,
}

impl ClientEntry {
    /// Marks the client active now.
    pub fn touch(&self) {
        let ms = self.connected_at.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// The client's names.
    pub fn names(&self) -> ClientNames {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the client's names.
    pub fn update_names(&self, change: impl FnOnce(&mut ClientNames)) {
        change(&mut self.names.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// One line of CLIENT LIST.
    pub fn describe(&self) -> String {
        let age = self.connected_at.elapsed().as_secs();
        let idle_ms = (self.connected_at.elapsed().as_millis() as u64)
            .saturating_sub(self.last_active_ms.load(Ordering::Relaxed));
        let names = self.names();
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 \
             qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r \
             cmd=client user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.local_addr,
            names.name,
            age,
            idle_ms / 1000,
            self.resp.load(Ordering::Relaxed),
            names.lib_name,
            names.lib_ver,
        )
    }
}

/// The connected clients.
#[derive(Debug, Default)]
pub struct Clients {
    next_id: AtomicU64,
    connected: AtomicUsize,
    entries: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
}

impl Clients {
    /// Registers a connection if fewer than `max` are connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        local_addr: SocketAddr,
        max: usize,
    ) -> Option<Arc<ClientEntry>> {
        if self.connected.fetch_add(1, Ordering::AcqRel) >= max {
            self.connected.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let entry = Arc::new(ClientEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            addr,
            local_addr,
            connected_at: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            resp: AtomicU8::new(2),
            names: Mutex::new(ClientNames::default()),
        });
        self.lock().insert(entry.id, entry.clone());
        Some(entry)
    }

    /// Forgets a closed connection.
    pub fn unregister(&self, id: u64) {
        if self.lock().remove(&id).is_some() {
            self.connected.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// How many clients are connected.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Acquire)
    }

    /// Every connected client, by id.
    pub fn all(&self) -> Vec<Arc<ClientEntry>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ClientEntry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
