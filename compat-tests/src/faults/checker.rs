//! After the nemesis phase: waiting for the healed cluster to recover and
//! converge, then judging what the workloads recorded against what the
//! cluster holds.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::node::{FaultCluster, Node};
use super::workloads::{
    parse_dget, register_key, set_key, BatchHistory, DeleteHistory, Op, RegisterHistory, SetHistory,
};

/// Keys per pipelined batch.
const BATCH: usize = 200;
/// Examples kept per kind of finding.
const MAX_EXAMPLES: usize = 20;

/// Runs `f` on an admin connection to node `i`, then the next nodes, for a
/// few rounds, until one answers.
fn on_any<T>(
    cluster: &FaultCluster,
    first: usize,
    mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
) -> Result<T, String> {
    let mut last = String::new();
    for round in 0..5 {
        for k in 0..cluster.nodes.len() {
            let node = &cluster.nodes[(first + k) % cluster.nodes.len()];
            match node.admin().and_then(|mut con| f(&mut con)) {
                Ok(v) => return Ok(v),
                Err(e) => last = format!("node {}: {e}", node.index),
            }
        }
        std::thread::sleep(Duration::from_millis(200 * (round + 1)));
    }
    Err(last)
}

/// Waits until every node sees every member up, holds no hint and no ring
/// change is in progress. Returns how long it took.
pub fn wait_recovered(cluster: &FaultCluster, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let members = cluster.nodes.len().to_string();
    loop {
        let statuses: Vec<Option<HashMap<String, String>>> =
            cluster.nodes.iter().map(Node::status).collect();
        let digest = statuses[0]
            .as_ref()
            .and_then(|s| s.get("ring_digest").cloned());
        let ok = statuses.iter().all(|s| {
            s.as_ref().is_some_and(|s| {
                s.get("members_up") == Some(&members)
                    && s.get("hints_pending").map(String::as_str) == Some("0")
                    && s.get("transition").map(String::as_str) == Some("none")
                    && s.get("ring_digest") == digest.as_ref()
            })
        });
        if ok {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= timeout {
            let shown: Vec<String> = statuses
                .iter()
                .enumerate()
                .map(|(i, s)| match s {
                    None => format!("node {i}: no answer"),
                    Some(s) => format!(
                        "node {i}: members_up={} hints_pending={} transition={} ring={}",
                        s.get("members_up").map_or("-", String::as_str),
                        s.get("hints_pending").map_or("-", String::as_str),
                        s.get("transition").map_or("-", String::as_str),
                        s.get("ring_digest").map_or("-", String::as_str),
                    ),
                })
                .collect();
            return Err(format!(
                "not recovered within {timeout:?} (all up, no hints, one settled ring): {}",
                shown.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Replica node indices of every key (`DYNAMO OWNERS`, ids mapped to the
/// cluster's node indices).
pub fn owners(
    cluster: &FaultCluster,
    keys: &[String],
) -> Result<HashMap<String, Vec<usize>>, String> {
    let index: HashMap<&str, usize> = cluster
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut owners = HashMap::new();
    for chunk in keys.chunks(BATCH) {
        let batch: Vec<Vec<String>> = on_any(cluster, 0, |con| {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("DYNAMO").arg("OWNERS").arg(key);
            }
            pipe.query(con)
        })?;
        for (key, ids) in chunk.iter().zip(batch) {
            let nodes = ids
                .iter()
                .map(|id| {
                    index
                        .get(id.as_str())
                        .copied()
                        .ok_or_else(|| format!("owner {id} of {key} is not a node of the run"))
                })
                .collect::<Result<Vec<usize>, String>>()?;
            owners.insert(key.clone(), nodes);
        }
    }
    Ok(owners)
}

/// The sorted sibling values node `node` itself stores for each of `keys`
/// (`DYNAMO LOCALGET`).
pub fn local_values(node: &Node, keys: &[String]) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let mut con = node
        .admin()
        .map_err(|e| format!("node {}: {e}", node.index))?;
    let mut values = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("DYNAMO").arg("LOCALGET").arg(key);
        }
        let batch: Vec<(Vec<u8>, Vec<Vec<u8>>)> = pipe
            .query(&mut con)
            .map_err(|e| format!("node {} LOCALGET: {e}", node.index))?;
        values.extend(batch.into_iter().map(|(_, mut v)| {
            v.sort();
            v
        }));
    }
    Ok(values)
}

/// What every replica of every key holds: key -> [(node, sorted values)].
type Holdings = BTreeMap<String, Vec<(usize, Vec<Vec<u8>>)>>;

fn holdings(
    cluster: &FaultCluster,
    keys: &[String],
    owners: &HashMap<String, Vec<usize>>,
) -> Result<Holdings, String> {
    let mut held: Holdings = BTreeMap::new();
    for node in &cluster.nodes {
        let mine: Vec<String> = keys
            .iter()
            .filter(|k| owners.get(*k).is_some_and(|o| o.contains(&node.index)))
            .cloned()
            .collect();
        for (key, values) in mine.iter().zip(local_values(node, &mine)?) {
            held.entry(key.clone())
                .or_default()
                .push((node.index, values));
        }
    }
    Ok(held)
}

/// `node 0: 2 siblings (1234 bytes)` per replica, for a diverged key.
fn describe_holding(replicas: &[(usize, Vec<Vec<u8>>)]) -> String {
    replicas
        .iter()
        .map(|(node, values)| {
            let bytes: usize = values.iter().map(Vec::len).sum();
            let shown: Vec<String> = values
                .iter()
                .map(|v| {
                    let text = String::from_utf8_lossy(v);
                    if text.chars().count() > 40 {
                        format!("{}...", text.chars().take(40).collect::<String>())
                    } else {
                        text.into_owned()
                    }
                })
                .collect();
            format!(
                "node {node}: {} siblings, {bytes} bytes {shown:?}",
                values.len()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Polls every replica's own store until all replicas of every key hold
/// the same sibling values. Returns how long it took.
pub fn wait_converged(
    cluster: &FaultCluster,
    keys: &[String],
    owners: &HashMap<String, Vec<usize>>,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let diverged: Vec<String> = match holdings(cluster, keys, owners) {
            Ok(held) => held
                .iter()
                .filter(|(_, replicas)| replicas.windows(2).any(|w| w[0].1 != w[1].1))
                .map(|(key, replicas)| format!("{key}: {}", describe_holding(replicas)))
                .collect(),
            Err(e) => vec![e],
        };
        if diverged.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= timeout {
            let shown: Vec<&String> = diverged.iter().take(MAX_EXAMPLES).collect();
            return Err(format!(
                "replicas still differ on {} keys after {timeout:?}, e.g.:\n    {}",
                diverged.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n    ")
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The set-union verdict.
#[derive(Debug, Default)]
pub struct SetVerdict {
    /// Keys read back.
    pub keys: usize,
    /// DPUTs sent.
    pub attempted: usize,
    /// Elements acknowledged.
    pub acknowledged: usize,
    /// Acknowledged but absent: FAIL.
    pub lost: Vec<String>,
    /// Present but never attempted (on that key): FAIL.
    pub unexpected: Vec<String>,
    /// Elements whose DPUT got no answer.
    pub indeterminate: usize,
    /// ... of which present in the end.
    pub indeterminate_present: usize,
    /// DGETs that failed during the run.
    pub failed_reads: u64,
    /// DPUTs never sent (no connection).
    pub not_sent: u64,
}

/// Reads every set-union key through some node (`DGET`) and compares with
/// what was acknowledged and attempted.
pub fn check_set_union(
    cluster: &FaultCluster,
    history: &SetHistory,
    keys: usize,
    owners: &HashMap<String, Vec<usize>>,
) -> Result<SetVerdict, String> {
    let mut acknowledged: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut attempted: HashMap<String, HashSet<&str>> = HashMap::new();
    for (key, element) in &history.acknowledged {
        acknowledged.entry(key.clone()).or_default().insert(element);
        attempted.entry(key.clone()).or_default().insert(element);
    }
    for (key, element) in &history.indeterminate {
        attempted.entry(key.clone()).or_default().insert(element);
    }
    let mut verdict = SetVerdict {
        keys,
        attempted: history.acknowledged.len() + history.indeterminate.len(),
        acknowledged: history.acknowledged.len(),
        indeterminate: history.indeterminate.len(),
        failed_reads: history.failed_reads,
        not_sent: history.not_sent,
        ..SetVerdict::default()
    };
    let mut finals: HashMap<String, BTreeSet<String>> = HashMap::new();
    for k in 0..keys {
        let key = set_key(k);
        let reply: (Vec<u8>, Vec<Vec<u8>>) =
            on_any(cluster, k, |con| redis::cmd("DGET").arg(&key).query(con))
                .map_err(|e| format!("DGET {key} after the run: {e}"))?;
        let (_, seen) = parse_dget(reply);
        let tried = attempted.get(&key);
        for element in &seen {
            if !tried.is_some_and(|t| t.contains(element.as_str())) {
                verdict.unexpected.push(format!("{key} {element}"));
            }
        }
        for element in acknowledged.get(&key).into_iter().flatten() {
            if !seen.contains(*element) {
                verdict.lost.push(format!("{key} {element}"));
            }
        }
        finals.insert(key, seen);
    }
    verdict.indeterminate_present = history
        .indeterminate
        .iter()
        .filter(|(key, element)| finals.get(key).is_some_and(|s| s.contains(element)))
        .count();
    // Where each lost element is (not) held, replica by replica.
    if !verdict.lost.is_empty() {
        let lost_keys: Vec<String> = verdict
            .lost
            .iter()
            .filter_map(|l| l.split(' ').next().map(String::from))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let held = holdings(cluster, &lost_keys, owners).unwrap_or_default();
        for entry in &mut verdict.lost {
            let (key, element) = entry.split_once(' ').unwrap_or((entry.as_str(), ""));
            let replicas: Vec<String> = held
                .get(key)
                .into_iter()
                .flatten()
                .map(|(node, values)| {
                    let has = values
                        .iter()
                        .any(|v| String::from_utf8_lossy(v).split(',').any(|e| e == element));
                    format!("node {node} {}", if has { "has it" } else { "lacks it" })
                })
                .collect();
            *entry = format!("{entry} [{}]", replicas.join(", "));
        }
    }
    Ok(verdict)
}

/// The register verdict.
#[derive(Debug, Default)]
pub struct RegisterVerdict {
    /// Keys read back.
    pub keys: usize,
    /// SETs answered OK.
    pub acknowledged: usize,
    /// SETs with no answer.
    pub indeterminate: usize,
    /// Acknowledged writes left as concurrent siblings of the value `GET`
    /// returns, which last-write-wins therefore hides (not a failure: the
    /// documented trade-off; `DGET` still returns them).
    pub lww_hidden: usize,
    /// Acknowledged writes that began after `GET`'s winner had been answered
    /// (a real-time reading of the same trade-off: e.g. a write sent to a
    /// node just before it was paused times out, is applied when the node
    /// resumes, with a later timestamp, and hides what was acknowledged
    /// in between).
    pub hidden_later: usize,
    /// Final value per key, with where it came from.
    pub finals: Vec<String>,
    /// A key with acknowledged writes that reads back nil: FAIL.
    pub lost: Vec<String>,
    /// A value never written to that key: FAIL.
    pub unexpected: Vec<String>,
}

/// Reads every register with `GET` and measures what last-write-wins hid.
pub fn check_registers(
    cluster: &FaultCluster,
    history: &RegisterHistory,
    keys: usize,
) -> Result<RegisterVerdict, String> {
    let mut verdict = RegisterVerdict {
        keys,
        acknowledged: history.writes.iter().filter(|w| w.acknowledged).count(),
        indeterminate: history.writes.iter().filter(|w| !w.acknowledged).count(),
        ..RegisterVerdict::default()
    };
    for k in 0..keys {
        let key = register_key(k);
        let writes: Vec<_> = history.writes.iter().filter(|w| w.key == key).collect();
        let value: Option<String> =
            on_any(cluster, k, |con| redis::cmd("GET").arg(&key).query(con))
                .map_err(|e| format!("GET {key} after the run: {e}"))?;
        let Some(value) = value else {
            if writes.iter().any(|w| w.acknowledged) {
                verdict
                    .lost
                    .push(format!("{key}: nil after acknowledged writes"));
            }
            continue;
        };
        let Some(winner) = writes.iter().find(|w| w.value == value) else {
            verdict
                .unexpected
                .push(format!("{key} = {value:?}, never written there"));
            continue;
        };
        let reply: (Vec<u8>, Vec<Vec<u8>>) =
            on_any(cluster, k, |con| redis::cmd("DGET").arg(&key).query(con))
                .map_err(|e| format!("DGET {key} after the run: {e}"))?;
        let siblings: Vec<String> = reply
            .1
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        for sibling in &siblings {
            if !writes.iter().any(|w| &w.value == sibling) {
                verdict
                    .unexpected
                    .push(format!("{key} sibling {sibling:?}, never written there"));
            }
        }
        let hidden = siblings
            .iter()
            .filter(|v| **v != value && writes.iter().any(|w| w.acknowledged && &w.value == *v))
            .count();
        let later = writes
            .iter()
            .filter(|w| w.acknowledged && w.invoked > winner.completed)
            .count();
        verdict.lww_hidden += hidden;
        verdict.hidden_later += later;
        verdict.finals.push(format!(
            "{key}: GET={value} ({}, sent t+{:.3}s, answered t+{:.3}s); siblings {siblings:?}: \
             {hidden} acknowledged hidden, {later} acknowledged writes begun after it answered",
            if winner.acknowledged {
                "acknowledged"
            } else {
                "indeterminate"
            },
            winner.invoked.as_secs_f64(),
            winner.completed.as_secs_f64(),
        ));
    }
    Ok(verdict)
}

/// The delete verdict.
#[derive(Debug, Default)]
pub struct DeleteVerdict {
    /// Keys whose SET was acknowledged.
    pub written: usize,
    /// Keys whose SET got no answer (not checked).
    pub write_indeterminate: usize,
    /// Acknowledged DELs answered `:1`.
    pub deleted_one: usize,
    /// Acknowledged DELs answered `:0` (the DEL's read did not see the
    /// acknowledged SET).
    pub deleted_zero: usize,
    /// Deleted (DEL `:1`) keys that read back a value: FAIL.
    pub resurrected: Vec<String>,
    /// Keys whose DEL answered `:0` that a `GET` still reads back: FAIL
    /// (the DEL's read missed the acknowledged SET, and its tombstone did not
    /// hide it).
    pub undeleted: Vec<String>,
    /// Keys whose DEL answered `:0` that every `GET` reads as nil while a
    /// replica keeps the missed value as a sibling beside the tombstone
    /// (causally concurrent with the DEL; `DGET` lists it). Reported.
    pub undeleted_sibling: usize,
    /// Keys whose DEL answered `:0` that a `GET` still reads back, where the
    /// DEL ran while some node's clock was behind, or the SET while some
    /// node's clock was ahead (or within that offset after): last-write-wins
    /// between two causally concurrent writes, decided by skewed clocks.
    /// Reported (the LWW trade-off), listed.
    pub undeleted_by_skew: Vec<String>,
    /// DELs with no answer.
    pub delete_indeterminate: usize,
    /// ... of which the key still reads back a value.
    pub delete_indeterminate_present: usize,
    /// Acknowledged keys never deleted.
    pub kept: usize,
    /// ... that read back nil or another value: FAIL.
    pub kept_lost: Vec<String>,
}

/// `GET` of `keys` through node `node`, pipelined.
fn get_all(node: &Node, keys: &[String]) -> Result<Vec<Option<String>>, String> {
    let mut con = node
        .admin()
        .map_err(|e| format!("node {}: {e}", node.index))?;
    let mut values = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("GET").arg(key);
        }
        let batch: Vec<Option<String>> = pipe
            .query(&mut con)
            .map_err(|e| format!("node {} GET: {e}", node.index))?;
        values.extend(batch);
    }
    Ok(values)
}

/// Reads every delete-workload key through every node (`GET`, a quorum
/// read each) and in every replica's own store (`DYNAMO LOCALGET`).
pub fn check_deletes(
    cluster: &FaultCluster,
    history: &DeleteHistory,
    owners: &HashMap<String, Vec<usize>>,
) -> Result<DeleteVerdict, String> {
    // libfaketime follows a new offset within a second.
    // The write may be stamped by another node than the client's (a
    // forward to an owner), and nodes that took in a fast node's timestamps
    // keep stamping at them until their own clocks catch up
    // (`Replica::stamp`): a skew ahead is felt anywhere, until `offset`
    // seconds after its window.
    let margin = Duration::from_millis(1500);
    let skewed = |op: Option<&Op>, behind: bool| -> bool {
        op.is_some_and(|op| {
            cluster
                .skew_windows
                .iter()
                .any(|&(_, offset, from, until)| {
                    let lingers = Duration::from_secs(offset.unsigned_abs()) * u32::from(!behind);
                    (offset < 0) == behind
                        && op.completed + margin >= from
                        && until.is_none_or(|until| op.invoked <= until + lingers + margin)
                })
        })
    };
    let mut verdict = DeleteVerdict {
        written: history.written.len(),
        write_indeterminate: history.write_indeterminate.len(),
        deleted_one: history.deleted.values().filter(|&&n| n == 1).count(),
        deleted_zero: history.deleted.values().filter(|&&n| n != 1).count(),
        delete_indeterminate: history.delete_indeterminate.len(),
        kept: history.kept.len(),
        ..DeleteVerdict::default()
    };
    let mut keys: Vec<String> = history.deleted.keys().cloned().collect();
    keys.extend(history.delete_indeterminate.iter().cloned());
    keys.extend(history.kept.iter().cloned());
    // key -> what each node's GET answered.
    let mut reads: HashMap<String, Vec<(usize, Option<String>)>> = HashMap::new();
    for node in &cluster.nodes {
        for (key, value) in keys.iter().zip(get_all(node, &keys)?) {
            reads
                .entry(key.clone())
                .or_default()
                .push((node.index, value));
        }
    }
    let held = holdings(cluster, &keys, owners)?;
    let describe = |key: &str| -> String {
        let gets: Vec<String> = reads
            .get(key)
            .into_iter()
            .flatten()
            .map(|(node, v)| format!("GET via node {node} = {v:?}"))
            .collect();
        format!(
            "{key} [{}] owners {:?}: {}; stores: {}",
            history.trace.get(key).map_or("", String::as_str),
            owners.get(key).cloned().unwrap_or_default(),
            gets.join(", "),
            held.get(key)
                .map_or("-".to_string(), |r| describe_holding(r))
        )
    };
    let present = |key: &str| -> bool {
        reads
            .get(key)
            .is_some_and(|r| r.iter().any(|(_, v)| v.is_some()))
            || held
                .get(key)
                .is_some_and(|r| r.iter().any(|(_, values)| !values.is_empty()))
    };
    let readable = |key: &str| -> bool {
        reads
            .get(key)
            .is_some_and(|r| r.iter().any(|(_, v)| v.is_some()))
    };
    for (key, answer) in &history.deleted {
        if *answer == 1 {
            // The tombstone covers the value: no replica may keep it.
            if present(key) {
                verdict.resurrected.push(describe(key));
            }
        } else if readable(key) {
            if skewed(history.del_ops.get(key), true) || skewed(history.set_ops.get(key), false) {
                verdict.undeleted_by_skew.push(describe(key));
            } else {
                verdict.undeleted.push(describe(key));
            }
        } else if present(key) {
            verdict.undeleted_sibling += 1;
        }
    }
    verdict.delete_indeterminate_present = history
        .delete_indeterminate
        .iter()
        .filter(|k| present(k))
        .count();
    for key in &history.kept {
        let expected = history.written.get(key);
        let intact = reads
            .get(key)
            .is_some_and(|r| r.iter().all(|(_, v)| v.as_ref() == expected));
        if !intact {
            verdict.kept_lost.push(describe(key));
        }
    }
    Ok(verdict)
}

/// What the batch check found.
#[derive(Debug, Default)]
pub struct BatchVerdict {
    /// Acknowledged keys.
    pub written: usize,
    /// Keys whose write had no clear answer.
    pub indeterminate: usize,
    /// Batches sent as `MSET` / as pipelines.
    pub batches: (u64, u64),
    /// Acknowledged keys some node's `GET` reads as nil or another value:
    /// FAIL.
    pub lost: Vec<String>,
}

/// Reads every acknowledged batch key through every node (pipelined
/// `GET`s, themselves a batch of quorum reads): each must give its value.
pub fn check_batches(
    cluster: &FaultCluster,
    history: &BatchHistory,
    owners: &HashMap<String, Vec<usize>>,
) -> Result<BatchVerdict, String> {
    let keys: Vec<String> = history.written.keys().cloned().collect();
    let mut reads: HashMap<&str, Vec<(usize, Option<String>)>> = HashMap::new();
    for node in &cluster.nodes {
        for (key, value) in keys.iter().zip(get_all(node, &keys)?) {
            reads.entry(key).or_default().push((node.index, value));
        }
    }
    let mut verdict = BatchVerdict {
        written: keys.len(),
        indeterminate: history.indeterminate.len(),
        batches: (history.msets, history.pipelines),
        lost: Vec::new(),
    };
    let bad: Vec<&String> = keys
        .iter()
        .filter(|key| {
            let expected = history.written.get(*key);
            !reads
                .get(key.as_str())
                .is_some_and(|r| r.iter().all(|(_, v)| v.as_ref() == expected))
        })
        .collect();
    if bad.is_empty() {
        return Ok(verdict);
    }
    let bad_keys: Vec<String> = bad.iter().map(|k| k.to_string()).collect();
    let held = holdings(cluster, &bad_keys, owners)?;
    for key in bad_keys {
        let gets: Vec<String> = reads
            .get(key.as_str())
            .into_iter()
            .flatten()
            .map(|(node, v)| format!("GET via node {node} = {v:?}"))
            .collect();
        verdict.lost.push(format!(
            "{key} [{}] expected {:?}, owners {:?}: {}; stores: {}",
            history.trace.get(&key).map_or("", String::as_str),
            history.written.get(&key),
            owners.get(&key).cloned().unwrap_or_default(),
            gets.join(", "),
            held.get(&key)
                .map_or("-".to_string(), |r| describe_holding(r))
        ));
    }
    Ok(verdict)
}
