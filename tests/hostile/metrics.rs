//! Attacks on the Prometheus endpoint (`metrics_listener`), while the probe keeps its MQTT
//! traffic going: junk, a 1 MB request line, scrapers that never finish their request (more
//! of them than the endpoint serves at once). Each gets a clean answer and a close, within
//! bounded time; the probe sees no difference.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::peers::free_port;
use crate::under_attack;

/// The endpoint's bound on a request head's time (`metrics::REQUEST_TIMEOUT`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn open(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(REQUEST_TIMEOUT + Duration::from_secs(3)))
        .unwrap();
    s
}

/// Reads what the server says until it closes; the status line.
fn status(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) => panic!(
            "no clean close: {e} after {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
    let text = String::from_utf8_lossy(&out);
    text.lines().next().unwrap_or("").to_owned()
}

#[test]
fn metrics_endpoint_junk_huge_and_slow_requests() {
    let port = free_port();
    let config = format!("metrics_listener = \"127.0.0.1:{port}\"\n");
    under_attack("metrics-endpoint", &config, |_| {
        // Junk: a TLS hello where HTTP was expected.
        let mut s = open(port);
        s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03junk\r\n\r\n")
            .unwrap();
        assert_eq!(status(s), "HTTP/1.1 400 Bad Request");
        // A 1 MB request line: refused once the head passes its cap, not buffered.
        let s = open(port);
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let mut line = b"GET /".to_vec();
            line.extend(std::iter::repeat_n(b'a', 1 << 20));
            // The server stops reading early: the rest may be refused.
            let _ = w.write_all(&line);
        });
        assert_eq!(status(s), "HTTP/1.1 431 Request Header Fields Too Large");
        writer.join().unwrap();
        // The refused requests' threads read what their clients still send until they close
        // (so the answer is not lost to a reset), holding a scrape slot meanwhile.
        std::thread::sleep(Duration::from_millis(500));
        // Slow scrapers: half a request line each, then silence. Four are served at once;
        // the fifth is told so at once.
        let started = Instant::now();
        let slow: Vec<TcpStream> = (0..4)
            .map(|_| {
                let mut s = open(port);
                s.write_all(b"GET /met").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let extra = open(port);
        assert_eq!(status(extra), "HTTP/1.1 503 Service Unavailable");
        assert!(started.elapsed() < Duration::from_secs(2));
        for s in slow {
            assert_eq!(status(s), "HTTP/1.1 408 Request Timeout");
        }
        let took = started.elapsed();
        assert!(
            took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT + Duration::from_secs(2),
            "slow scrapers closed after {took:?}"
        );
        // Served again once they are gone.
        let mut s = open(port);
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(status(s), "HTTP/1.1 200 OK");
    });
}
