//! A throwaway `redis-server` on a free loopback port for each test: no persistence, stopped
//! by PID when dropped, every wait bounded. It can be stalled (SIGSTOP/SIGCONT by PID),
//! restarted empty on the same port, and made to drop its clients (`CLIENT KILL`); a
//! [`LossyProxy`] in front of it drops connections instead of passing replies on.

#![allow(dead_code)]

use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

/// A port that was free a moment ago (the OS picks it; we release it for the server).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

impl RedisServer {
    /// Starts redis-server and waits (at most 10 s) until it answers PING.
    pub fn start() -> Self {
        for _ in 0..5 {
            let mut server = Self::spawn_on(free_port());
            if server.wait_ready(Duration::from_secs(10)) {
                return server;
            }
            // Lost the port to someone else: try another.
            server.stop();
        }
        panic!("redis-server did not start");
    }

    fn spawn_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (checker/test.sh installs it)");
        Self {
            port,
            child: Some(child),
        }
    }

    /// Kills the server and starts a new, empty one on the same port (a restart without
    /// persistence, or a failover to a replica without the keys).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut next = Self::spawn_on(self.port);
            if next.wait_ready(Duration::from_secs(10)) {
                self.child = next.child.take();
                return;
            }
            next.stop();
            // The old socket may linger for a moment; retry within the bound.
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGSTOP: the server keeps its connections but answers nothing (a slow fork, a long
    /// command, a network blip).
    pub fn pause(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    /// `CLIENT KILL TYPE normal` and `TYPE pubsub`: every client connection is dropped.
    /// Returns how many were.
    pub fn kill_clients(&self) -> usize {
        ["normal", "pubsub"]
            .iter()
            .map(|t| {
                let reply = command(self.port, &["CLIENT", "KILL", "TYPE", t]);
                reply
                    .trim_start_matches(':')
                    .trim()
                    .parse::<usize>()
                    .unwrap_or(0)
            })
            .sum()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn wait_ready(&mut self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return false;
                }
            }
            if ping(self.port) {
                return true;
            }
            // External process start-up: a short poll under an overall bound.
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills the server by PID (SIGKILL: "Redis went away") and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server would not die of SIGKILL before it is continued on some systems.
        if let Some(c) = self.child.as_ref() {
            signal(c.id(), libc::SIGCONT);
        }
        self.stop();
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a PID we started; no memory is touched.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// One command in raw RESP on a new connection; the first line of the answer.
pub fn command(port: u16, args: &[&str]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// A TCP proxy in front of a Redis that passes requests on, and drops the connection instead
/// of passing a reply on when told to: the request was executed, its answer is lost.
pub struct LossyProxy {
    pub port: u16,
    /// Drop the next reply (on whichever connection answers first).
    pub drop_next: Arc<AtomicBool>,
    /// Drop every n-th reply chunk (0 = none).
    pub drop_every: Arc<AtomicUsize>,
    /// Replies dropped so far.
    pub dropped: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl LossyProxy {
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let proxy = Self {
            port,
            drop_next: Arc::default(),
            drop_every: Arc::default(),
            dropped: Arc::default(),
            stop: Arc::default(),
        };
        let (drop_next, drop_every, dropped, stop) = (
            proxy.drop_next.clone(),
            proxy.drop_every.clone(),
            proxy.dropped.clone(),
            proxy.stop.clone(),
        );
        let chunks = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        // Non-blocking accept: a short poll so the proxy can be stopped.
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(c2, s2, None));
                let lossy = Lossy {
                    drop_next: drop_next.clone(),
                    drop_every: drop_every.clone(),
                    dropped: dropped.clone(),
                    chunks: chunks.clone(),
                };
                std::thread::spawn(move || pump(server, client, Some(lossy)));
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Lossy {
    drop_next: Arc<AtomicBool>,
    drop_every: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    chunks: Arc<AtomicUsize>,
}

/// Copies `from` to `to` until either side closes; with `lossy`, drops both connections
/// instead of forwarding a chunk when told to.
fn pump(mut from: TcpStream, mut to: TcpStream, lossy: Option<Lossy>) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(l) = &lossy {
            let every = l.drop_every.load(Ordering::SeqCst);
            let nth = l.chunks.fetch_add(1, Ordering::SeqCst) + 1;
            if l.drop_next.swap(false, Ordering::SeqCst) || (every > 0 && nth % every == 0) {
                l.dropped.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A raw RESP PING, so readiness does not depend on the code under test.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Polls Redis (external state) until `channel` has a subscriber, at most 10 s.
pub async fn wait_for_subscriber(url: &str, channel: &str) {
    use streamguard_redis::redis;
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut con)
            .await
            .unwrap();
        if n.first().is_some_and(|(_, n)| *n > 0) {
            return;
        }
        assert!(Instant::now() < deadline, "the waiter never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
