//! Many clients at once.

use std::sync::Arc;
use std::thread;

use compat_tests::{q, Server};

#[test]
fn hundred_parallel_clients() {
    let server = Arc::new(Server::start(&[]));
    let threads: Vec<_> = (0..100)
        .map(|t| {
            let server = Arc::clone(&server);
            thread::spawn(move || {
                let mut c = server.client();
                for i in 0..200 {
                    let key = format!("t{t}:k{i}");
                    let value = format!("value-{t}-{i}");
                    let ok: String = q(&mut c, &["SET", &key, &value]);
                    assert_eq!(ok, "OK");
                    let got: Option<String> = q(&mut c, &["GET", &key]);
                    assert_eq!(got.as_deref(), Some(value.as_str()), "key {key}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread failed");
    }
    let mut c = server.client();
    let n: i64 = q(&mut c, &["DBSIZE"]);
    assert_eq!(n, 100 * 200);
    let sample: Vec<Option<String>> = q(&mut c, &["MGET", "t0:k0", "t99:k199", "t50:k100"]);
    assert_eq!(
        sample,
        vec![
            Some("value-0-0".to_string()),
            Some("value-99-199".to_string()),
            Some("value-50-100".to_string())
        ]
    );
}
