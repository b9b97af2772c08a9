//! The futures-io path shared by smol and async-std: their TCP types implement the same traits
//! and are `Clone`, so one clone reads while the other writes.

/// Implements the driver's socket traits for a futures-io `TcpStream` and `TcpListener` pair.
macro_rules! futures_io_sockets {
    ($stream:ty, $listener:ty) => {
        impl $crate::runtimes::driver::Reader for $stream {
            fn read<'a>(
                &'a mut self,
                buf: &'a mut [u8],
            ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a {
                futures_lite::AsyncReadExt::read(self, buf)
            }

            async fn readable(&mut self) -> std::io::Result<()> {
                // A peek waits for readiness and consumes nothing.
                <$stream>::peek(self, &mut [0u8; 1]).await.map(|_| ())
            }

            fn try_read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                // One poll with a waker that does nothing: the next `readable` registers the
                // real one.
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match futures_lite::AsyncRead::poll_read(std::pin::Pin::new(self), &mut cx, buf) {
                    std::task::Poll::Ready(r) => r,
                    std::task::Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
                }
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
