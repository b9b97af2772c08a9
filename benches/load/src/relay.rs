//! A forwarding relay with a delay (`--delay-ms`): a far link on loopback. It accepts on an
//! ephemeral loopback port, opens a connection to the broker for each client, and forwards the
//! bytes both ways, each chunk held for the delay after it was read. The link's one-way delay is
//! the delay (its round trip twice it) and its bandwidth is not limited, so a window of W
//! unacknowledged messages carries at most W per round trip, as on a real far link. It runs on
//! its own thread (a current-thread runtime) so that blocking scenarios can use it too.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks held at once per direction of one connection: far more than a delay of a few hundred
/// milliseconds holds at loopback rates (each is one read, at most `CHUNK` bytes).
const HELD_CHUNKS: usize = 1 << 16;
/// The largest read.
const CHUNK: usize = 64 * 1024;

/// Starts a relay to `target` that holds each chunk `delay` in each direction, and returns the
/// address clients connect to instead of `target`. It serves until the process ends.
pub fn start(target: SocketAddr, delay: Duration) -> io::Result<SocketAddr> {
    let local: SocketAddr = if target.is_ipv4() {
        "127.0.0.1:0".parse().expect("a loopback address")
    } else {
        "[::1]:0".parse().expect("a loopback address")
    };
    let listener = StdListener::bind(local)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => serve(l, target, delay).await,
                    Err(e) => eprintln!("load: relay: {e}"),
                }
            })
        })?;
    Ok(addr)
}

async fn serve(listener: TcpListener, target: SocketAddr, delay: Duration) {
    loop {
        let client = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                eprintln!("load: relay: accept: {e}");
                return;
            }
        };
        tokio::spawn(async move {
            // The client sees a failure to reach the broker as its connection closing.
            if let Ok(broker) = TcpStream::connect(target).await {
                let _ = client.set_nodelay(true);
                let _ = broker.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (br, bw) = broker.into_split();
                tokio::spawn(pump(cr, bw, delay));
                tokio::spawn(pump(br, cw, delay));
            }
        });
    }
}

/// Forwards `from` to `to`, each chunk written `delay` after it was read, in order; the end of
/// `from` (or an error on either side) shuts `to` down once what was read is written.
async fn pump<R, W>(mut from: R, mut to: W, delay: Duration)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(HELD_CHUNKS);
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if tx
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An echo server behind the relay: every byte comes back, in order, no sooner than two
    /// delays (there and back).
    #[test]
    fn bytes_come_through_in_order_after_the_delay_each_way() {
        let echo = StdListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => s.write_all(&buf[..n]).unwrap(),
                }
            }
        });
        let delay = Duration::from_millis(30);
        let addr = start(target, delay).unwrap();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let sent: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let t0 = std::time::Instant::now();
        c.write_all(&sent).unwrap();
        let mut got = vec![0u8; sent.len()];
        c.read_exact(&mut got).unwrap();
        let rtt = t0.elapsed();
        assert_eq!(got, sent);
        assert!(
            rtt >= 2 * delay,
            "came back after {rtt:?}, before two delays"
        );
        assert!(rtt < Duration::from_secs(2), "came back after {rtt:?}");
        // The end of the client's stream reaches the server, whose close comes back.
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.read(&mut got).unwrap(), 0);
    }
}
