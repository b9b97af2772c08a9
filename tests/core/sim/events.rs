//! The simulator's events (per client and for the broker, found by kind and content, never
//! by position) and its diagnostics.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinymqtt::broker::{BrokerEvent, ConnId};
use tinymqtt::client::{AckToken, ClientState, Event};
use tinymqtt::codec::Publish;
use tinymqtt::error::CloseReason;
use tinymqtt::{ByteStr, PacketId, ReasonCode};

use super::{Cl, Sim};

impl Sim {
    // ---- events -------------------------------------------------------------------------

    /// Takes the first pending event of `cl` that `f` accepts.
    pub(crate) fn take_event<T>(
        &mut self,
        cl: Cl,
        f: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        self.take_timed_event(cl, f).map(|(_, t)| t)
    }

    /// Takes the first pending event of `cl` that `f` accepts, with the time it came.
    pub(crate) fn take_timed_event<T>(
        &mut self,
        cl: Cl,
        f: impl FnMut(&Event) -> Option<T>,
    ) -> Option<(Duration, T)> {
        self.take_event_from(cl, 0, f)
    }

    pub(super) fn take_event_from<T>(
        &mut self,
        cl: Cl,
        base: usize,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> Option<(Duration, T)> {
        let events = &mut self.nodes[cl.0].events;
        for i in base.min(events.len())..events.len() {
            if let Some(t) = f(&events[i].1) {
                let (at, _) = events.remove(i);
                return Some((at, t));
            }
        }
        None
    }

    /// Takes the first pending event of `cl` that `f` accepts, with the time it came; fails
    /// listing the events if none does.
    pub(crate) fn expect_event<T>(
        &mut self,
        cl: Cl,
        what: &str,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> (Duration, T) {
        self.pump();
        let events = &mut self.nodes[cl.0].events;
        for i in 0..events.len() {
            if let Some(t) = f(&events[i].1) {
                let (at, _) = events.remove(i);
                return (at, t);
            }
        }
        self.fail(&format!(
            "{cl:?}: expected event {what}; pending: {:#?}",
            self.nodes[cl.0].events
        ));
    }

    /// Fails if `cl` has a pending event `f` accepts.
    pub(crate) fn no_event(&mut self, cl: Cl, what: &str, f: impl Fn(&Event) -> bool) {
        self.pump();
        if let Some((at, e)) = self.nodes[cl.0].events.iter().find(|(_, e)| f(e)) {
            self.fail(&format!("{cl:?}: unexpected {what} at {at:?}: {e:#?}"));
        }
    }

    /// Takes the messages `cl` received that `keep` accepts, in arrival order, with their
    /// arrival times; other events stay pending.
    pub(crate) fn take_messages(
        &mut self,
        cl: Cl,
        keep: impl Fn(&Publish) -> bool,
    ) -> Vec<(Duration, Publish)> {
        self.pump();
        let events = std::mem::take(&mut self.nodes[cl.0].events);
        let mut out = Vec::new();
        for (at, e) in events {
            match e {
                Event::Message(m) if keep(&m.publish) => out.push((at, m.publish)),
                e => self.nodes[cl.0].events.push((at, e)),
            }
        }
        out
    }

    /// Takes every message `cl` received, in arrival order, with its acknowledgement token
    /// (manual acks).
    pub(crate) fn messages_with_tokens(&mut self, cl: Cl) -> Vec<(Publish, Option<AckToken>)> {
        self.pump();
        let events = std::mem::take(&mut self.nodes[cl.0].events);
        let mut out = Vec::new();
        for (at, e) in events {
            match e {
                Event::Message(m) => out.push((m.publish, m.ack)),
                e => self.nodes[cl.0].events.push((at, e)),
            }
        }
        out
    }

    /// Acknowledges a message `cl` received with manual acks.
    pub(crate) fn ack(&mut self, cl: Cl, token: AckToken) {
        let now = self.now;
        if let Err(e) = self.nodes[cl.0].client.ack(now, token) {
            self.fail(&format!("{cl:?}: ack refused by the client: {e}"));
        }
        self.pump();
    }

    /// Takes every message `cl` received, in arrival order.
    pub(crate) fn messages(&mut self, cl: Cl) -> Vec<Publish> {
        self.take_messages(cl, |_| true)
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// Takes the messages `cl` received on `t`, in arrival order.
    pub(crate) fn messages_on(&mut self, cl: Cl, t: &str) -> Vec<Publish> {
        self.take_messages(cl, |p| p.topic.as_str() == t)
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// The payloads of the messages `cl` received on `t`, in arrival order (taken).
    pub(crate) fn payloads_on(&mut self, cl: Cl, t: &str) -> Vec<Bytes> {
        self.messages_on(cl, t)
            .into_iter()
            .map(|p| p.payload)
            .collect()
    }

    /// Takes the one message `cl` received on `t`, with its arrival time; fails if there is
    /// not exactly one.
    pub(crate) fn one_message(&mut self, cl: Cl, t: &str) -> (Duration, Publish) {
        let mut found = self.take_messages(cl, |p| p.topic.as_str() == t);
        if found.len() != 1 {
            self.fail(&format!(
                "{cl:?}: expected one message on {t:?}, got {}: {found:#?}",
                found.len()
            ));
        }
        found.remove(0)
    }

    /// Fails if `cl` received any message.
    pub(crate) fn no_message(&mut self, cl: Cl) {
        self.no_event(cl, "message", |e| matches!(e, Event::Message(_)));
    }

    /// Takes `cl`'s `Disconnected` event: when, and why.
    pub(crate) fn disconnected(&mut self, cl: Cl) -> (Duration, CloseReason) {
        self.expect_event(cl, "disconnected", |e| match e {
            Event::Disconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    }

    /// Runs until `cl` reports `Disconnected` (at most `max`): when, and why.
    pub(crate) fn wait_disconnected(&mut self, cl: Cl, max: Duration) -> (Duration, CloseReason) {
        self.run_until_timed_event(cl, "disconnected", max, |e| match e {
            Event::Disconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    }

    /// Takes `cl`'s `Published` event for `id`: its reason code.
    pub(crate) fn published(&mut self, cl: Cl, id: PacketId) -> ReasonCode {
        self.expect_event(cl, &format!("published({})", id.get()), |e| match e {
            Event::Published {
                packet_id,
                reason_code,
                ..
            } if *packet_id == id => Some(*reason_code),
            _ => None,
        })
        .1
    }

    /// The broker events not yet taken, with the time they came.
    pub(crate) fn broker_events(&self) -> &[(Duration, BrokerEvent)] {
        &self.broker_events
    }

    /// Takes the first broker event `f` accepts; fails listing them if none does.
    pub(crate) fn expect_broker_event<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&BrokerEvent) -> Option<T>,
    ) -> (Duration, T) {
        self.pump();
        for i in 0..self.broker_events.len() {
            if let Some(t) = f(&self.broker_events[i].1) {
                let (at, _) = self.broker_events.remove(i);
                return (at, t);
            }
        }
        self.fail(&format!(
            "expected broker event {what}; pending: {:#?}",
            self.broker_events
        ));
    }

    /// The client identifier the broker reported for `conn`'s accepted CONNECT.
    pub(crate) fn broker_client_id(&mut self, conn: ConnId) -> ByteStr {
        self.expect_broker_event("connected", |e| match e {
            BrokerEvent::Connected {
                conn: c, client_id, ..
            } if *c == conn => Some(client_id.clone()),
            _ => None,
        })
        .1
    }

    /// Takes the broker's `Closed` event for `conn`: when, and why.
    pub(crate) fn broker_closed(&mut self, conn: ConnId) -> (Duration, CloseReason) {
        self.expect_broker_event(&format!("closed({conn:?})"), |e| match e {
            BrokerEvent::Closed { conn: c, reason } if *c == conn => Some(reason.clone()),
            _ => None,
        })
    }

    // ---- diagnostics --------------------------------------------------------------------

    pub(super) fn log(&mut self, line: String) {
        if self.trace.len() >= 5000 {
            self.trace.pop_front();
        }
        let at = self.elapsed();
        self.trace.push_back(format!("{at:?}: {line}"));
    }

    /// The simulator's state, for failure messages.
    pub(crate) fn dump(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "time {:?}", self.elapsed());
        let _ = writeln!(
            out,
            "broker: next deadline {:?}",
            self.broker.poll_timeout().map(|t| self.since(t))
        );
        for (i, n) in self.nodes.iter().enumerate() {
            let _ = writeln!(
                out,
                "client {i} {:?}: {:?}, next deadline {:?}, {} pending events, {} connections",
                n.client.client_id(),
                n.client.state(),
                n.client.poll_timeout().map(|t| self.since(t)),
                n.events.len(),
                n.connections
            );
        }
        for l in &self.links {
            let _ = writeln!(
                out,
                "link {:?} client {}: up {} chunks{}{}, down {} chunks{}{}",
                l.conn,
                l.node,
                l.up.queue.len(),
                if l.up.closing { " closing" } else { "" },
                if l.up.muted { " muted" } else { "" },
                l.down.queue.len(),
                if l.down.closing { " closing" } else { "" },
                if l.down.muted { " muted" } else { "" },
            );
        }
        let _ = writeln!(out, "last actions:");
        for line in self.trace.iter().rev().take(self.dump_lines).rev() {
            let _ = writeln!(out, "  {line}");
        }
        out
    }

    /// A signed offset from the origin, for deadlines that may be in the past.
    pub(super) fn since(&self, t: Instant) -> String {
        if t >= self.start {
            format!("{:?}", t - self.start)
        } else {
            format!("-{:?}", self.start - t)
        }
    }

    /// Fails the test with `what` and the simulator's state.
    pub(crate) fn fail(&self, what: &str) -> ! {
        panic!("{what}\n--- simulator state ---\n{}", self.dump())
    }

    /// Whether `cl` is connected.
    pub(crate) fn is_connected(&self, cl: Cl) -> bool {
        self.nodes[cl.0].client.state() == ClientState::Connected
    }
}

/// An event in one line for the trace.
pub(super) fn short(e: &Event) -> String {
    match e {
        Event::Message(m) => format!(
            "message {} qos {:?} retain {} dup {} ({} bytes)",
            m.publish.topic,
            m.publish.qos,
            m.publish.retain,
            m.publish.dup,
            m.publish.payload.len()
        ),
        Event::Disconnected { reason, .. } => format!("disconnected {reason:?}"),
        e => {
            let s = format!("{e:?}");
            s.chars().take(160).collect()
        }
    }
}
