//! A few named deadlines; the earliest one is what `poll_timeout` returns (crate-private:
//! the client and every broker connection keep theirs in one).

use std::time::Instant;

/// Timers of a state machine, indexed by a small enum.
///
/// `K` maps each timer to a slot below `N` (implement [`TimerKind`] for the enum).
#[derive(Debug, Clone)]
pub(crate) struct TimerTable<K, const N: usize> {
    deadlines: [Option<Instant>; N],
    _kind: std::marker::PhantomData<K>,
}

/// A timer name that indexes a [`TimerTable`].
pub(crate) trait TimerKind: Copy + 'static {
    /// Every timer, in slot order.
    const ALL: &'static [Self];
    /// The slot of this timer.
    fn index(self) -> usize;
}

impl<K: TimerKind, const N: usize> Default for TimerTable<K, N> {
    fn default() -> Self {
        TimerTable {
            deadlines: [None; N],
            _kind: std::marker::PhantomData,
        }
    }
}

impl<K: TimerKind, const N: usize> TimerTable<K, N> {
    /// Arms `timer` to fire at `at`, replacing any earlier setting.
    pub(crate) fn set(&mut self, timer: K, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: K) {
        self.deadlines[timer.index()] = None;
    }

    /// Disarms every timer.
    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; N];
    }

    /// When `timer` fires, if armed.
    pub(crate) fn get(&self, timer: K) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// The earliest armed deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the timers due at `now`, earliest first.
    pub(crate) fn take_expired(&mut self, now: Instant) -> impl Iterator<Item = K> + use<K, N> {
        let mut due: Vec<(Instant, K)> = K::ALL
            .iter()
            .filter_map(|k| self.get(*k).filter(|at| *at <= now).map(|at| (at, *k)))
            .collect();
        due.sort_by_key(|(at, _)| *at);
        for (_, k) in &due {
            self.stop(*k);
        }
        due.into_iter().map(|(_, k)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum T {
        A,
        B,
        C,
    }

    impl TimerKind for T {
        const ALL: &'static [T] = &[T::A, T::B, T::C];
        fn index(self) -> usize {
            self as usize
        }
    }

    #[test]
    fn earliest_deadline_wins_and_expired_ones_are_taken_in_order() {
        let t0 = crate::test_instant();
        let mut table = TimerTable::<T, 3>::default();
        assert_eq!(table.next_timeout(), None);
        table.set(T::B, t0 + Duration::from_secs(5));
        table.set(T::A, t0 + Duration::from_secs(9));
        table.set(T::C, t0 + Duration::from_secs(2));
        assert_eq!(table.next_timeout(), Some(t0 + Duration::from_secs(2)));
        let due: Vec<T> = table.take_expired(t0 + Duration::from_secs(5)).collect();
        assert_eq!(due, vec![T::C, T::B]);
        assert_eq!(table.next_timeout(), Some(t0 + Duration::from_secs(9)));
        assert_eq!(table.get(T::A), Some(t0 + Duration::from_secs(9)));
        table.stop(T::A);
        assert_eq!(table.next_timeout(), None);
    }
}
