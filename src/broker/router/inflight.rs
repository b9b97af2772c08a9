//! What a session's connection holds unfinished, against its window, with its count kept
//! here only.

use crate::broker::mail::prefetch;

/// The QoS 1/2 deliveries a session's connection holds unfinished (released and not yet
/// acknowledged, or handed over at connect), against its window: the client's receive
/// maximum, plus as much again released ahead to wait in the connection (see `prefetch`).
/// Only these methods change the count.
#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight {
    held: usize,
    window: usize,
}

impl InFlight {
    /// Nothing in flight (an offline session).
    pub(super) fn new() -> InFlight {
        InFlight { held: 0, window: 1 }
    }

    /// A new connection with receive maximum `window` took the session over, holding the
    /// `handed_over` flows of the last one (each keeps its slot until its PUBACK or PUBCOMP).
    pub(super) fn connected(&mut self, window: u16, handed_over: usize) {
        self.window = usize::from(window.max(1));
        self.held = handed_over;
    }

    /// The connection ended: nothing is held any more (its flows went back to the session).
    pub(super) fn disconnected(&mut self) {
        self.held = 0;
    }

    /// Deliveries held now (released and not finished).
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Whether one more QoS 1/2 delivery may be released.
    #[inline]
    pub(super) fn has_room(&self) -> bool {
        self.held < self.window + prefetch(self.window)
    }

    /// One more QoS 1/2 delivery was released.
    #[inline]
    pub(super) fn released(&mut self) {
        self.held += 1;
    }

    /// `n` deliveries finished, or came back unsent.
    #[inline]
    pub(super) fn finished(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n);
    }

    /// Deliveries released beyond the window, waiting in the connection (they count against
    /// the session's queue limits like queued ones).
    #[inline]
    pub(super) fn beyond_window(&self) -> usize {
        self.held.saturating_sub(self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_and_its_prefetch_bound_what_is_released() {
        let mut f = InFlight::new();
        f.connected(2, 1); // one flow handed over
        let mut released = 0;
        while f.has_room() {
            f.released();
            released += 1;
        }
        assert_eq!(released, 3, "window 2, prefetch 2, one slot taken");
        assert_eq!(f.beyond_window(), 2);
        f.finished(10);
        assert_eq!((f.beyond_window(), f.has_room()), (0, true));
        f.connected(0, 0); // a receive maximum of 0 counts as 1
        f.released();
        f.released();
        assert!(!f.has_room());
        f.disconnected();
        assert!(f.has_room());
    }
}
