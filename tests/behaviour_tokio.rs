//! The behaviour suite on the tokio runtime (a multi-threaded runtime, two workers).

mod rt {
    type Rt = tinymqtt::runtimes::tokio::Tokio;

    fn run<F: Future>(f: F) -> F::Output {
        static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        })
        .block_on(f)
    }

    include!("behaviour/async_rt.rs");
}

#[path = "behaviour/mod.rs"]
mod behaviour;
#[path = "support/interop.rs"]
mod peers;
