//! The fault harness (`compat_tests::faults`): real partitions through
//! peer proxies, kill -9, SIGSTOP, concurrent clients, and a checker run
//! after the heal.
//!
//! - `short_profile`: 3 nodes, about a minute; part of the normal test run.
//! - `long_profile` (ignored): 5 nodes, mixed nemeses for `FAULTS_MINUTES`
//!   (default 10) minutes:
//!   `cargo test --release -p compat-tests --test faults -- --ignored long_profile --nocapture`
//!
//! Every run prints its seed; `FAULTS_SEED=<seed>` replays the schedule and
//! the clients' choices (not the thread timing). `--nocapture` shows the
//! report of a passing run; a failing one panics with it.

use std::time::Duration;

use compat_tests::faults::{run, seed_from_env, Profile};

#[test]
fn short_profile() {
    let report = run(&Profile::short(), seed_from_env());
    println!("{}", report.summary());
    report.assert_passed();
}

#[test]
#[ignore = "long: run with --ignored long_profile (FAULTS_MINUTES, default 10)"]
fn long_profile() {
    let minutes: f64 = std::env::var("FAULTS_MINUTES")
        .ok()
        .map(|m| {
            m.parse()
                .unwrap_or_else(|_| panic!("FAULTS_MINUTES={m:?} is not a number"))
        })
        .unwrap_or(10.0);
    assert!(minutes > 0.0, "FAULTS_MINUTES must be positive");
    let report = run(
        &Profile::long(Duration::from_secs_f64(minutes * 60.0)),
        seed_from_env(),
    );
    println!("{}", report.summary());
    report.assert_passed();
}
