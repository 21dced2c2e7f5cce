//! Alerts against local receivers: a tiny HTTP server (Slack, webhook, ping) and a tiny SMTP
//! server, both on 127.0.0.1:0, bounded and stopped when dropped.
//!
//! (One file of about 1070 lines: every channel's tests share these receivers and their
//! fixtures.)

use pgdrill_core::alert::{
    AlertEvent, Alerter, AlertsSection, ChannelOutcome, DedupState, EventKind, SmtpSection,
};
use pgdrill_core::time::{self, Timestamp};
use pgdrill_core::Error;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a receiver lives at most.
const RECEIVER_LIFETIME: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Accepts, reads the request and never answers.
    Hang,
}

struct HttpReceiver {
    base: String,
    reqs: Arc<Mutex<Vec<Req>>>,
    task: JoinHandle<()>,
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpReceiver {
    async fn start(answer: Answer) -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let seen = reqs.clone();
        let task = tokio::spawn(async move {
            let serve = async {
                for _ in 0..50 {
                    let Ok((sock, _)) = listener.accept().await else {
                        return;
                    };
                    tokio::spawn(serve_http(sock, answer, seen.clone()));
                }
            };
            let _ = tokio::time::timeout(RECEIVER_LIFETIME, serve).await;
        });
        HttpReceiver { base, reqs, task }
    }
    fn reqs(&self) -> Vec<Req> {
        self.reqs.lock().expect("lock").clone()
    }
}

async fn serve_http(sock: TcpStream, answer: Answer, seen: Arc<Mutex<Vec<Req>>>) {
    let mut io = BufReader::new(sock);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        match io.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push(line.trim_end().to_string()),
        }
        if head.len() > 100 {
            return;
        }
    }
    let Some(first) = head.first() else { return };
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = head[1..]
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(1 << 20);
    let mut body = vec![0; len];
    if io.read_exact(&mut body).await.is_err() {
        return;
    }
    let req = Req {
        method,
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    seen.lock().expect("lock").push(req);
    let code = match answer {
        Answer::Hang => {
            tokio::time::sleep(RECEIVER_LIFETIME).await;
            return;
        }
        Answer::Status(c) => c,
    };
    // An error body echoing the path: it holds the URL's token, which must be scrubbed.
    let text = if code == 200 {
        "ok".to_string()
    } else {
        format!("no good for {path}")
    };
    let resp = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = io.get_mut().write_all(resp.as_bytes()).await;
    let _ = io.get_mut().shutdown().await;
}

#[derive(Clone, Debug, Default)]
struct Mail {
    /// The mail came over TLS.
    tls: bool,
    auth: Option<String>,
    mail_from: String,
    rcpt: Vec<String>,
    /// As received, dot-stuffed, without the final `.` line.
    data: String,
}

impl Mail {
    /// The DATA section with dot-stuffing undone, `\n` line ends.
    fn unstuffed(&self) -> String {
        self.data
            .split("\r\n")
            .map(|l| l.strip_prefix('.').unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct SmtpReceiver {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How the test SMTP server offers TLS (its certificate: `tests/fixtures/tls`, issued by
/// the test CA in `ca.pem` for localhost and 127.0.0.1).
#[derive(Clone, Copy, Debug, PartialEq)]
enum ServerTls {
    None,
    /// Offers STARTTLS.
    StartTls,
    /// Offers STARTTLS, and sends a line after its 220 reply before the handshake.
    StartTlsInjecting,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(fixture("server.pem"))
        .expect("server.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).expect("server.key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl SmtpReceiver {
    /// Refuses `RCPT TO` for the addresses in `refuse` with 550.
    async fn start(refuse: &[&str]) -> SmtpReceiver {
        Self::start_tls(refuse, ServerTls::None).await
    }

    async fn start_tls(refuse: &[&str], tls: ServerTls) -> SmtpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let seen = mails.clone();
        let refuse: Vec<String> = refuse.iter().map(|s| s.to_string()).collect();
        let acceptor = tls_acceptor();
        let task = tokio::spawn(async move {
            let serve = async {
                for _ in 0..10 {
                    let Ok((sock, _)) = listener.accept().await else {
                        return;
                    };
                    let sock: Box<dyn Io> = if tls == ServerTls::Implicit {
                        match acceptor.accept(sock).await {
                            Ok(s) => Box::new(s),
                            Err(_) => continue,
                        }
                    } else {
                        Box::new(sock)
                    };
                    serve_smtp(sock, tls, &acceptor, &refuse, &seen).await;
                }
            };
            let _ = tokio::time::timeout(RECEIVER_LIFETIME, serve).await;
        });
        SmtpReceiver { port, mails, task }
    }
    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("lock").clone()
    }
}

async fn serve_smtp(
    sock: Box<dyn Io>,
    tls: ServerTls,
    acceptor: &tokio_rustls::TlsAcceptor,
    refuse: &[String],
    seen: &Mutex<Vec<Mail>>,
) {
    let mut io = BufReader::new(sock);
    let mut mail = Mail {
        tls: tls == ServerTls::Implicit,
        ..Mail::default()
    };
    if io.get_mut().write_all(b"220 test ESMTP\r\n").await.is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end();
        let upper = cmd.to_ascii_uppercase();
        let offers_starttls = !mail.tls && tls != ServerTls::None && tls != ServerTls::Implicit;
        let reply: &str = if upper.starts_with("EHLO") {
            if offers_starttls {
                "250-test\r\n250-STARTTLS\r\n250 SIZE 1000000\r\n"
            } else {
                "250-test\r\n250-AUTH PLAIN\r\n250 SIZE 1000000\r\n"
            }
        } else if upper == "STARTTLS" && offers_starttls {
            let ready: &[u8] = if tls == ServerTls::StartTlsInjecting {
                b"220 go ahead\r\n250 injected\r\n"
            } else {
                b"220 go ahead\r\n"
            };
            if io.get_mut().write_all(ready).await.is_err() {
                return;
            }
            let Ok(secured) = acceptor.accept(io.into_inner()).await else {
                return;
            };
            io = BufReader::new(Box::new(secured));
            mail.tls = true;
            continue;
        } else if cmd.starts_with("AUTH PLAIN ") && offers_starttls {
            "530 5.7.0 Must issue a STARTTLS command first\r\n"
        } else if let Some(token) = cmd.strip_prefix("AUTH PLAIN ") {
            mail.auth = Some(token.to_string());
            "235 2.7.0 ok\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            mail.mail_from = cmd[10..].to_string();
            "250 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            let who = cmd[8..].trim_matches(|c| c == '<' || c == '>').to_string();
            if refuse.contains(&who) {
                "550 5.1.1 no such user\r\n"
            } else {
                mail.rcpt.push(who);
                "250 ok\r\n"
            }
        } else if upper == "DATA" {
            if io.get_mut().write_all(b"354 go on\r\n").await.is_err() {
                return;
            }
            let mut data = Vec::new();
            loop {
                let mut l = String::new();
                if io.read_line(&mut l).await.unwrap_or(0) == 0 {
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                data.push(l);
            }
            mail.data = data.concat();
            seen.lock().expect("lock").push(mail.clone());
            "250 queued\r\n"
        } else if upper == "QUIT" {
            let _ = io.get_mut().write_all(b"221 bye\r\n").await;
            return;
        } else {
            "502 what\r\n"
        };
        if io.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn t0() -> Timestamp {
    time::parse("2025-03-02T04:05:06Z").expect("time")
}

fn event(kind: EventKind, summary: &str) -> AlertEvent {
    AlertEvent {
        kind,
        database: "app".into(),
        summary: summary.into(),
        details: json!({}),
        at: t0(),
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn smtp_section(port: u16, to: &[&str]) -> SmtpSection {
    SmtpSection {
        host: "127.0.0.1".into(),
        port: Some(port),
        from: "pgdrill@example.com".into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        ..SmtpSection::default()
    }
}

fn by_channel<'a>(outcomes: &'a [ChannelOutcome], name: &str) -> &'a ChannelOutcome {
    outcomes
        .iter()
        .find(|o| o.channel == name)
        .unwrap_or_else(|| panic!("no {name} outcome in {outcomes:?}"))
}

/// Named `alert::...` so that `cargo test -p pgdrill-core alert` runs them all.
mod alert {
    use super::*;

    #[tokio::test]
    async fn slack_text_names_what_happened_and_escapes() {
        let slack = HttpReceiver::start(Answer::Status(200)).await;
        let cfg = AlertsSection {
            slack_webhook_env: Some("SLACK_URL".into()),
            ..Default::default()
        };
        let url = format!("{}/services/T1/B2/tok", slack.base);
        let alerter = Alerter::from_config(&cfg, &env(&[("SLACK_URL", &url)])).expect("config");
        let ev = event(
            EventKind::BackupFailed,
            "pg_dump exited with 1 <after> 3 retries & gave up.",
        );
        let out = alerter.notify(&ev, &mut DedupState::default()).await;
        assert_eq!(out.len(), 1);
        assert!(out[0].sent && out[0].error.is_none(), "{out:?}");
        let reqs = slack.reqs();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].path, "/services/T1/B2/tok");
        assert_eq!(reqs[0].header("content-type"), Some("application/json"));
        let text = reqs[0].json()["text"].as_str().expect("text").to_string();
        assert!(text.contains("backup failed"), "{text}");
        assert!(text.contains("`app`"), "{text}");
        assert!(text.contains("pg_dump exited with 1 &lt;after&gt; 3 retries &amp; gave up."));
        assert!(text.contains("2025-03-02T04:05:06Z"), "{text}");
    }

    #[tokio::test]
    async fn webhook_json_has_kind_database_summary_details_at_and_version() {
        let hook = HttpReceiver::start(Answer::Status(200)).await;
        let cfg = AlertsSection {
            webhook_url_env: Some("HOOK".into()),
            ..Default::default()
        };
        let alerter = Alerter::from_config(&cfg, &env(&[("HOOK", &format!("{}/hook", hook.base))]))
            .expect("config");
        let mut ev = event(EventKind::SloViolated, "No passing drill this month.");
        ev.details = json!({"slo": "drill", "last_pass": null, "rto_seconds": 42});
        let out = alerter.notify(&ev, &mut DedupState::default()).await;
        assert!(out[0].sent, "{out:?}");
        let doc = hook.reqs()[0].json();
        assert_eq!(doc["kind"], "slo_violated");
        assert_eq!(doc["database"], "app");
        assert_eq!(doc["summary"], "No passing drill this month.");
        assert_eq!(doc["details"]["rto_seconds"], 42);
        assert_eq!(doc["at"], "2025-03-02T04:05:06Z");
        assert_eq!(doc["source"], "pgdrill");
        assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(doc["failing"], true);
    }

    #[tokio::test]
    async fn ping_path_follows_the_event_and_is_never_deduplicated() {
        let ping = HttpReceiver::start(Answer::Status(200)).await;
        let slack = HttpReceiver::start(Answer::Status(200)).await;
        let cfg = AlertsSection {
            ping_url_env: Some("PING".into()),
            slack_webhook_env: Some("SLACK".into()),
            ..Default::default()
        };
        let e = env(&[("PING", &ping.base), ("SLACK", &slack.base)]);
        let alerter = Alerter::from_config(&cfg, &e).expect("config");
        let mut state = DedupState::default();
        let kinds = [
            EventKind::JobStarted,
            EventKind::BackupSucceeded,
            EventKind::BackupFailed,
            EventKind::BackupFailed,
            EventKind::DrillPassed,
            EventKind::DrillFailed,
            EventKind::SloViolated,
            EventKind::Recovered,
        ];
        for k in kinds {
            let out = alerter.notify(&event(k, "same words"), &mut state).await;
            assert!(by_channel(&out, "ping").sent, "{k}: {out:?}");
        }
        let paths: Vec<String> = ping.reqs().into_iter().map(|r| r.path).collect();
        assert_eq!(
            paths,
            ["/start", "/", "/fail", "/fail", "/", "/fail", "/fail", "/"]
        );
        // Slack: three failures (one a duplicate) and the recovery.
        assert_eq!(slack.reqs().len(), 4);

        // A base with a path (and a trailing slash) keeps it.
        let cfg = AlertsSection {
            ping_url_env: Some("PING".into()),
            ..Default::default()
        };
        let e = env(&[("PING", &format!("{}/ping/0f3e-uuid/", ping.base))]);
        let alerter = Alerter::from_config(&cfg, &e).expect("config");
        for k in [
            EventKind::JobStarted,
            EventKind::DrillPassed,
            EventKind::DrillFailed,
        ] {
            alerter.notify(&event(k, "x"), &mut state).await;
        }
        let paths: Vec<String> = ping.reqs().into_iter().skip(8).map(|r| r.path).collect();
        assert_eq!(
            paths,
            [
                "/ping/0f3e-uuid/start",
                "/ping/0f3e-uuid",
                "/ping/0f3e-uuid/fail"
            ]
        );
        assert!(ping.reqs()[0].body.contains("job started"));
    }

    #[tokio::test]
    async fn email_subject_body_recipients_auth_and_dot_stuffing() {
        let smtp = SmtpReceiver::start(&[]).await;
        let mut section = smtp_section(smtp.port, &["ops@example.com", "dba@example.com"]);
        section.username = Some("pgdrill".into());
        section.password_env = Some("SMTP_PW".into());
        let cfg = AlertsSection {
            smtp: Some(section),
            ..Default::default()
        };
        let alerter =
            Alerter::from_config(&cfg, &env(&[("SMTP_PW", "pw-CANARY-1234")])).expect("config");
        let mut ev = event(EventKind::DrillFailed, "Row counts differ in 2 tables.");
        ev.details = json!({"stderr": "line one\n.\n..starts with dots\nlast", "tables": 2});
        let out = alerter.notify(&ev, &mut DedupState::default()).await;
        assert_eq!(out.len(), 1);
        assert!(out[0].sent && out[0].error.is_none(), "{out:?}");
        let mails = smtp.mails();
        assert_eq!(mails.len(), 1);
        let m = &mails[0];
        assert_eq!(m.auth.as_deref(), Some("AHBnZHJpbGwAcHctQ0FOQVJZLTEyMzQ="));
        assert_eq!(m.mail_from, "<pgdrill@example.com>");
        assert_eq!(m.rcpt, ["ops@example.com", "dba@example.com"]);
        assert!(
            m.data.contains("Subject: [pgdrill] drill_failed app\r\n"),
            "{}",
            m.data
        );
        assert!(m.data.contains("From: pgdrill@example.com\r\n"));
        assert!(m
            .data
            .contains("Content-Type: text/plain; charset=utf-8\r\n"));
        // Dot-stuffed on the wire, restored by the receiver.
        assert!(m
            .data
            .contains("\r\nline one\r\n..\r\n...starts with dots\r\nlast\r\n"));
        let body = m.unstuffed();
        assert!(
            body.contains("\nline one\n.\n..starts with dots\nlast\n"),
            "{body}"
        );
        assert!(body.contains("Database: app"));
        assert!(body.contains("Row counts differ in 2 tables."));
        assert!(body.contains("tables: 2"));
        assert!(body.contains("restore drill failed"));
    }

    /// One email alert through `section`; the outcome of the email channel.
    async fn send_one(section: SmtpSection) -> ChannelOutcome {
        let cfg = AlertsSection {
            smtp: Some(section),
            ..Default::default()
        };
        let alerter =
            Alerter::from_config(&cfg, &env(&[("SMTP_PW", "pw-CANARY-tls")])).expect("config");
        let ev = event(EventKind::BackupFailed, "pg_dump failed.");
        let mut out = alerter.notify(&ev, &mut DedupState::default()).await;
        assert_eq!(out.len(), 1, "{out:?}");
        out.remove(0)
    }

    #[tokio::test]
    async fn email_goes_over_starttls_and_smtps_with_the_server_certificate_checked() {
        // STARTTLS: the password only after the upgrade (the server refuses AUTH before).
        let smtp = SmtpReceiver::start_tls(&[], ServerTls::StartTls).await;
        let out = send_one(SmtpSection {
            starttls: true,
            ca_file: Some(fixture("ca.pem")),
            username: Some("pgdrill".into()),
            password_env: Some("SMTP_PW".into()),
            ..smtp_section(smtp.port, &["ops@example.com"])
        })
        .await;
        assert!(out.sent && out.error.is_none(), "{out:?}");
        let mails = smtp.mails();
        assert_eq!(mails.len(), 1);
        assert!(mails[0].tls, "the mail came over TLS");
        assert!(mails[0].auth.is_some());
        assert!(mails[0]
            .data
            .contains("Subject: [pgdrill] backup_failed app\r\n"));

        // SMTPS: TLS from the first byte, by host name.
        let smtps = SmtpReceiver::start_tls(&[], ServerTls::Implicit).await;
        let out = send_one(SmtpSection {
            host: "localhost".into(),
            tls: true,
            ca_file: Some(fixture("ca.pem")),
            ..smtp_section(smtps.port, &["ops@example.com"])
        })
        .await;
        assert!(out.sent && out.error.is_none(), "{out:?}");
        assert_eq!(smtps.mails().len(), 1);
        assert!(smtps.mails()[0].tls);
    }

    #[tokio::test]
    async fn tls_never_falls_back_to_plain_text() {
        // A certificate from a CA the client does not trust (no ca_file): refused, nothing
        // sent, not retried.
        let smtp = SmtpReceiver::start_tls(&[], ServerTls::StartTls).await;
        let t = Instant::now();
        let out = send_one(SmtpSection {
            starttls: true,
            username: Some("pgdrill".into()),
            password_env: Some("SMTP_PW".into()),
            ..smtp_section(smtp.port, &["ops@example.com"])
        })
        .await;
        let err = out.error.clone().unwrap_or_default();
        assert!(!out.sent && err.contains("certificate"), "{out:?}");
        assert!(!err.contains("CANARY"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5), "not retried");
        assert!(smtp.mails().is_empty());

        // A server that offers no STARTTLS (no mail in plain text), and one that sends bytes
        // after its STARTTLS reply, before the handshake (injected commands): refused.
        for (server_tls, why) in [
            (ServerTls::None, "STARTTLS"),
            (ServerTls::StartTlsInjecting, "before the TLS handshake"),
        ] {
            let server = SmtpReceiver::start_tls(&[], server_tls).await;
            let out = send_one(SmtpSection {
                starttls: true,
                ca_file: Some(fixture("ca.pem")),
                ..smtp_section(server.port, &["ops@example.com"])
            })
            .await;
            assert!(
                !out.sent && out.error.as_deref().unwrap_or("").contains(why),
                "{server_tls:?}: {out:?}"
            );
            assert!(server.mails().is_empty());
        }
    }

    #[tokio::test]
    async fn failing_slack_does_not_stop_webhook_and_email() {
        let slack = HttpReceiver::start(Answer::Status(500)).await;
        let hook = HttpReceiver::start(Answer::Status(200)).await;
        let smtp = SmtpReceiver::start(&[]).await;
        let cfg = AlertsSection {
            slack_webhook_env: Some("SLACK".into()),
            webhook_url_env: Some("HOOK".into()),
            smtp: Some(smtp_section(smtp.port, &["ops@example.com"])),
            ..Default::default()
        };
        let e = env(&[("SLACK", &slack.base), ("HOOK", &hook.base)]);
        let alerter = Alerter::from_config(&cfg, &e).expect("config");
        assert_eq!(alerter.channel_names(), ["slack", "webhook", "email"]);
        let mut state = DedupState::default();
        let ev = event(EventKind::BackupFailed, "Upload failed.");
        let out = alerter.notify(&ev, &mut state).await;
        let channels: Vec<&str> = out.iter().map(|o| o.channel.as_str()).collect();
        assert_eq!(channels, ["slack", "webhook", "email"]);
        assert!(!out[0].sent);
        let err = out[0].error.as_deref().expect("slack error");
        assert!(err.starts_with("slack webhook failed: HTTP 500"), "{err}");
        assert_eq!(slack.reqs().len(), 2, "one retry");
        assert!(out[1].sent && out[1].error.is_none(), "{out:?}");
        assert!(out[2].sent && out[2].error.is_none(), "{out:?}");
        assert_eq!(hook.reqs().len(), 1);
        assert_eq!(smtp.mails().len(), 1);

        // A failed send is not recorded: the same alert tries Slack again, the others skip it.
        let out = alerter.notify(&ev, &mut state).await;
        assert!(
            !out[0].skipped_duplicate && out[0].error.is_some(),
            "{out:?}"
        );
        assert!(
            out[1].skipped_duplicate && out[2].skipped_duplicate,
            "{out:?}"
        );
        assert_eq!(slack.reqs().len(), 4);
    }

    #[tokio::test]
    async fn hanging_channel_costs_only_its_own_timeout() {
        let hang = HttpReceiver::start(Answer::Hang).await;
        let slack = HttpReceiver::start(Answer::Status(200)).await;
        let smtp = SmtpReceiver::start(&[]).await;
        let cfg = AlertsSection {
            slack_webhook_env: Some("SLACK".into()),
            webhook_url_env: Some("HOOK".into()),
            smtp: Some(smtp_section(smtp.port, &["ops@example.com"])),
            ..Default::default()
        };
        let e = env(&[("SLACK", &slack.base), ("HOOK", &hang.base)]);
        let alerter = Alerter::from_config(&cfg, &e)
            .expect("config")
            .with_timeout(Duration::from_millis(700));
        let started = Instant::now();
        let out = alerter
            .notify(
                &event(EventKind::DrillFailed, "x"),
                &mut DedupState::default(),
            )
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let hook = by_channel(&out, "webhook");
        assert!(!hook.sent);
        assert!(
            hook.error
                .as_deref()
                .unwrap_or("")
                .contains("webhook failed: timed out"),
            "{hook:?}"
        );
        assert!(
            by_channel(&out, "slack").sent && by_channel(&out, "email").sent,
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn dedup_skips_identical_alerts_and_recovery_resets_it() {
        let slack = HttpReceiver::start(Answer::Status(200)).await;
        let hook = HttpReceiver::start(Answer::Status(200)).await;
        let cfg = AlertsSection {
            slack_webhook_env: Some("SLACK".into()),
            webhook_url_env: Some("HOOK".into()),
            ..Default::default()
        };
        let e = env(&[("SLACK", &slack.base), ("HOOK", &hook.base)]);
        let alerter = Alerter::from_config(&cfg, &e).expect("config");
        let mut state = DedupState::default();
        let fail = event(EventKind::BackupFailed, "pg_dump exited with 1.");
        let sent = |out: &[ChannelOutcome]| out.iter().all(|o| o.sent && !o.skipped_duplicate);
        let skipped = |out: &[ChannelOutcome]| out.iter().all(|o| !o.sent && o.skipped_duplicate);

        assert!(sent(&alerter.notify(&fail, &mut state).await));
        // Kept by the caller between runs: it survives a round trip through JSON.
        let saved = serde_json::to_string(&state).expect("serialize");
        let mut state: DedupState = serde_json::from_str(&saved).expect("deserialize");
        let mut later = fail.clone();
        later.at = time::add_secs(t0(), 30 * 60);
        assert!(skipped(&alerter.notify(&later, &mut state).await));
        // Another database or another summary is not a duplicate.
        let mut other_db = later.clone();
        other_db.database = "billing".into();
        assert!(sent(&alerter.notify(&other_db, &mut state).await));
        let mut other_summary = later.clone();
        other_summary.summary = "Upload failed.".into();
        assert!(sent(&alerter.notify(&other_summary, &mut state).await));
        // Plain successes go nowhere (but are not duplicates either).
        let ok = event(EventKind::BackupSucceeded, "Backup done.");
        let out = alerter.notify(&ok, &mut state).await;
        assert!(out
            .iter()
            .all(|o| !o.sent && !o.skipped_duplicate && o.error.is_none()));
        // Recovery is sent and forgets the failures of `app` ...
        let mut recovered = event(EventKind::Recovered, "Backups succeed again.");
        recovered.at = time::add_secs(t0(), 40 * 60);
        assert!(sent(&alerter.notify(&recovered, &mut state).await));
        let mut again = fail.clone();
        again.at = time::add_secs(t0(), 50 * 60);
        assert!(sent(&alerter.notify(&again, &mut state).await));
        // ... but not of `billing`.
        let mut billing = other_db.clone();
        billing.at = time::add_secs(t0(), 55 * 60);
        assert!(skipped(&alerter.notify(&billing, &mut state).await));
        // A failure forgets the earlier recovery, so the next recovery is sent too.
        recovered.at = time::add_secs(t0(), 60 * 60);
        assert!(sent(&alerter.notify(&recovered, &mut state).await));
        // After the window (360 minutes) the same alert is sent again.
        let mut much_later = other_db.clone();
        much_later.at = time::add_secs(t0(), (30 + 360) * 60);
        assert!(sent(&alerter.notify(&much_later, &mut state).await));
        assert_eq!(slack.reqs().len(), 7);
        assert_eq!(hook.reqs().len(), 7);

        // dedup_minutes = 0 sends every time.
        let cfg = AlertsSection {
            dedup_minutes: Some(0),
            ..cfg
        };
        let alerter = Alerter::from_config(&cfg, &e).expect("config");
        let mut state = DedupState::default();
        assert!(sent(&alerter.notify(&fail, &mut state).await));
        assert!(sent(&alerter.notify(&fail, &mut state).await));
    }

    #[tokio::test]
    async fn refused_recipient_is_reported_while_others_get_the_mail() {
        let smtp = SmtpReceiver::start(&["gone@example.com"]).await;
        let cfg = AlertsSection {
            smtp: Some(smtp_section(
                smtp.port,
                &["gone@example.com", "ops@example.com"],
            )),
            ..Default::default()
        };
        let alerter = Alerter::from_config(&cfg, &BTreeMap::new()).expect("config");
        let out = alerter
            .notify(
                &event(EventKind::BackupFailed, "x"),
                &mut DedupState::default(),
            )
            .await;
        assert!(out[0].sent, "{out:?}");
        let err = out[0].error.as_deref().expect("warning");
        assert!(
            err.contains("RCPT TO gone@example.com answered 550"),
            "{err}"
        );
        assert_eq!(smtp.mails()[0].rcpt, ["ops@example.com"]);

        // Every recipient refused: not sent, and 5xx is not retried.
        let smtp = SmtpReceiver::start(&["gone@example.com"]).await;
        let cfg = AlertsSection {
            smtp: Some(smtp_section(smtp.port, &["gone@example.com"])),
            ..Default::default()
        };
        let alerter = Alerter::from_config(&cfg, &BTreeMap::new()).expect("config");
        let out = alerter
            .notify(
                &event(EventKind::BackupFailed, "x"),
                &mut DedupState::default(),
            )
            .await;
        assert!(!out[0].sent);
        assert!(out[0]
            .error
            .as_deref()
            .unwrap_or("")
            .starts_with("email failed: RCPT TO"));
        assert!(smtp.mails().is_empty());
    }

    #[tokio::test]
    async fn no_canary_secret_reaches_payloads_errors_or_debug() {
        let slack = HttpReceiver::start(Answer::Status(500)).await;
        let hook = HttpReceiver::start(Answer::Status(200)).await;
        let ping = HttpReceiver::start(Answer::Status(200)).await;
        let smtp = SmtpReceiver::start(&[]).await;
        // A port nobody listens on: the connection error must not show the URL either.
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let closed_url = format!(
            "http://{}/hook/CANARY-refused-0001",
            closed.local_addr().expect("a")
        );
        drop(closed);

        let slack_url = format!("{}/services/T01/B02/CANARYslacktoken01", slack.base);
        let hook_url = format!("{}/hook/CANARY-hook-token-0002", hook.base);
        let ping_url = format!("{}/ping/CANARY-ping-uuid-0003", ping.base);
        let mut section = smtp_section(smtp.port, &["ops@example.com"]);
        section.username = Some("pgdrill".into());
        section.password_env = Some("SMTP_PW".into());
        let cfg = AlertsSection {
            slack_webhook_env: Some("SLACK".into()),
            webhook_url_env: Some("HOOK".into()),
            ping_url_env: Some("PING".into()),
            smtp: Some(section),
            dedup_minutes: None,
        };
        let e = env(&[
            ("SLACK", &slack_url),
            ("HOOK", &hook_url),
            ("PING", &ping_url),
            ("SMTP_PW", "pw-CANARY-1234"),
        ]);
        let alerter = Alerter::from_config(&cfg, &e).expect("config");
        let mut ev = event(
            EventKind::BackupFailed,
            &format!(
                "Posting to {hook_url} with pw-CANARY-1234 failed; token CANARY-ping-uuid-0003."
            ),
        );
        ev.details = json!({
            "source": "postgres://app:CANARYdbpw@db.internal:5432/app",
            "conninfo": "host=db user=app password=CANARYkw sslmode=require",
            "nested": [{"url": slack_url}],
        });
        let mut state = DedupState::default();
        let out = alerter.notify(&ev, &mut state).await;
        assert!(by_channel(&out, "webhook").sent, "{out:?}");
        assert!(
            by_channel(&out, "email").sent && by_channel(&out, "ping").sent,
            "{out:?}"
        );
        assert!(by_channel(&out, "slack").error.is_some());

        let refused_cfg = AlertsSection {
            webhook_url_env: Some("HOOK".into()),
            ..Default::default()
        };
        let refused = Alerter::from_config(&refused_cfg, &env(&[("HOOK", &closed_url)]))
            .expect("config")
            .with_timeout(Duration::from_secs(5));
        let refused_out = refused.notify(&ev, &mut state).await;
        let refused_err = refused_out[0].error.clone().expect("refused error");
        assert!(
            refused_err.starts_with("webhook failed: could not connect"),
            "{refused_err}"
        );

        let mut seen = Vec::new();
        for r in slack.reqs().iter().chain(&hook.reqs()).chain(&ping.reqs()) {
            seen.push(r.body.clone());
        }
        seen.extend(smtp.mails().into_iter().map(|m| m.data));
        seen.extend(
            out.iter()
                .chain(&refused_out)
                .filter_map(|o| o.error.clone()),
        );
        seen.push(format!("{out:?} {refused_out:?}"));
        seen.push(format!("{alerter:?} {refused:?}"));
        seen.push(serde_json::to_string(&state).expect("state"));
        assert!(seen.len() >= 8);
        for s in &seen {
            assert!(!s.contains("CANARY"), "secret leaked: {s}");
        }
        // Scrubbed, not dropped: the webhook still shows where the secrets were.
        let doc = hook.reqs()[0].json();
        assert_eq!(
            doc["details"]["source"],
            "postgres://***@db.internal:5432/app"
        );
        assert_eq!(
            doc["details"]["conninfo"],
            "host=db user=app password=*** sslmode=require"
        );
        assert_eq!(doc["summary"], "Posting to *** with *** failed; token ***.");
    }

    #[test]
    fn unset_env_var_is_invalid_and_named() {
        let cases = [
            AlertsSection {
                slack_webhook_env: Some("SLACK_URL_X".into()),
                ..Default::default()
            },
            AlertsSection {
                webhook_url_env: Some("SLACK_URL_X".into()),
                ..Default::default()
            },
            AlertsSection {
                ping_url_env: Some("SLACK_URL_X".into()),
                ..Default::default()
            },
            AlertsSection {
                smtp: Some(SmtpSection {
                    username: Some("u".into()),
                    password_env: Some("SLACK_URL_X".into()),
                    ..smtp_section(25, &["ops@example.com"])
                }),
                ..Default::default()
            },
        ];
        for cfg in cases {
            match Alerter::from_config(&cfg, &env(&[("SLACK_URL_X", "  ")])) {
                Err(Error::Invalid(m)) => assert!(m.contains("SLACK_URL_X"), "{m}"),
                other => panic!("expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn config_is_validated_without_showing_secrets() {
        let bad_url = AlertsSection {
            webhook_url_env: Some("HOOK".into()),
            ..Default::default()
        };
        match Alerter::from_config(&bad_url, &env(&[("HOOK", "ftp://CANARY@x/y")])) {
            Err(Error::Invalid(m)) => assert!(m.contains("HOOK") && !m.contains("CANARY"), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        let remote_auth = AlertsSection {
            smtp: Some(SmtpSection {
                host: "smtp.example.com".into(),
                username: Some("u".into()),
                password_env: Some("PW".into()),
                ..smtp_section(587, &["ops@example.com"])
            }),
            ..Default::default()
        };
        assert!(matches!(
            Alerter::from_config(&remote_auth, &env(&[("PW", "secret")])),
            Err(Error::Invalid(m)) if m.contains("loopback")
        ));
        // Over TLS, AUTH may go to any host.
        let remote_tls = AlertsSection {
            smtp: Some(SmtpSection {
                starttls: true,
                ..remote_auth.smtp.clone().expect("smtp")
            }),
            ..Default::default()
        };
        Alerter::from_config(&remote_tls, &env(&[("PW", "secret")])).expect("AUTH over TLS");
        let both = AlertsSection {
            smtp: Some(SmtpSection {
                starttls: true,
                tls: true,
                ..smtp_section(587, &["ops@example.com"])
            }),
            ..Default::default()
        };
        assert!(matches!(
            Alerter::from_config(&both, &BTreeMap::new()),
            Err(Error::Invalid(m)) if m.contains("exclude each other")
        ));
        let plain_ca = AlertsSection {
            smtp: Some(SmtpSection {
                ca_file: Some(fixture("ca.pem")),
                ..smtp_section(25, &["ops@example.com"])
            }),
            ..Default::default()
        };
        assert!(matches!(
            Alerter::from_config(&plain_ca, &BTreeMap::new()),
            Err(Error::Invalid(m)) if m.contains("ca_file")
        ));
        for bad in [fixture("missing.pem"), fixture("server.key")] {
            let cfg = AlertsSection {
                smtp: Some(SmtpSection {
                    tls: true,
                    ca_file: Some(bad.clone()),
                    ..smtp_section(465, &["ops@example.com"])
                }),
                ..Default::default()
            };
            match Alerter::from_config(&cfg, &BTreeMap::new()) {
                Err(Error::Invalid(m)) => assert!(m.contains("ca_file"), "{m}"),
                other => panic!("{}: expected Invalid, got {other:?}", bad.display()),
            }
        }
        let injected = AlertsSection {
            smtp: Some(smtp_section(25, &["ops@example.com>\r\nRCPT TO:<x@y"])),
            ..Default::default()
        };
        assert!(matches!(
            Alerter::from_config(&injected, &BTreeMap::new()),
            Err(Error::Invalid(_))
        ));
        let none =
            Alerter::from_config(&AlertsSection::default(), &BTreeMap::new()).expect("empty");
        assert!(none.is_empty());
    }

    #[test]
    fn alerts_table_parses_from_toml_and_rejects_unknown_keys() {
        let cfg: AlertsSection = toml::from_str(
            r#"
        slack_webhook_env = "PGDRILL_SLACK_URL"
        ping_url_env = "PGDRILL_PING_URL"
        dedup_minutes = 60
        [smtp]
        host = "127.0.0.1"
        from = "pgdrill@example.com"
        to = ["ops@example.com"]
        "#,
        )
        .expect("parse");
        assert_eq!(cfg.dedup_minutes, Some(60));
        let smtp = cfg.smtp.expect("smtp");
        assert_eq!((smtp.port, smtp.starttls, smtp.tls), (None, false, false));
        assert!(toml::from_str::<AlertsSection>("slack_url = \"https://x\"").is_err());
    }
}
