//! The moto S3 server answers, stores objects, and dies on demand.

use pgdrill_testkit::S3Server;

#[test]
fn s3_server_answers_and_dies_on_demand() {
    let mut s3 = S3Server::start();
    assert!(s3.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(s3.region(), "us-east-1");
    assert!(!s3.access_key().is_empty() && !s3.secret_key().is_empty());

    s3.create_bucket("pgdrill-test");
    let (status, _) = s3
        .request("PUT", "/pgdrill-test/a/b.txt", b"hello")
        .expect("put");
    assert_eq!(status, 200);
    let (status, body) = s3
        .request("GET", "/pgdrill-test/a/b.txt", &[])
        .expect("get");
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert_eq!(s3.list_keys("pgdrill-test"), vec!["a/b.txt".to_string()]);
    let (status, _) = s3.request("GET", "/no-such-bucket/x", &[]).expect("get");
    assert_eq!(status, 404);

    assert!(s3.is_running());
    s3.kill_now();
    assert!(!s3.is_running());
    assert!(s3.request("GET", "/", &[]).is_err(), "server still answers");
}

#[test]
fn two_servers_run_side_by_side() {
    let a = S3Server::start();
    let b = S3Server::start();
    assert_ne!(a.port(), b.port());
    a.create_bucket("one");
    // Separate processes, separate state.
    let (status, _) = b.request("GET", "/one?list-type=2", &[]).expect("get");
    assert_eq!(status, 404);
    a.stop();
    b.create_bucket("two");
}
