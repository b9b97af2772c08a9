//! The behaviour suite on the async-std runtime.

mod rt {
    type Rt = tinymqtt::runtimes::async_std::AsyncStd;

    fn run<F: Future>(f: F) -> F::Output {
        async_std::task::block_on(f)
    }

    include!("behaviour/async_rt.rs");
}

#[path = "behaviour/mod.rs"]
mod behaviour;
#[path = "support/interop.rs"]
mod peers;
