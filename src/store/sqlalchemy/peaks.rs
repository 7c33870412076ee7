//! Peaks between scrapes: per host/program, the most connections and the most
//! checked-out connections summed over its processes over a rolling window
//! (`--peak-window`), so that a pool pinned at its limit for a few seconds
//! between two scrapes still shows.
//!
//! The sums are the ones the exporter held: updated after every applied
//! report, a process leaving them when its expiry is counted (the sweep, once
//! a second) or when it is dropped. The window is cut into [`PARTS`] buckets
//! of `window / PARTS` on the store's monotonic clock; a bucket holds the
//! highest sum during its span, starting from the sum held when it began. The
//! peak is the highest of the current bucket and the [`PARTS`] before it: at
//! least the whole window, at most one bucket more (Micrometer's
//! `TimeWindowMax` rotates a ring of maxima the same way).

/// Buckets per window.
pub const PARTS: u64 = 6;
/// The current bucket and the `PARTS` before it.
const RING: usize = PARTS as usize + 1;

/// The sums of one host/program and their maxima per bucket: checked out,
/// then connections.
#[derive(Clone, Debug, Default)]
pub struct Peaks {
    /// What the live processes hold now, as the exporter counted them.
    held: [f64; 2],
    /// Highest sums per bucket, at `bucket % RING`.
    ring: [[f64; 2]; RING],
    /// The bucket last written.
    newest: u64,
}

impl Peaks {
    /// Starts at `bucket` with nothing held.
    pub fn new(bucket: u64) -> Self {
        Peaks {
            newest: bucket,
            ..Peaks::default()
        }
    }

    /// The sums as held now.
    pub fn held(&self) -> [f64; 2] {
        self.held
    }

    /// Adds `delta` to the sums at `bucket`.
    pub fn add(&mut self, delta: [f64; 2], bucket: u64) {
        self.set([self.held[0] + delta[0], self.held[1] + delta[1]], bucket);
    }

    /// The sums are `held` from `bucket` on.
    pub fn set(&mut self, held: [f64; 2], bucket: u64) {
        if bucket > self.newest {
            // The buckets passed since the last change held what was held.
            let from = self.newest.max(bucket.saturating_sub(RING as u64)) + 1;
            for b in from..=bucket {
                self.ring[(b % RING as u64) as usize] = self.held;
            }
            self.newest = bucket;
        }
        self.held = held;
        let slot = &mut self.ring[(self.newest % RING as u64) as usize];
        slot[0] = slot[0].max(held[0]);
        slot[1] = slot[1].max(held[1]);
    }

    /// The peaks at `bucket`: the highest sums over it and the `PARTS`
    /// buckets before it.
    pub fn peak(&self, bucket: u64) -> [f64; 2] {
        let oldest = bucket.saturating_sub(PARTS);
        // Buckets after the newest written held the sums held now.
        let mut peak = if bucket > self.newest {
            self.held
        } else {
            [f64::NEG_INFINITY; 2]
        };
        let first = oldest.max(self.newest.saturating_sub(PARTS));
        for b in first..=self.newest {
            let slot = self.ring[(b % RING as u64) as usize];
            peak[0] = peak[0].max(slot[0]);
            peak[1] = peak[1].max(slot[1]);
        }
        if peak[0] == f64::NEG_INFINITY {
            // The newest written is older than the window.
            peak = self.held;
        }
        peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_within_the_window_is_the_peak_until_it_leaves() {
        let mut p = Peaks::new(0);
        p.set([2.0, 5.0], 0);
        p.set([9.0, 10.0], 1);
        p.set([2.0, 10.0], 1);
        for b in 1..=1 + PARTS {
            assert_eq!(p.peak(b), [9.0, 10.0], "bucket {b}");
        }
        // Bucket 1 is out of the window from bucket 1 + PARTS + 1 on; the
        // buckets since held 2 and 10.
        assert_eq!(p.peak(2 + PARTS), [2.0, 10.0]);
        assert_eq!(p.peak(1000), [2.0, 10.0]);
    }

    #[test]
    fn the_sum_held_when_a_bucket_begins_is_its_floor() {
        let mut p = Peaks::new(0);
        p.set([7.0, 7.0], 0);
        // Nothing changes for many buckets, then it drops.
        p.set([1.0, 1.0], 50);
        // 7 was held until the drop, inside bucket 50.
        assert_eq!(p.peak(50), [7.0, 7.0]);
        assert_eq!(p.peak(50 + PARTS), [7.0, 7.0]);
        assert_eq!(p.peak(51 + PARTS), [1.0, 1.0]);
    }

    #[test]
    fn a_late_reader_sees_what_was_held() {
        let mut p = Peaks::new(10);
        p.add([3.0, 4.0], 10);
        p.add([-1.0, 0.0], 12);
        assert_eq!(p.held(), [2.0, 4.0]);
        assert_eq!(p.peak(12), [3.0, 4.0]);
        // 3 was held until the change in bucket 12.
        assert_eq!(p.peak(12 + PARTS), [3.0, 4.0]);
        assert_eq!(p.peak(13 + PARTS), [2.0, 4.0]);
        // A reader behind the writer (a scrape's clock read before the
        // report's) still sees the window up to the newest bucket.
        assert_eq!(p.peak(11), [3.0, 4.0]);
    }

    #[test]
    fn a_gap_longer_than_the_ring_fills_it_with_the_held_sums() {
        let mut p = Peaks::new(0);
        p.set([5.0, 5.0], 0);
        p.set([6.0, 6.0], 3);
        p.set([1.0, 1.0], 10_000);
        assert_eq!(p.peak(10_000), [6.0, 6.0]);
        assert_eq!(p.peak(10_000 + PARTS + 1), [1.0, 1.0]);
    }
}
