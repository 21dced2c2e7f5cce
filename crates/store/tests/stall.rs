//! A store that accepts connections and never answers: every call ends within its timeout
//! and retry window, retried, with a message that says what to do.

use pgdrill_store::{Store, StoreOptions};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accepts connections and holds them open without a byte of answer; counts them.
fn silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    (endpoint, count)
}

#[tokio::test]
async fn stalled_requests_time_out_are_retried_and_say_what_to_do() {
    let (endpoint, connections) = silent_server();
    let opts = StoreOptions {
        endpoint: Some(endpoint),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        timeout: Some(Duration::from_secs(1)),
        retry_window: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let store = Store::open(&"s3://stalled/p".parse().expect("url"), &opts).expect("open");
    let started = Instant::now();
    let get = store
        .get("db/manifest.json")
        .await
        .expect_err("a stalled GET");
    let first = started.elapsed();
    let list = store.list("db/").await.expect_err("a stalled LIST");
    let took = started.elapsed();
    // The first call waits out its retry window; once the store is known to be down, the
    // next one gets a short budget (cleanup after a failure must not wait it out again).
    assert!(first >= Duration::from_secs(5), "{first:?}");
    assert!(
        took - first <= Duration::from_millis(3500),
        "{:?}",
        took - first
    );
    for e in [&get, &list] {
        let msg = e.to_string();
        eprintln!("{msg}");
        assert!(e.is_retryable(), "{e:?}");
        assert!(!msg.contains("max_retries"), "{msg}");
    }
    assert!(get.to_string().contains("timeout_seconds"), "{get}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(connections.load(Ordering::SeqCst) >= 4, "not retried");
}
