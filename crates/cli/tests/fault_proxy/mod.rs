//! A fault-injecting HTTP proxy in front of the S3 server: it forwards each request on a
//! connection of its own (`Connection: close`), except those whose request line contains a
//! "stall" needle, which it reads and never answers (the connection stays open, silent).
//! While "down", it reads each request and closes the connection without an answer (a
//! server restarting). Requests whose request line contains a "corrupt" needle are forwarded
//! with the last byte of their body inverted (a faulty link). Stops its threads when dropped.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct FaultProxy {
    pub endpoint: String,
    stalls: Arc<Mutex<Vec<String>>>,
    corrupts: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    down_until: Arc<Mutex<Option<Instant>>>,
}

impl FaultProxy {
    /// Proxies to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let stalls = Arc::new(Mutex::new(Vec::new()));
        let corrupts: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let co = corrupts.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let down_until = Arc::new(Mutex::new(None));
        let (st, se, sp, du) = (
            stalls.clone(),
            seen.clone(),
            stop.clone(),
            down_until.clone(),
        );
        std::thread::spawn(move || {
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (st, se, sp, up) =
                            (st.clone(), se.clone(), sp.clone(), upstream.clone());
                        let co = co.clone();
                        let down = du
                            .lock()
                            .map(|d| d.is_some_and(|t| Instant::now() < t))
                            .unwrap_or(false);
                        std::thread::spawn(move || {
                            let _ = serve(conn, &up, (&st, &co), &se, &sp, down);
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        FaultProxy {
            endpoint,
            stalls,
            corrupts,
            seen,
            stop,
            down_until,
        }
    }

    /// For `how_long` from now, every request is read and its connection closed unanswered.
    pub fn down_for(&self, how_long: Duration) {
        if let Ok(mut d) = self.down_until.lock() {
            *d = Some(Instant::now() + how_long);
        }
    }

    /// Requests whose request line contains `needle` are never answered.
    pub fn stall(&self, needle: &str) {
        if let Ok(mut s) = self.stalls.lock() {
            s.push(needle.to_string());
        }
    }

    /// Requests whose request line contains `needle` reach the server with the last byte
    /// of their body changed.
    pub fn corrupt(&self, needle: &str) {
        if let Ok(mut s) = self.corrupts.lock() {
            s.push(needle.to_string());
        }
    }

    /// Ends every stall and corruption.
    pub fn clear(&self) {
        if let Ok(mut s) = self.stalls.lock() {
            s.clear();
        }
        if let Ok(mut s) = self.corrupts.lock() {
            s.clear();
        }
    }

    /// Request lines seen so far (stalled ones prefixed with `STALLED `).
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(
    mut conn: TcpStream,
    upstream: &str,
    (stalls, corrupts): (&Mutex<Vec<String>>, &Mutex<Vec<String>>),
    seen: &Mutex<Vec<String>>,
    stop: &AtomicBool,
    down: bool,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 16384]);
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let line = head.lines().next().unwrap_or_default().to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < end + 4 + len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if down {
        if let Ok(mut s) = seen.lock() {
            s.push(format!("DOWN {line}"));
        }
        return Ok(());
    }
    let stalled = stalls
        .lock()
        .map(|s| s.iter().any(|n| line.contains(n.as_str())))
        .unwrap_or(false);
    if let Ok(mut s) = seen.lock() {
        s.push(if stalled {
            format!("STALLED {line}")
        } else {
            line.clone()
        });
    }
    if stalled {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return Ok(());
    }
    let corrupted = corrupts
        .lock()
        .map(|s| s.iter().any(|n| line.contains(n.as_str())))
        .unwrap_or(false);
    if corrupted && buf.len() > end + 4 {
        let last = buf.len() - 1;
        buf[last] = !buf[last];
    }
    let mut head_out: Vec<String> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_string)
        .collect();
    head_out.push("Connection: close".into());
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(format!("{}\r\n\r\n", head_out.join("\r\n")).as_bytes())?;
    up.write_all(&buf[end + 4..])?;
    loop {
        let n = up.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        conn.write_all(&chunk[..n])?;
    }
    Ok(())
}
