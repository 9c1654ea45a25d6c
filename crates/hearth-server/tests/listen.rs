//! The accept loop's write timeout: a client that stops reading a response that never
//! ends is dropped, instead of holding the connection (and, for a generation, its KV
//! blocks) for ever.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::routing::get;
use axum::Router;
use hearth_server::listen::{serve, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

/// A response body that never ends.
async fn endless() -> Body {
    let chunk = Bytes::from(vec![b'x'; 64 << 10]);
    Body::from_stream(futures_util::stream::repeat_with(move || {
        Ok::<_, std::convert::Infallible>(chunk.clone())
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let limits = Limits {
        read_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(1),
        max_connections: 8,
    };
    tokio::spawn(serve(
        listener,
        Router::new().route("/", get(endless)),
        stop_rx,
        limits,
    ));

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Read nothing while the server's writes stall for longer than its timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What was buffered drains, then the connection ends: EOF or a reset. Without the
    // timeout the body would go on for ever and this read loop would not finish.
    let mut buf = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the server kept writing to a client that had stopped reading"
    );
}
