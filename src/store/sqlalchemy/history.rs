//! A short history per host/program for the live page's sparklines: the most
//! checked-out connections summed over its processes in each step of
//! [`STEP`], for the last [`SAMPLES`] steps (5 minutes).
//!
//! It follows the same held sums as the peaks (`peaks`): updated after every
//! applied report that changes them, a process leaving them when its expiry
//! is counted. A step holds the highest sum during its span, starting from
//! the sum held when it began, so a burst between two polls of the page still
//! shows. The ring is fixed: [`SAMPLES`] `f32`s, the sum held and the newest
//! step written, 256 bytes per host/program whatever the traffic
//! ([`BYTES`]). `f32` holds every whole number of connections below 2^24
//! exactly (the real client's gauges are whole).

use std::time::Duration;

/// The span of one sample.
pub const STEP: Duration = Duration::from_secs(5);
/// Samples kept: the current step and the ones before it.
pub const SAMPLES: usize = 60;
/// What one host/program's history takes in memory.
pub const BYTES: usize = std::mem::size_of::<History>();

/// The ring of one host/program.
#[derive(Clone, Debug)]
pub struct History {
    /// The highest sum per step, at `step % SAMPLES`.
    ring: [f32; SAMPLES],
    /// The sum held now.
    held: f32,
    /// The step last written.
    newest: u64,
    /// Steps known before `newest` (at most `SAMPLES - 1`): nothing is
    /// known from before the history began.
    before: u8,
}

impl History {
    /// Starts at `step` with nothing held.
    pub fn new(step: u64) -> Self {
        History {
            ring: [0.0; SAMPLES],
            held: 0.0,
            newest: step,
            before: 0,
        }
    }

    /// The sum is `held` from `step` on. A step older than the newest
    /// written (a reader's clock behind a writer's) counts as the newest.
    pub fn set(&mut self, held: f64, step: u64) {
        let held = held as f32;
        if step > self.newest {
            // The steps passed since the last change held what was held.
            let from = self.newest.max(step.saturating_sub(SAMPLES as u64)) + 1;
            for s in from..=step {
                self.ring[slot(s)] = self.held;
            }
            let known = u64::from(self.before) + (step - self.newest);
            self.before = known.min(SAMPLES as u64 - 1) as u8;
            self.newest = step;
        }
        self.held = held;
        let slot = &mut self.ring[slot(self.newest)];
        *slot = slot.max(held);
    }

    /// The samples up to `step`, oldest first, the last one `step`'s own
    /// (still filling): at most [`SAMPLES`], fewer while the history is
    /// younger than that.
    pub fn samples(&self, step: u64) -> Vec<f32> {
        let step = step.max(self.newest);
        let first = self.newest - u64::from(self.before);
        let oldest = step.saturating_sub(SAMPLES as u64 - 1).max(first);
        (oldest..=step)
            .map(|s| {
                if s > self.newest {
                    self.held
                } else {
                    self.ring[slot(s)]
                }
            })
            .collect()
    }
}

fn slot(step: u64) -> usize {
    (step % SAMPLES as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_256_bytes_per_host_program() {
        assert_eq!(BYTES, 256);
    }

    #[test]
    fn a_new_history_has_only_its_own_steps() {
        let mut h = History::new(100);
        assert_eq!(h.samples(100), [0.0]);
        h.set(3.0, 100);
        assert_eq!(h.samples(100), [3.0]);
        assert_eq!(h.samples(102), [3.0, 3.0, 3.0]);
    }

    #[test]
    fn each_step_keeps_its_highest_sum_from_what_was_held_when_it_began() {
        let mut h = History::new(0);
        h.set(2.0, 0);
        h.set(9.0, 1);
        h.set(1.0, 1);
        h.set(4.0, 3);
        // Step 2 held 1 throughout; step 3 began at 1 and reached 4.
        assert_eq!(h.samples(3), [2.0, 9.0, 1.0, 4.0]);
        h.set(0.0, 3);
        assert_eq!(h.samples(5), [2.0, 9.0, 1.0, 4.0, 0.0, 0.0]);
    }

    #[test]
    fn is_bounded_to_the_last_samples_steps() {
        let mut h = History::new(0);
        for s in 0..1000u64 {
            h.set(s as f64, s);
        }
        let samples = h.samples(999);
        assert_eq!(samples.len(), SAMPLES);
        let want: Vec<f32> = (940..1000).map(|s| s as f32).collect();
        assert_eq!(samples, want);
        // A reader later on sees the held sum for the steps since.
        let later = h.samples(1009);
        assert_eq!(later.len(), SAMPLES);
        assert_eq!(later[..50], want[10..]);
        assert_eq!(later[50..], [999.0; 10]);
    }

    #[test]
    fn a_gap_longer_than_the_ring_fills_it_with_the_held_sum() {
        let mut h = History::new(0);
        h.set(5.0, 0);
        h.set(6.0, 3);
        h.set(1.0, 10_000);
        let samples = h.samples(10_000);
        assert_eq!(samples.len(), SAMPLES);
        assert_eq!(samples[..SAMPLES - 1], [6.0; SAMPLES - 1]);
        assert_eq!(samples[SAMPLES - 1], 6.0);
        assert_eq!(h.samples(10_001)[SAMPLES - 1], 1.0);
    }

    #[test]
    fn a_reader_behind_the_writer_sees_up_to_the_newest_step() {
        let mut h = History::new(10);
        h.set(3.0, 12);
        assert_eq!(h.samples(11), [0.0, 0.0, 3.0]);
    }
}
