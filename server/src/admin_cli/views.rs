//! What each admin command shows: the node's replies laid out as tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::client::{items, text, Fields, Member, Node};
use super::table::render;
use super::Plan;

/// `status`: the cluster summary, this node's counters and the members.
pub(super) fn status(node: &mut Node) -> Result<String, String> {
    let s = node.status()?;
    let members = node.members()?;
    let info: BTreeMap<String, String> = node.info_dynamo().into_iter().collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Node {} at {} ({})\n",
        s.get("node_id"),
        s.get("address"),
        s.get("mode")
    );
    let mut summary: Vec<Vec<String>> = Vec::new();
    let mut line = |label: &str, value: String| summary.push(vec![label.to_string(), value]);
    let quorum = format!("N={} R={} W={}", s.get("n"), s.get("r"), s.get("w"));
    if s.value("cluster_name").is_some() {
        line(
            "cluster",
            format!(
                "{}: {} members ({} up), {quorum}, Q={}",
                s.get("cluster_name"),
                s.get("members"),
                s.get("members_up"),
                s.get("q")
            ),
        );
        line(
            "this node",
            format!(
                "{}, peer address {}, {} partitions (fair share {:.1}), {} keys stored",
                s.get("membership"),
                s.get("peer_address"),
                s.get("partitions"),
                s.num("fair_share"),
                s.get("keys")
            ),
        );
        line(
            "ring",
            format!(
                "version {}, digest {}, balance {:.3} (1.000 is perfect)",
                s.get("ring_version"),
                s.get("ring_digest"),
                s.num("balance")
            ),
        );
        let phase = s.get("transition");
        line(
            "transition",
            if phase == "none" {
                phase
            } else {
                format!("{phase} (to ring version {})", s.get("ring_target_version"))
            },
        );
        let waiting = s.get("transition_waiting_for");
        if !waiting.is_empty() && waiting != "-" {
            line("waiting for", waiting);
        }
        line("transfers pending", s.get("transfers_pending"));
        line(
            "hints pending",
            format!(
                "{} ({} delivered)",
                s.get("hints_pending"),
                s.get("hints_delivered")
            ),
        );
        line("read repairs", s.get("read_repairs"));
        line(
            "anti-entropy",
            format!(
                "{} rounds, {} keys repaired",
                s.get("anti_entropy_rounds"),
                s.get("anti_entropy_keys_repaired")
            ),
        );
        line(
            "tombstones",
            format!(
                "{} pending, {} collected",
                s.get("tombstones_pending"),
                s.get("tombstones_collected")
            ),
        );
    } else {
        line(
            "mode",
            format!(
                "{} (no cluster protocol: start with n > 1 or seeds)",
                s.get("mode")
            ),
        );
        line("replication", quorum);
        line("keys", s.get("keys"));
    }
    let counter = |name: &str| info.get(name).cloned().unwrap_or_else(|| "-".into());
    if info.contains_key("coordinator_reads") {
        line(
            "requests",
            format!(
                "{} reads, {} writes coordinated, {} forwarded, {} quorum failures",
                counter("coordinator_reads"),
                counter("coordinator_writes"),
                counter("writes_forwarded"),
                counter("quorum_failures")
            ),
        );
    }
    out.push_str(&render(&[], &summary));
    out.push('\n');
    out.push_str(&member_table(&members));
    let transfers = s.list("transfers");
    if !transfers.is_empty() {
        let rows: Vec<Vec<String>> = transfers
            .iter()
            .map(|t| {
                vec![
                    t.get("partition"),
                    t.get("from"),
                    t.get("keys"),
                    bytes(t.num("bytes")),
                    format!("{:.1}%", t.num("percent")),
                    t.get("keys_per_sec"),
                    t.get("waiting"),
                ]
            })
            .collect();
        out.push_str("\nTransfers into this node:\n");
        out.push_str(&render(
            &[
                "PARTITION",
                "FROM",
                "KEYS",
                "BYTES",
                "DONE",
                "KEYS/S",
                "WAITING",
            ],
            &rows,
        ));
    }
    Ok(out)
}

/// `members`: the member table alone.
pub(super) fn members(node: &mut Node) -> Result<String, String> {
    Ok(member_table(&node.members()?))
}

pub(super) fn member_table(members: &[Member]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.client.clone(),
                if m.peer.is_empty() {
                    "-".into()
                } else {
                    m.peer.clone()
                },
                health(&m.health, now),
                m.state.clone(),
                m.weight.to_string(),
                m.partitions.to_string(),
            ]
        })
        .collect();
    let mut out = format!("Members ({}):\n", members.len());
    out.push_str(&render(
        &[
            "ID",
            "CLIENT",
            "PEER",
            "STATUS",
            "MEMBERSHIP",
            "WEIGHT",
            "PARTITIONS",
        ],
        &rows,
    ));
    out
}

/// `self` / `up` / `down since <unix ms>` as an operator reads it.
fn health(raw: &str, now_ms: u64) -> String {
    match raw {
        "self" => "up (this node)".to_string(),
        "up" => "up".to_string(),
        other => match other.strip_prefix("down since ").map(str::parse::<u64>) {
            Some(Ok(since)) if since <= now_ms => {
                format!("down for {}", duration((now_ms - since) / 1000))
            }
            Some(_) => "down".to_string(),
            None => other.to_string(),
        },
    }
}

fn duration(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
    }
}

fn bytes(n: f64) -> String {
    let mut value = n;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 {
            return if unit == "B" {
                format!("{value:.0} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    format!("{value:.1} TiB")
}

/// `ring`: partitions per node against the fair share of its weight.
pub(super) fn ring(node: &mut Node, full: bool) -> Result<String, String> {
    let partitions: Vec<Vec<String>> = items(node.query(&["DYNAMO", "RING"])?)
        .into_iter()
        .map(|row| items(row).iter().map(text).collect())
        .collect();
    let members = node.members()?;
    let q = partitions.len();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for row in &partitions {
        *counts.entry(cell(row, 3)).or_insert(0) += 1;
    }
    let total_weight: u64 = members
        .iter()
        .filter(|m| m.state == "active")
        .map(|m| m.weight)
        .sum();
    let fair = |m: Option<&Member>| match m {
        Some(m) if m.state == "active" && total_weight > 0 => {
            Some(q as f64 * m.weight as f64 / total_weight as f64)
        }
        _ => None,
    };
    let mut shown: Vec<(String, Option<&Member>)> = members
        .iter()
        .filter(|m| m.state != "removed" || counts.contains_key(&m.id))
        .map(|m| (m.id.clone(), Some(m)))
        .collect();
    for owner in counts.keys() {
        if !members.iter().any(|m| &m.id == owner) {
            shown.push((owner.clone(), None));
        }
    }
    let mut balance: f64 = 0.0;
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|(id, m)| {
            let count = counts.get(id).copied().unwrap_or(0);
            let fair = fair(*m);
            let ratio = match fair {
                Some(f) if f > 0.0 => Some(count as f64 / f),
                _ if count > 0 => Some(f64::INFINITY),
                _ => None,
            };
            if let Some(r) = ratio {
                balance = balance.max(r);
            }
            vec![
                id.clone(),
                m.map_or("?".into(), |m| m.client.clone()),
                m.map_or("-".into(), |m| m.weight.to_string()),
                count.to_string(),
                format!("{:.1}%", 100.0 * count as f64 / q.max(1) as f64),
                fair.map_or("-".into(), |f| format!("{f:.2}")),
                ratio.map_or("-".into(), |r| format!("{r:.3}")),
            ]
        })
        .collect();
    let mut out = format!(
        "Ring: {q} partitions over {} nodes, balance {balance:.3} (largest partitions / fair share; 1.000 is perfect)\n\n",
        counts.len()
    );
    out.push_str(&render(
        &[
            "NODE",
            "CLIENT",
            "WEIGHT",
            "PARTITIONS",
            "SHARE",
            "FAIR SHARE",
            "VS FAIR",
        ],
        &rows,
    ));
    if full {
        let client = |id: &str| {
            members
                .iter()
                .find(|m| m.id == id)
                .map_or("?".to_string(), |m| m.client.clone())
        };
        let rows: Vec<Vec<String>> = partitions
            .iter()
            .map(|row| {
                let owner = cell(row, 3);
                vec![
                    cell(row, 0),
                    format!("{:016x}", cell(row, 1).parse::<u64>().unwrap_or(0)),
                    format!("{:016x}", cell(row, 2).parse::<u64>().unwrap_or(0)),
                    client(&owner),
                    owner,
                ]
            })
            .collect();
        out.push_str("\nPartitions:\n");
        out.push_str(&render(
            &["PARTITION", "FIRST", "LAST", "CLIENT", "OWNER"],
            &rows,
        ));
    }
    Ok(out)
}

fn cell(row: &[String], i: usize) -> String {
    row.get(i).cloned().unwrap_or_default()
}

/// A node id given in full, or as a unique prefix of a member's id.
pub(super) fn resolve_id(node: &mut Node, given: &str) -> Result<String, String> {
    let wanted = given.to_ascii_lowercase();
    if wanted.len() >= 16 {
        return Ok(wanted);
    }
    let members = node.members()?;
    let matches: Vec<&Member> = members
        .iter()
        .filter(|m| m.id.starts_with(&wanted))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(format!(
            "no member of {}'s cluster has an id starting with {given:?} (see 'status')",
            node.addr
        )),
        many => Err(format!(
            "{given:?} could be any of {}: give more of the id",
            many.iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `plan ...`: per node, the partitions and replicas the change would move.
pub(super) fn plan(node: &mut Node, plan: &Plan) -> Result<String, String> {
    let (mut args, what) = match plan {
        Plan::Join(w) => (
            vec!["JOIN".to_string(), w.to_string()],
            format!("a new node of weight {w} joins"),
        ),
        Plan::Leave(None) => (vec!["LEAVE".to_string()], format!("{} leaves", node.addr)),
        Plan::Leave(Some(id)) => {
            let id = resolve_id(node, id)?;
            (
                vec!["LEAVE".to_string(), id.clone()],
                format!("{id} leaves"),
            )
        }
        Plan::Remove(id) => {
            let id = resolve_id(node, id)?;
            (
                vec!["REMOVE".to_string(), id.clone()],
                format!("{id} is removed"),
            )
        }
        Plan::Weight(id, w) => {
            let id = resolve_id(node, id)?;
            (
                vec!["WEIGHT".to_string(), id.clone(), w.to_string()],
                format!("{id} gets weight {w}"),
            )
        }
    };
    args.insert(0, "PLAN".to_string());
    args.insert(0, "DYNAMO".to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let rows: Vec<Fields> = items(node.query(&refs)?)
        .into_iter()
        .map(|row| Fields(super::client::pairs(row)))
        .collect();
    let members = node.members()?;
    let client = |id: &str| match id {
        "new" => "(new node)".to_string(),
        id => members
            .iter()
            .find(|m| m.id == id)
            .map_or("?".to_string(), |m| m.client.clone()),
    };
    let (mut fetched, mut keys, mut size) = (0.0, 0.0, 0.0);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (before, after) = (r.num("partitions_before"), r.num("partitions_after"));
            fetched += r.num("replicas_in");
            keys += r.num("estimated_keys_in");
            size += r.num("estimated_bytes_in");
            vec![
                r.get("node"),
                client(&r.get("node")),
                r.get("partitions_before"),
                r.get("partitions_after"),
                format!("{:+}", after - before),
                r.get("replicas_in"),
                r.get("replicas_out"),
                r.get("estimated_keys_in"),
                bytes(r.num("estimated_bytes_in")),
            ]
        })
        .collect();
    let mut out = format!("Plan: {what} (nothing changes until the command is run)\n\n");
    out.push_str(&render(
        &[
            "NODE",
            "CLIENT",
            "BEFORE",
            "AFTER",
            "CHANGE",
            "REPLICAS IN",
            "REPLICAS OUT",
            "EST. KEYS IN",
            "EST. BYTES IN",
        ],
        &table,
    ));
    let _ = writeln!(
        out,
        "\n{fetched} partition replicas to fetch, about {keys} keys and {}",
        bytes(size)
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reads_like_english() {
        assert_eq!(health("self", 10_000), "up (this node)");
        assert_eq!(health("up", 10_000), "up");
        assert_eq!(health("down since 4000", 10_000), "down for 6s");
        assert_eq!(health("down since 99999", 10_000), "down");
        assert_eq!(health("weird", 10_000), "weird");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(115_100.0), "112.4 KiB");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(185), "3m05s");
    }
}
