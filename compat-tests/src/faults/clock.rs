//! Skewing one node's wall clock, for real, with libfaketime.
//!
//! Every node of a run that has clock-skew windows starts with libfaketime
//! preloaded and a file of its own holding the offset (`+0`, `+42s`,
//! `-17s`). libfaketime rereads the file every second
//! (`FAKETIME_CACHE_DURATION=1`), so the nemesis moves a running node's
//! clock by rewriting it. Only the wall clock (`CLOCK_REALTIME`: LWW
//! timestamps, tombstone ages, expiry) moves; the monotonic clock that
//! timers and timeouts use does not (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as on
//! a machine whose NTP is off but whose kernel is fine.

use std::path::{Path, PathBuf};

/// Where Debian's `faketime` package puts the library, and other usual places.
const LIBRARY_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// The libfaketime shared library, if installed (`apt-get install faketime`).
pub fn libfaketime() -> Option<PathBuf> {
    LIBRARY_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// Whether runs must skew clocks (`DYNAMO_REQUIRE_FAKETIME=1`, set by CI):
/// then a missing libfaketime fails the run instead of dropping the skew
/// windows.
pub fn required() -> bool {
    std::env::var("DYNAMO_REQUIRE_FAKETIME").is_ok_and(|v| v == "1")
}

/// One node's offset file.
pub struct SkewableClock {
    path: PathBuf,
}

impl SkewableClock {
    /// An offset file `clock-{index}` in `dir`, starting at `+0`.
    pub fn new(dir: &Path, index: usize) -> SkewableClock {
        let clock = SkewableClock {
            path: dir.join(format!("clock-{index}")),
        };
        clock.set(0);
        clock
    }

    /// The environment that makes a process follow this file.
    pub fn env(&self, library: &Path) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", library.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.path.display().to_string()),
            ("FAKETIME_CACHE_DURATION", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Sets the offset from the true time, in seconds; the process follows
    /// within a second.
    pub fn set(&self, offset_secs: i64) {
        std::fs::write(&self.path, format!("{offset_secs:+}s\n"))
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.path.display()));
    }
}
