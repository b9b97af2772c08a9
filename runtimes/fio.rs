//! The futures-io path shared by smol and async-std: their TCP types implement the same traits
//! and are `Clone`, so one clone reads while the other writes.

/// Implements the driver's socket traits for a futures-io `TcpStream` and `TcpListener` pair.
macro_rules! futures_io_sockets {
    ($stream:ty, $listener:ty) => {
        impl $crate::runtimes::driver::Reader for $stream {
            fn poll_read(
                &mut self,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                futures_lite::AsyncRead::poll_read(std::pin::Pin::new(self), cx, buf)
            }
        }

        impl $crate::runtimes::driver::Writer for $stream {
            fn write_all<'a>(
                &'a mut self,
                buf: &'a [u8],
            ) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'a {
                futures_lite::AsyncWriteExt::write_all(self, buf)
            }

            async fn close(&mut self) {
                let _ = futures_lite::AsyncWriteExt::close(self).await;
            }
        }

        impl $crate::runtimes::driver::Listener for $listener {
            type Reader = $stream;
            type Writer = $stream;

            async fn accept(&mut self) -> std::io::Result<($stream, $stream)> {
                let (s, _) = <$listener>::accept(self).await?;
                s.set_nodelay(true)?;
                Ok((s.clone(), s))
            }
        }
    };
}

pub(crate) use futures_io_sockets;
