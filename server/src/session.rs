//! One client's session: protocol version, authentication, names,
//! MULTI/EXEC queue and WATCH, and the commands that act on them.

use std::{
    future::Future,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cluster::{
    runtime::trace::{self, ReplicaCall},
    version::VersionVector,
};
use futures_util::{stream::FuturesOrdered, StreamExt};
use resp::{
    command::{ClientCmd, Hello},
    Command, CommandError, Protocol, Reply,
};

use crate::{
    commands,
    info::REDIS_COMPAT_VERSION,
    metrics::Outcome,
    state::{now_ms, ServerState},
    stats::{ClientEntry, ServerStats},
};

/// Most commands one MULTI may queue (bounds a client's memory).
const MAX_QUEUED: usize = 100_000;

/// What the connection does after a reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep serving.
    Continue,
    /// Close after flushing the reply (QUIT).
    Close,
    /// Close without this reply (SHUTDOWN: clients expect the connection
    /// to drop, as Redis does).
    CloseSilently,
}

type Parsed = (Option<usize>, Result<Command, CommandError>);

/// Per-connection state.
pub struct Session {
    state: Arc<ServerState>,
    client: Arc<ClientEntry>,
    /// Protocol replies are encoded with.
    pub protocol: Protocol,
    authenticated: bool,
    queue: Option<Vec<Command>>,
    queue_failed: bool,
    watched: Vec<(Bytes, VersionVector)>,
}

impl Session {
    /// A new session for a registered client.
    pub fn new(state: Arc<ServerState>, client: Arc<ClientEntry>) -> Session {
        let authenticated = state.config().requirepass.is_empty();
        Session {
            state,
            client,
            protocol: Protocol::Resp2,
            authenticated,
            queue: None,
            queue_failed: false,
            watched: Vec::new(),
        }
    }

    /// Handles the requests of one pipelined batch, replies in order.
    ///
    /// On a cluster node, when every request is a data command on one key,
    /// the keys are distinct and no transaction is open, the commands run
    /// concurrently: each may wait for replica round trips, and overlapping
    /// them is what makes pipelining pay off on a cluster. Commands on
    /// distinct keys do not observe each other, so the replies are those of
    /// running them one by one (Dynamo orders nothing across keys). Anything
    /// else, and every batch on a single node, runs in order, one at a time.
    pub async fn handle_batch(&mut self, requests: Vec<Vec<Bytes>>) -> Vec<(Reply, Flow)> {
        let parsed: Vec<(Vec<Bytes>, Parsed)> = requests
            .into_iter()
            .map(|request| {
                let parsed = Command::parse_indexed(&request);
                (request, parsed)
            })
            .collect();
        // On one node every command finishes without waiting, so running
        // them in order costs nothing, and skips moving large futures around.
        let clustered = self.state.coordinator.node().is_some();
        if clustered && !parsed.is_empty() && self.queue.is_none() && self.authenticated {
            let single_key = |p: &Parsed| matches!(&p.1, Ok(c) if c.single_key().is_some());
            // A lone command needs no set of keys (this runs per request).
            let independent = if let [(_, parsed)] = &parsed[..] {
                single_key(parsed)
            } else {
                let mut keys = std::collections::HashSet::with_capacity(parsed.len());
                parsed.iter().all(|(_, (_, p))| {
                    matches!(p, Ok(c) if c.single_key().is_some_and(|k| keys.insert(k.clone())))
                })
            };
            if independent {
                let now = now_ms();
                // A lone GET or SET too: its future is much smaller than a
                // general command's (the node batches it with other
                // clients' lone requests).
                let parsed = match self.run_together(parsed, now).await {
                    Ok(replies) => {
                        let stats = &self.state.stats.commands_processed;
                        stats.fetch_add(replies.len() as u64, Ordering::Relaxed);
                        return replies;
                    }
                    Err(parsed) if parsed.len() == 1 => return self.run_each(parsed).await,
                    Err(parsed) => parsed,
                };
                let stats = &self.state.stats.commands_processed;
                stats.fetch_add(parsed.len() as u64, Ordering::Relaxed);
                let state = &self.state;
                let this = &*self;
                // FuturesOrdered polls only the commands that were woken
                // (join_all of a short list polls all of them on every wake),
                // and gives the replies in request order.
                let mut runs = FuturesOrdered::new();
                for (request, (index, command)) in parsed {
                    let Ok(command) = command else { continue };
                    runs.push_back(async move {
                        let started = Instant::now();
                        let (reply, calls) =
                            this.traced(commands::execute(state, command, now)).await;
                        this.measured(index, &request, &reply, started.elapsed(), &calls);
                        (reply, Flow::Continue)
                    });
                }
                return runs.collect().await;
            }
        }
        self.run_each(parsed).await
    }

    /// Runs commands one after the other (a MULTI, a single node, commands
    /// that depend on each other).
    async fn run_each(&mut self, parsed: Vec<(Vec<Bytes>, Parsed)>) -> Vec<(Reply, Flow)> {
        let mut out = Vec::with_capacity(parsed.len());
        for (request, (index, command)) in parsed {
            let started = Instant::now();
            let ((reply, flow), calls) = if self.tracing() {
                trace::traced(self.handle_parsed(command)).await
            } else {
                (self.handle_parsed(command).await, Vec::new())
            };
            self.measured(index, &request, &reply, started.elapsed(), &calls);
            let close = flow != Flow::Continue;
            out.push((reply, flow));
            if close {
                break;
            }
        }
        out
    }

    /// A batch of only GETs, or only plain SETs, runs as one: the quorums
    /// of all its keys send their messages to each replica together (see
    /// `cluster::runtime::driver`). Any other batch is handed back.
    async fn run_together(
        &self,
        parsed: Vec<(Vec<Bytes>, Parsed)>,
        now: u64,
    ) -> Result<Vec<(Reply, Flow)>, Vec<(Vec<Bytes>, Parsed)>> {
        let all_gets = parsed
            .iter()
            .all(|(_, (_, p))| matches!(p, Ok(Command::Get(_))));
        let all_sets = parsed
            .iter()
            .all(|(_, (_, p))| matches!(p, Ok(Command::Set(cmd)) if cmd.is_plain()));
        if !all_gets && !all_sets {
            return Err(parsed);
        }
        let mut requests = Vec::with_capacity(parsed.len());
        let mut keys = Vec::new();
        let mut sets = Vec::new();
        for (request, (index, command)) in parsed {
            match command {
                Ok(Command::Get(key)) => keys.push(key),
                Ok(Command::Set(cmd)) => sets.push(cmd),
                _ => unreachable!("checked above"),
            }
            requests.push((request, index));
        }
        let started = Instant::now();
        let state = &self.state;
        let (replies, calls) = if all_gets {
            self.traced(commands::get_many(state, &keys, now)).await
        } else {
            self.traced(commands::set_many(state, sets, now)).await
        };
        let elapsed = started.elapsed();
        Ok(requests
            .into_iter()
            .zip(replies)
            .map(|((request, index), reply)| {
                self.measured(index, &request, &reply, elapsed, &calls);
                (reply, Flow::Continue)
            })
            .collect())
    }

    /// Runs a data command, with per-replica timing when the slow log is on.
    async fn traced<T>(&self, run: impl Future<Output = T>) -> (T, Vec<ReplicaCall>) {
        if self.tracing() {
            trace::traced(run).await
        } else {
            (run.await, Vec::new())
        }
    }

    /// Whether commands note the replicas they wait on (for the slow log).
    fn tracing(&self) -> bool {
        self.state.slowlog.enabled() && self.state.coordinator.node().is_some()
    }

    /// Records a finished command in the metrics and, if slow, the slow log.
    fn measured(
        &self,
        index: Option<usize>,
        request: &[Bytes],
        reply: &Reply,
        elapsed: Duration,
        calls: &[ReplicaCall],
    ) {
        self.state
            .metrics
            .observe(index, Outcome::of(reply), elapsed);
        self.state
            .slowlog
            .consider(request, elapsed, &self.client, calls);
    }

    async fn handle_parsed(&mut self, parsed: Result<Command, CommandError>) -> (Reply, Flow) {
        ServerStats::bump(&self.state.stats.commands_processed);
        let command = match parsed {
            Ok(command) => command,
            Err(error) => {
                if self.queue.is_some() {
                    self.queue_failed = true;
                }
                return (command_error(&error), Flow::Continue);
            }
        };
        if !self.authenticated && !command.allowed_before_auth() {
            return (
                Reply::Error("NOAUTH Authentication required.".into()),
                Flow::Continue,
            );
        }
        if let Some(queue) = &mut self.queue {
            if !matches!(
                command,
                Command::Exec
                    | Command::Discard
                    | Command::Multi
                    | Command::Watch(_)
                    | Command::Quit
                    | Command::Reset
            ) {
                if queue.len() >= MAX_QUEUED {
                    self.queue_failed = true;
                    return (
                        Reply::err(format!("too many queued commands (max {MAX_QUEUED})")),
                        Flow::Continue,
                    );
                }
                queue.push(command);
                return (Reply::Simple("QUEUED".into()), Flow::Continue);
            }
        }
        match command {
            Command::Quit => (Reply::Ok, Flow::Close),
            Command::Shutdown { abort: false } if self.queue.is_none() => {
                tracing::info!(client = %self.client.addr, "SHUTDOWN requested");
                self.state.shutdown_requested.notify_one();
                (Reply::Ok, Flow::CloseSilently)
            }
            other => (self.execute(other).await, Flow::Continue),
        }
    }

    async fn execute(&mut self, command: Command) -> Reply {
        match command {
            Command::Multi if self.queue.is_some() => Reply::err("MULTI calls can not be nested"),
            Command::Multi => {
                self.queue = Some(Vec::new());
                self.queue_failed = false;
                Reply::Ok
            }
            Command::Exec => self.exec().await,
            Command::Discard => match self.queue.take() {
                Some(_) => {
                    self.watched.clear();
                    Reply::Ok
                }
                None => Reply::err("DISCARD without MULTI"),
            },
            Command::Watch(_) if self.queue.is_some() => {
                Reply::err("WATCH inside MULTI is not allowed")
            }
            Command::Watch(keys) => self.watch(keys).await,
            Command::Unwatch => {
                self.watched.clear();
                Reply::Ok
            }
            other => self.execute_simple(other).await,
        }
    }

    /// Commands that may also run inside EXEC.
    async fn execute_simple(&mut self, command: Command) -> Reply {
        let state = self.state.clone();
        match command {
            Command::Hello(hello) => self.hello(hello),
            Command::Auth { username, password } => self.auth(username.as_deref(), &password),
            Command::Select(0) => Reply::Ok,
            Command::Select(_) => {
                Reply::err("DB index is out of range (this server has one database, 0)")
            }
            Command::Reset => self.reset(),
            Command::Client(cmd) => self.client(cmd),
            Command::Quit => Reply::Ok,
            Command::Shutdown { abort: true } => Reply::err("No shutdown in progress."),
            Command::Shutdown { abort: false } => {
                Reply::err("SHUTDOWN cannot run inside a transaction")
            }
            Command::Slowlog(cmd) => self.state.slowlog.command(cmd),
            Command::Multi
            | Command::Exec
            | Command::Discard
            | Command::Watch(_)
            | Command::Unwatch => Reply::err("command not allowed inside a transaction"),
            other => commands::execute(&state, other, now_ms()).await,
        }
    }

    /// EXEC: runs the queue in order. Not isolated: other clients' commands
    /// may interleave (Dynamo has no multi-key transactions).
    async fn exec(&mut self) -> Reply {
        let Some(queue) = self.queue.take() else {
            return Reply::err("EXEC without MULTI");
        };
        let watched = std::mem::take(&mut self.watched);
        if self.queue_failed {
            self.queue_failed = false;
            return Reply::Error(
                "EXECABORT Transaction discarded because of previous errors.".into(),
            );
        }
        for (key, context) in &watched {
            match self.state.coordinator.get(key).await {
                Ok(now) if now.context() == context => {}
                _ => return Reply::NilArray,
            }
        }
        let mut replies = Vec::with_capacity(queue.len());
        for command in queue {
            replies.push(self.execute_simple(command).await);
        }
        Reply::Array(replies)
    }

    /// WATCH: remembers each key's causal context; EXEC aborts if any changed.
    /// Best effort: the check and the queued writes are not atomic.
    async fn watch(&mut self, keys: Vec<Bytes>) -> Reply {
        for key in keys {
            match self.state.coordinator.get(&key).await {
                Ok(siblings) => self.watched.push((key, siblings.context().clone())),
                Err(e) => return commands::cluster_error(&e),
            }
        }
        Reply::Ok
    }

    fn hello(&mut self, hello: Hello) -> Reply {
        let protocol = match hello.protover {
            None => self.protocol,
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Reply::Error("NOPROTO unsupported protocol version".into()),
        };
        if let Some((user, pass)) = &hello.auth {
            let reply = self.auth(Some(user), pass);
            if reply.is_error() {
                return reply;
            }
        }
        if !self.authenticated {
            return Reply::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
        }
        if let Some(name) = hello.setname {
            if let Err(e) = self.set_name(&name) {
                return e;
            }
        }
        self.protocol = protocol;
        let version = if protocol == Protocol::Resp3 { 3 } else { 2 };
        self.client.resp.store(version, Ordering::Relaxed);
        let text = |s: &str| Reply::bulk(s.to_string());
        Reply::Map(vec![
            (text("server"), text("redis")),
            (text("version"), text(REDIS_COMPAT_VERSION)),
            (text("proto"), Reply::Int(i64::from(version))),
            (text("id"), Reply::Int(self.client.id as i64)),
            (text("mode"), text("standalone")),
            (text("role"), text("master")),
            (text("modules"), Reply::Array(Vec::new())),
        ])
    }

    fn auth(&mut self, username: Option<&[u8]>, password: &[u8]) -> Reply {
        let required = self.state.config().requirepass;
        if required.is_empty() && username.is_some_and(|u| u == b"default") {
            // Without requirepass the default user has no password (Redis's
            // `nopass`), so any password authenticates it.
            self.authenticated = true;
            return Reply::Ok;
        }
        if required.is_empty() {
            return Reply::err("AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
        }
        let user_ok = username.is_none_or(|u| u == b"default");
        if user_ok && password == required.as_bytes() {
            self.authenticated = true;
            Reply::Ok
        } else {
            Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
        }
    }

    fn reset(&mut self) -> Reply {
        self.queue = None;
        self.queue_failed = false;
        self.watched.clear();
        self.protocol = Protocol::Resp2;
        self.client.resp.store(2, Ordering::Relaxed);
        self.client.update_names(|n| n.name.clear());
        self.authenticated = self.state.config().requirepass.is_empty();
        Reply::Simple("RESET".into())
    }

    fn set_name(&mut self, name: &[u8]) -> Result<(), Reply> {
        if name.iter().any(|&b| b <= b' ' || b > b'~') {
            return Err(Reply::err(
                "Client names cannot contain spaces, newlines or special characters.",
            ));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        self.client.update_names(|n| n.name = name);
        Ok(())
    }

    fn client(&mut self, cmd: ClientCmd) -> Reply {
        match cmd {
            ClientCmd::Id => Reply::Int(self.client.id as i64),
            ClientCmd::SetName(name) => self.set_name(&name).map_or_else(|e| e, |_| Reply::Ok),
            ClientCmd::GetName => {
                let name = self.client.names().name;
                if name.is_empty() {
                    Reply::Nil
                } else {
                    Reply::bulk(name)
                }
            }
            ClientCmd::SetInfo { attribute, value } => {
                let value =
                    String::from_utf8_lossy(&value).replace(|c: char| c.is_whitespace(), "-");
                self.client.update_names(|n| match attribute.as_str() {
                    "LIB-NAME" => n.lib_name = value,
                    _ => n.lib_ver = value,
                });
                Reply::Ok
            }
            ClientCmd::Info => Reply::Verbatim(format!("{}\n", self.client.describe())),
            ClientCmd::List => Reply::Verbatim(
                self.state
                    .clients
                    .all()
                    .iter()
                    .map(|c| format!("{}\n", c.describe()))
                    .collect(),
            ),
            ClientCmd::Help => Reply::Array(
                [
                    "CLIENT <subcommand>",
                    "ID",
                    "SETNAME <name>",
                    "GETNAME",
                    "SETINFO <LIB-NAME|LIB-VER> <value>",
                    "INFO",
                    "LIST",
                ]
                .iter()
                .map(|s| Reply::Simple(s.to_string()))
                .collect(),
            ),
        }
    }
}

/// The reply for a command error.
pub fn command_error(error: &CommandError) -> Reply {
    Reply::Error(error.to_string())
}

impl Session {
    /// Marks the client active (for CLIENT LIST's idle time).
    pub fn touch(&self) {
        self.client.touch();
    }
}
