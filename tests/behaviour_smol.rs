//! The behaviour suite on the smol runtime (its global executor runs the tasks).

mod rt {
    type Rt = tinymqtt::runtimes::smol::Smol;

    fn run<F: Future>(f: F) -> F::Output {
        smol::block_on(f)
    }

    include!("behaviour/async_rt.rs");
}

#[path = "behaviour/mod.rs"]
mod behaviour;
#[path = "support/interop.rs"]
mod peers;
