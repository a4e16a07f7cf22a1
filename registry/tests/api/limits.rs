//! Resource bounds under abuse: slow-loris headers and idle connections are closed after the
//! header-read timeout, connections beyond the limit wait until one closes, and one client
//! cannot hold more than its share of event streams.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::common::{expect, expect_error, Harness, SseClient, WAIT};

/// Reads until the server closes the connection; the bytes it sent before closing.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut got))
        .await
        .expect("the server should close the connection")
        .ok();
    got
}

#[tokio::test]
async fn headers_trickled_slower_than_the_timeout_close_the_connection() {
    let mut h = Harness::start_with(|c| c.header_read_timeout = Duration::from_millis(200)).await;
    let mut stream = TcpStream::connect(h.registry.as_ref().unwrap().addr())
        .await
        .unwrap();
    // Part of a request head, then nothing: the rest never comes.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "an unfinished request must not be served"
    );
    // Other clients are served as ever.
    expect(h.get("/healthz").send().await.unwrap(), StatusCode::OK).await;
    h.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_timeout() {
    let mut h = Harness::start_with(|c| c.header_read_timeout = Duration::from_millis(200)).await;
    let addr = h.registry.as_ref().unwrap().addr();
    // One that never sends a byte, and one idle after a first request (keep-alive).
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut kept).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(read_until_closed(&mut silent).await.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let mut h = Harness::start_with(|c| {
        c.max_connections = 2;
        c.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = h.registry.as_ref().unwrap().addr();
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    // Not served while two connections are open (the kernel holds it in the backlog)...
    assert!(
        timeout(Duration::from_millis(300), third.read(&mut byte))
            .await
            .is_err(),
        "a third connection was served with a limit of two"
    );
    // ...and served as soon as one of them closes.
    drop(first);
    // (The timed-out read took nothing: `read` is cancel-safe.)
    let answer = read_until_closed(&mut third).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    h.shutdown().await;
}

#[tokio::test]
async fn one_client_cannot_hold_every_event_stream() {
    let mut h = Harness::start_with(|c| {
        c.max_event_subscribers_per_client = 2;
        c.trust_forwarded_for = true;
    })
    .await;
    let path = "/api/streaming/providers/events";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = SseClient::connect(&h).await;
        s.wait_for(|name, _| name == "providers").await;
        open.push(s);
    }
    let third = h.get(path).send().await.unwrap();
    expect_error(
        third,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_event_streams",
    )
    .await;
    // Another client (behind the trusted proxy) still gets one.
    let other = h
        .get(path)
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    drop(other);
    drop(open);
    h.shutdown().await;
}

#[tokio::test]
async fn one_client_cannot_hold_every_connection() {
    let mut h = Harness::start_with(|c| {
        c.max_connections_per_client = 2;
        c.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = h.registry.as_ref().unwrap().addr();
    let _first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    // The third from the same address is closed without an answer...
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(read_until_closed(&mut third).await.is_empty());
    // ...while another address is served.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(addr).await.unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut other).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    h.shutdown().await;
}
