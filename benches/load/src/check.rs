//! Per-publisher sequence checks: which sequence numbers a publisher had acknowledged, and which
//! ones a subscriber received, so that loss, duplicates and reordering can be counted exactly.

/// A growable set of sequence numbers, one bit each.
#[derive(Clone, Debug, Default)]
pub struct SeqSet {
    words: Vec<u64>,
    count: u64,
}

impl SeqSet {
    /// Adds `seq`; returns false when it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        if word >= self.words.len() {
            self.words.resize((word + 1).max(self.words.len() * 2), 0);
        }
        let bit = 1u64 << (seq % 64);
        if self.words[word] & bit != 0 {
            return false;
        }
        self.words[word] |= bit;
        self.count += 1;
        true
    }

    /// Whether `seq` is in the set.
    #[cfg(test)]
    pub fn contains(&self, seq: u64) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    /// How many sequence numbers are in the set.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// How many members of `self` are missing from `other`.
    pub fn missing_from(&self, other: &SeqSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let theirs = other.words.get(i).copied().unwrap_or(0);
                u64::from((w & !theirs).count_ones())
            })
            .sum()
    }
}

/// What one subscriber saw of one publisher.
#[derive(Clone, Debug, Default)]
struct Stream {
    seen: SeqSet,
    highest: Option<u64>,
    duplicates: u64,
    reordered: u64,
}

/// One subscriber's view of every publisher's sequence numbers.
#[derive(Clone, Debug)]
pub struct Checker {
    streams: Vec<Stream>,
    unknown: u64,
}

/// The totals of a check, summed over subscribers and publishers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Deliveries counted (each message once per subscriber that got it).
    pub received: u64,
    /// Acknowledged messages some subscriber never got.
    pub lost: u64,
    /// Messages a subscriber got more than once.
    pub duplicates: u64,
    /// Messages that arrived after a later message of the same publisher.
    pub reordered: u64,
    /// Messages whose payload named no known publisher.
    pub unknown: u64,
}

impl Verdict {
    /// Adds another verdict's counts to this one.
    pub fn add(&mut self, other: Verdict) {
        self.received += other.received;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.unknown += other.unknown;
    }
}

impl Checker {
    /// A checker for publishers `0..publishers`.
    pub fn new(publishers: usize) -> Self {
        Self {
            streams: vec![Stream::default(); publishers],
            unknown: 0,
        }
    }

    /// Records the arrival of `seq` from `publisher`.
    pub fn record(&mut self, publisher: u32, seq: u64) {
        let Some(stream) = self.streams.get_mut(publisher as usize) else {
            self.unknown += 1;
            return;
        };
        if !stream.seen.insert(seq) {
            stream.duplicates += 1;
            return;
        }
        match stream.highest {
            Some(high) if seq < high => stream.reordered += 1,
            _ => stream.highest = Some(seq),
        }
    }

    /// How many distinct messages arrived.
    pub fn received(&self) -> u64 {
        self.streams.iter().map(|s| s.seen.len()).sum()
    }

    /// Compares what arrived with what each publisher had acknowledged (`acked[p]`).
    pub fn verdict(&self, acked: &[SeqSet]) -> Verdict {
        let mut verdict = Verdict {
            unknown: self.unknown,
            ..Verdict::default()
        };
        for (i, stream) in self.streams.iter().enumerate() {
            verdict.received += stream.seen.len() + stream.duplicates;
            verdict.duplicates += stream.duplicates;
            verdict.reordered += stream.reordered;
            if let Some(acked) = acked.get(i) {
                verdict.lost += acked.missing_from(&stream.seen);
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(n: u64) -> SeqSet {
        let mut set = SeqSet::default();
        for seq in 0..n {
            set.insert(seq);
        }
        set
    }

    #[test]
    fn in_order_complete_delivery_is_clean() {
        let mut checker = Checker::new(2);
        for seq in 0..1000 {
            checker.record(0, seq);
            checker.record(1, seq);
        }
        let verdict = checker.verdict(&[acked(1000), acked(1000)]);
        assert_eq!(
            verdict,
            Verdict {
                received: 2000,
                ..Verdict::default()
            }
        );
    }

    #[test]
    fn a_missing_acknowledged_message_is_lost() {
        let mut checker = Checker::new(1);
        for seq in (0..100).filter(|s| *s != 17 && *s != 64) {
            checker.record(0, seq);
        }
        let verdict = checker.verdict(&[acked(100)]);
        assert_eq!(verdict.lost, 2);
        assert_eq!(verdict.reordered, 0);
        // Unacknowledged messages that never arrived are not lost.
        assert_eq!(checker.verdict(&[acked(17)]).lost, 0);
    }

    #[test]
    fn a_repeat_is_a_duplicate_and_not_a_reorder() {
        let mut checker = Checker::new(1);
        for seq in [0, 1, 2, 2, 3, 1] {
            checker.record(0, seq);
        }
        let verdict = checker.verdict(&[acked(4)]);
        assert_eq!(verdict.duplicates, 2);
        assert_eq!(verdict.reordered, 0);
        assert_eq!(verdict.received, 6);
        assert_eq!(checker.received(), 4);
    }

    #[test]
    fn a_late_arrival_is_reordered_per_publisher_only() {
        let mut checker = Checker::new(2);
        for (publisher, seq) in [(0, 0), (1, 5), (0, 2), (0, 1), (1, 0), (0, 3)] {
            checker.record(publisher, seq);
        }
        let verdict = checker.verdict(&[acked(4), SeqSet::default()]);
        assert_eq!(verdict.reordered, 2, "0:1 after 0:2, and 1:0 after 1:5");
        assert_eq!(verdict.lost, 0);
    }

    #[test]
    fn an_unknown_publisher_is_counted() {
        let mut checker = Checker::new(1);
        checker.record(3, 0);
        assert_eq!(checker.verdict(&[]).unknown, 1);
    }

    #[test]
    fn seq_set_grows_and_compares_across_words() {
        let mut a = SeqSet::default();
        let mut b = SeqSet::default();
        assert!(a.insert(1_000_000));
        assert!(!a.insert(1_000_000));
        assert!(a.insert(3));
        assert!(b.insert(3));
        assert!(a.contains(1_000_000) && !b.contains(1_000_000));
        assert_eq!(a.missing_from(&b), 1);
        assert_eq!(b.missing_from(&a), 0);
        assert_eq!(a.len(), 2);
    }
}
