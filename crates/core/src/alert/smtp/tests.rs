use super::*;

#[test]
fn base64_matches_rfc4648_vectors() {
    let cases = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, enc) in cases {
        assert_eq!(base64(plain.as_bytes()), enc);
    }
}

fn target() -> SmtpTarget {
    SmtpTarget {
        host: "127.0.0.1".into(),
        port: 25,
        from: "pgdrill@example.com".into(),
        to: vec!["a@example.com".into(), "b@example.com".into()],
        auth: None,
        security: Security::Plain,
        tls: None,
    }
}

/// The Date header and the Message-ID's time, as chrono's `to_rfc2822` wrote them.
#[test]
fn render_dates_the_message() {
    for (at, date) in [
        ("2026-12-06T06:40:53.9Z", "Sun, 6 Dec 2026 06:40:53 +0000"),
        ("2026-11-21T22:05:09Z", "Sat, 21 Nov 2026 22:05:09 +0000"),
    ] {
        let t = time::parse(at).expect("t");
        let data = render(&target(), "s", "b", t);
        assert!(data.starts_with(&format!("Date: {date}\r\n")), "{data}");
        let secs = t.as_second();
        assert!(data.contains(&format!(".{secs}@pgdrill>\r\n")), "{data}");
    }
}

#[test]
fn render_dot_stuffs_and_terminates() {
    let data = render(
        &target(),
        "[pgdrill] x",
        "one\n.\n..two\nthree",
        Timestamp::now(),
    );
    assert!(
        data.contains("\r\n\r\none\r\n..\r\n...two\r\nthree\r\n.\r\n"),
        "{data}"
    );
    assert!(data.contains("To: a@example.com,\r\n b@example.com\r\n"));
    assert!(data.contains("Content-Transfer-Encoding: 7bit\r\n"));
}

#[test]
fn non_ascii_goes_base64_and_subject_is_encoded() {
    let data = render(
        &target(),
        "[pgdrill] backup_failed café",
        "café\n.x",
        Timestamp::now(),
    );
    assert!(data.contains("Content-Transfer-Encoding: base64\r\n"));
    assert!(data.contains("Subject: =?UTF-8?B?"));
    assert!(data.ends_with("\r\n.\r\n"));
}

#[test]
fn addresses_are_plain() {
    assert!(is_plain_address("ops@example.com"));
    assert!(!is_plain_address("ops@example.com>\r\nRCPT TO:<x@y"));
    assert!(!is_plain_address("Ops <ops@example.com>"));
    assert!(!is_plain_address("ops"));
    assert!(is_loopback("localhost") && is_loopback("127.0.0.1") && is_loopback("[::1]"));
    assert!(!is_loopback("smtp.example.com"));
}
