//! Deferred credentials checks ([`CredentialCheck`]) on a few threads of their own, so that
//! password hashing or a blocking lookup never holds a thread that serves connections or
//! routes (on smol the router and every connection share one executor thread), with a cap on
//! the checks waiting or running: one more is refused at once with 0x89 server busy (3.1.x:
//! return code 3, server unavailable), so a flood of CONNECTs cannot queue work without end.
//! With [`BrokerOptions::check_credentials`] an async check (a database or HTTP client) runs
//! on the connection's own task instead (on the blocking runtime, a thread of its own), under the
//! same cap.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
use super::oneshot;
use crate::broker::CredentialCheck;
use crate::runtimes::driver::options::{BrokerOptions, CheckCredentials, Verdict};
use crate::ReasonCode;

/// A check handed to the pool, where its verdict goes, and its place under the cap (held
/// until the check has run, even if its connection stopped waiting: a connection that times
/// out does not make room for more work while its check still sits in the pool).
type Job = (CredentialCheck, Reply, Slot);

/// Where a verdict goes: a one-shot channel, or a connection thread's input.
type Reply = Box<dyn FnOnce(Verdict) + Send>;

/// What the pool's threads share.
struct Shared {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
    /// Set when the broker is gone: the threads end.
    closed: Mutex<bool>,
}

/// The broker's checks: its pool (threads started at the first check) and its cap.
pub(crate) struct Checks {
    shared: Arc<Shared>,
    /// Checks waiting or running.
    pending: Arc<AtomicUsize>,
    max_pending: usize,
    threads: usize,
    started: Mutex<bool>,
    hook: Option<CheckCredentials>,
}

impl Drop for Checks {
    fn drop(&mut self) {
        *self.shared.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.ready.notify_all();
    }
}

/// One check's place under the cap, given back when dropped (the check ended, however it
/// ended).
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a check is running (for the async connection tasks).
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub(crate) enum Running {
    /// On the pool: the verdict comes through this.
    Pool(oneshot::Receiver<Verdict>),
    /// The async hook's future, for the connection's task to poll (its slot goes with it).
    Hook(Pin<Box<dyn Future<Output = Verdict> + Send>>, Slot),
    /// Refused at once: too many checks already.
    Busy,
}

impl Checks {
    /// The checks of a broker with `options`.
    pub(crate) fn new(options: &BrokerOptions) -> Arc<Checks> {
        Arc::new(Checks {
            shared: Arc::new(Shared {
                jobs: Mutex::new(VecDeque::new()),
                ready: Condvar::new(),
                closed: Mutex::new(false),
            }),
            pending: Arc::new(AtomicUsize::new(0)),
            max_pending: options.max_pending_checks.max(1),
            threads: options.check_threads.max(1),
            started: Mutex::new(false),
            hook: options.check_credentials.clone(),
        })
    }

    /// A place under the cap, unless [`BrokerOptions::max_pending_checks`] checks are
    /// waiting or running already.
    fn reserve(&self) -> Option<Slot> {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(self.pending.clone()))
    }

    /// Starts `check`, unless [`BrokerOptions::max_pending_checks`] are waiting or running.
    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    pub(crate) fn start(&self, check: CredentialCheck) -> Running {
        let Some(slot) = self.reserve() else {
            return Running::Busy;
        };
        if let Some(hook) = &self.hook {
            return Running::Hook(hook(check), slot);
        }
        let (tx, rx) = oneshot::channel();
        self.submit(check, Box::new(move |v| tx.send(v)), slot);
        Running::Pool(rx)
    }

    /// Starts `check` with its verdict going to `reply` from another thread (a pool thread,
    /// or one that polls the async hook's future): for the blocking runtime's connection
    /// threads, which go on taking their input (a shutdown, the socket's end) meanwhile.
    /// `Err` is the verdict at once (too many checks).
    #[cfg_attr(not(feature = "blocking"), allow(dead_code))]
    pub(crate) fn start_detached(
        &self,
        check: CredentialCheck,
        reply: impl FnOnce(Verdict) + Send + 'static,
    ) -> Result<(), Verdict> {
        let Some(slot) = self.reserve() else {
            return Err(Err(ReasonCode::ServerBusy));
        };
        let Some(hook) = &self.hook else {
            self.submit(check, Box::new(reply), slot);
            return Ok(());
        };
        let fut = hook(check);
        std::thread::Builder::new()
            .name("mqtt-auth-hook".into())
            .stack_size(256 << 10)
            .spawn(move || {
                let verdict = park_on(fut);
                drop(slot);
                reply(verdict);
            })
            .map(drop)
            .map_err(|_| Err(ReasonCode::ServerUnavailable))
    }

    /// Queues `check` for the pool, `reply` to be called with its verdict.
    fn submit(&self, check: CredentialCheck, reply: Reply, slot: Slot) {
        self.start_threads();
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((check, reply, slot));
        self.shared.ready.notify_one();
    }

    fn start_threads(&self) {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if *started {
            return;
        }
        *started = true;
        for i in 0..self.threads {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("mqtt-auth-{i}"))
                .stack_size(256 << 10)
                .spawn(move || work(&shared));
            if spawned.is_err() {
                // Fewer threads: the others take the jobs; none at all and every check
                // is answered when the job is dropped with the pool (server unavailable).
                break;
            }
        }
    }
}

/// Wakes a thread parked in [`park_on`].
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` to its end on this thread, parked while it is pending.
#[cfg_attr(not(feature = "blocking"), allow(dead_code))]
fn park_on<T>(mut fut: Pin<Box<dyn Future<Output = T> + Send>>) -> T {
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// A pool thread: runs checks until the broker is gone.
fn work(shared: &Shared) {
    loop {
        let job = {
            let mut jobs = shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = jobs.pop_front() {
                    break job;
                }
                if *shared.closed.lock().unwrap_or_else(|e| e.into_inner()) {
                    return;
                }
                jobs = shared.ready.wait(jobs).unwrap_or_else(|e| e.into_inner());
            }
        };
        let (check, reply, slot) = job;
        let verdict = check.run();
        // Its place is free before anyone hears the verdict.
        drop(slot);
        reply(verdict);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::broker::{AllowAll, Authenticator, Broker, BrokerConfig, ServerConnection};
    use crate::ByteStr;

    /// Blocks every check until the test lets it go; lets in "ok".
    struct Gate(Mutex<mpsc::Receiver<()>>);

    impl Authenticator for Gate {
        fn authenticate(&self, _: &ByteStr, user: Option<&ByteStr>, _: Option<&Bytes>) -> Verdict {
            let _ = self.0.lock().unwrap().recv_timeout(Duration::from_secs(10));
            match user.map(ByteStr::as_str) {
                Some("ok") => Ok(()),
                _ => Err(ReasonCode::BadUserNameOrPassword),
            }
        }
        fn defers(&self) -> bool {
            true
        }
    }

    /// A connection that sent CONNECT with `user`, and its check.
    fn check(auth: Arc<dyn Authenticator>, user: &str) -> (ServerConnection, CredentialCheck) {
        #[allow(clippy::disallowed_methods)]
        let now = std::time::Instant::now();
        let mut router =
            Broker::with_auth(BrokerConfig::default(), auth, Arc::new(AllowAll)).into_router(now);
        let mut conn = router.accept(now);
        let mut c =
            crate::codec::Connect::new(crate::ProtocolVersion::V5, ByteStr::from_static("c"));
        c.username = Some(ByteStr::try_from(user.to_owned()).unwrap());
        c.password = Some(Bytes::from_static(b"pw"));
        let mut out = bytes::BytesMut::new();
        crate::codec::Encoder::new(crate::ProtocolVersion::V5)
            .encode(&crate::codec::Packet::Connect(Box::new(c)), &mut out)
            .unwrap();
        conn.handle_input(now, &out);
        let check = conn.poll_credentials().expect("a deferred check");
        assert!(conn.poll_credentials().is_none(), "handed out once");
        assert!(
            conn.poll_mail().is_none(),
            "nothing for the router before the verdict"
        );
        (conn, check)
    }

    #[test]
    fn checks_run_on_the_pool_and_beyond_the_cap_are_refused_busy() {
        let (tx, rx) = mpsc::channel();
        let auth: Arc<dyn Authenticator> = Arc::new(Gate(Mutex::new(rx)));
        let options = BrokerOptions {
            check_threads: 1,
            max_pending_checks: 2,
            ..BrokerOptions::default()
        };
        let checks = Checks::new(&options);
        let (_c1, k1) = check(auth.clone(), "ok");
        let (_c2, k2) = check(auth.clone(), "bad");
        let (_c3, k3) = check(auth.clone(), "ok");
        let r1 = checks.start(k1);
        let r2 = checks.start(k2);
        // The first blocks the only thread and the second waits: the third is refused.
        assert!(matches!(checks.start(k3), Running::Busy));
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        let verdict = |r: Running| match r {
            Running::Pool(rx) => rx.recv_blocking(),
            _ => None,
        };
        assert_eq!(verdict(r1), Some(Ok(())));
        assert_eq!(verdict(r2), Some(Err(ReasonCode::BadUserNameOrPassword)));
        // Their slots are free again once the pool has run them.
        let (_c4, k4) = check(auth.clone(), "ok");
        tx.send(()).unwrap();
        let (done, verdict4) = mpsc::channel();
        checks
            .start_detached(k4, move |v| done.send(v).unwrap())
            .unwrap();
        assert_eq!(verdict4.recv_timeout(Duration::from_secs(10)), Ok(Ok(())));
        // A check whose connection stopped waiting keeps its slot until it has run.
        let (_c5, k5) = check(auth.clone(), "ok");
        let (_c6, k6) = check(auth.clone(), "ok");
        let (_c7, k7) = check(auth, "ok");
        drop(checks.start(k5)); // the connection gave up
        let r6 = checks.start(k6);
        assert!(matches!(checks.start(k7), Running::Busy));
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        assert_eq!(verdict(r6), Some(Ok(())));
    }

    #[test]
    fn a_connection_waits_for_its_verdict_then_goes_on_or_refuses() {
        let (tx, rx) = mpsc::channel();
        drop(tx); // every check passes the gate at once
        let auth: Arc<dyn Authenticator> = Arc::new(Gate(Mutex::new(rx)));
        #[allow(clippy::disallowed_methods)]
        let now = std::time::Instant::now();
        let (mut ok, k) = check(auth.clone(), "ok");
        ok.handle_credentials(now, k.run());
        assert!(
            ok.poll_mail().is_some(),
            "the session is asked of the router"
        );
        let (mut bad, k) = check(auth, "bad");
        bad.handle_credentials(now, k.run());
        assert!(bad.is_closed());
        // A late second verdict does nothing.
        bad.handle_credentials(now, Ok(()));
        assert!(bad.poll_mail().is_none() || bad.is_closed());
    }
}
