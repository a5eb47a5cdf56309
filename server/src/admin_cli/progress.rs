//! `--wait`: following a ring change until it is in force, with a
//! progress bar (redrawn on one line on a terminal, plain lines otherwise).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::client::{Fields, Node};
use super::views::member_table;
use super::{note, out};

/// How often `--wait` polls `DYNAMO STATUS`.
const POLL: Duration = Duration::from_millis(500);
/// A change that moves nothing shows no transition: `--wait` accepts a
/// settled ring after this long even if it never saw one.
const GRACE: Duration = Duration::from_secs(3);
/// Without a terminal, `--wait` prints a line at least this often.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// Width of the progress bar, in characters.
const BAR: usize = 30;

/// `--wait`: polls `DYNAMO STATUS` until the ring change is in force on
/// this node (no transition, and the change seen or a settled ring for
/// `GRACE`), drawing progress; then prints the members.
pub(super) fn wait(
    node: &mut Node,
    before: &Fields,
    timeout: Duration,
    leaving: bool,
    joining: bool,
) -> Result<(), String> {
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut total: f64 = 0.0;
    let mut seen_transition = false;
    let mut last_printed: Option<(String, Instant)> = None;
    let mut drawn = 0usize;
    let mut reconnect_note = false;
    loop {
        let status = match node.status() {
            Ok(status) => status,
            Err(error) => {
                if !reconnect_note {
                    note(&format!("{error}; retrying"));
                    reconnect_note = true;
                }
                let _ = node.reconnect();
                if started.elapsed() >= timeout {
                    return Err(format!(
                        "gave up after {}s: the ring change is not done ({error})",
                        timeout.as_secs()
                    ));
                }
                std::thread::sleep(POLL);
                continue;
            }
        };
        let phase = status.get("transition");
        let settled = phase == "none" || phase == "-";
        seen_transition |= !settled;
        let pending = status.num("transfers_pending");
        total = total.max(pending);
        let changed = status.get("ring_version") != before.get("ring_version");
        let still_leaving = leaving && status.get("membership") == "leaving";
        let owns_nothing_yet = joining && status.num("partitions") == 0.0;
        let done = settled
            && !still_leaving
            && (seen_transition || (changed && !owns_nothing_yet) || started.elapsed() >= GRACE);
        let mut line = progress_line(&status, pending, total, settled);
        if still_leaving && settled {
            line.push_str("  (this node still leaving)");
        }
        if tty {
            // One screen line, or the `\r` redraw would not go back to its start.
            line = line
                .chars()
                .take(screen_width().saturating_sub(1))
                .collect();
            let pad = drawn.saturating_sub(line.chars().count());
            out(&format!("\r{line}{}", " ".repeat(pad)));
            drawn = line.chars().count();
        } else if last_printed
            .as_ref()
            .is_none_or(|(text, at)| *text != line || at.elapsed() >= PLAIN_EVERY)
        {
            out(&format!("{line}\n"));
            last_printed = Some((line, Instant::now()));
        }
        if done {
            break;
        }
        if started.elapsed() >= timeout {
            if tty {
                out("\n");
            }
            return Err(format!(
                "timed out after {}s waiting for the ring change (phase {phase}, {pending} transfers pending)",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
    if tty {
        out("\n");
    }
    let status = node.status()?;
    out(&format!(
        "ring change done in {:.1}s: ring version {}, balance {:.3}\n\n",
        started.elapsed().as_secs_f64(),
        status.get("ring_version"),
        status.num("balance")
    ));
    out(&member_table(&node.members()?));
    Ok(())
}

/// The terminal's width from `COLUMNS` when exported, else 80.
fn screen_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|c| *c >= 20)
        .unwrap_or(80)
}

/// `[#####.....]  50%  10/20 transfers  syncing  waiting for ...`
fn progress_line(status: &Fields, pending: f64, total: f64, settled: bool) -> String {
    let fraction = if settled {
        1.0
    } else if total > 0.0 {
        ((total - pending) / total).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = (fraction * BAR as f64).round() as usize;
    let mut line = format!(
        "[{}{}] {:>3.0}%  {}/{} transfers  {}",
        "#".repeat(filled),
        ".".repeat(BAR - filled.min(BAR)),
        fraction * 100.0,
        (total - pending).max(0.0),
        total,
        status.get("transition")
    );
    let local = status.list("transfers");
    if !local.is_empty() {
        let mean = local.iter().map(|t| t.num("percent")).sum::<f64>() / local.len() as f64;
        let _ = write!(line, "  fetching {} here ({mean:.0}%)", local.len());
    }
    let waiting = status.get("transition_waiting_for");
    if !settled && !waiting.is_empty() && waiting != "-" {
        let short: String = waiting.chars().take(60).collect();
        let more = if waiting.chars().count() > 60 {
            "..."
        } else {
            ""
        };
        let _ = write!(line, "  waiting for {short}{more}");
    }
    line
}
