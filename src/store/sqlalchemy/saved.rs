//! The SQLAlchemy store's state as it is kept across a graceful restart
//! (`--storage.path`): every host/program's counters and every process's
//! last accepted reports, so that the next exporter continues each counter
//! where this one left it and judges each process's next report against its
//! last one.
//!
//! Takes the store (to save) or a saved document (to restore) and the time;
//! hands on a serde document. Files are the server's business.

use super::{
    CONFIRMED, EXPIRY_COUNTED, Extra, Limits, Process, ProcessId, Program, ProgramId, Relay,
    Source, SqlaStore, Stamp, TEXT_TOKEN, Tick, Tokens,
};
use crate::route::Pool;
use crate::store::{Freshness, Now};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The saved document's format; a document of another one is not restored.
pub const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Saved {
    pub format: u32,
    /// When it was saved, Unix seconds.
    pub saved_unix: f64,
    pub programs: Vec<SavedProgram>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedProgram {
    pub host: String,
    pub program: String,
    pub totals: [u64; 4],
    pub transactions: Option<[u64; 3]>,
    pub last_report_unix: f64,
    pub interval: f64,
    pub clock_offset: Option<f64>,
    pub clock_steps: u64,
    /// Who made it (the program limit's fairness).
    pub source: u32,
    pub processes: Vec<SavedProcess>,
}

/// A client timestamp (collectd's 2^-30 s) and what was reported at it.
type At<T> = Option<(u64, T)>;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedProcess {
    pub token: String,
    /// Seconds it had left to live when saved (negative: dead that long).
    pub live_for: f64,
    /// numpools, checkedout, checkedin, detached, connections.
    pub pool: At<[f64; 5]>,
    pub totals: At<[u64; 4]>,
    pub transactions: At<[u64; 3]>,
    pub relay: Option<SavedRelay>,
    pub source: u32,
    pub confirmed: bool,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedRelay {
    pub gauges: [At<f64>; 6],
    pub counters: [At<u64>; 4],
}

fn seconds(d: i128) -> f64 {
    d as f64 / 1e9
}

impl Tokens {
    /// The token a process reported, from its number.
    fn name(&self, number: u64) -> Option<String> {
        if number & TEXT_TOKEN == 0 {
            Some(format!("{}:{:06x}", number >> 24, number & 0xff_ffff))
        } else {
            self.names.get(&number).map(|n| n.to_string())
        }
    }
}

fn stamp<T>(a: &Option<(Stamp, T)>) -> At<T>
where
    T: Copy,
{
    a.map(|(t, v)| (t.get(), v))
}

fn unstamp<T>(a: At<T>) -> Option<(Stamp, T)> {
    a.and_then(|(t, v)| Stamp::new(t).map(|t| (t, v)))
}

fn pool_array(p: &Pool) -> [f64; 5] {
    [
        p.numpools,
        p.checkedout,
        p.checkedin,
        p.detached,
        p.connections,
    ]
}

fn pool_of([numpools, checkedout, checkedin, detached, connections]: [f64; 5]) -> Pool {
    Pool {
        numpools,
        checkedout,
        checkedin,
        detached,
        connections,
    }
}

impl SqlaStore {
    /// Everything the next exporter needs to continue this one's counters.
    pub fn save(&self, now: Now) -> Saved {
        let now_tick = i128::from(self.tick(now.at).0);
        let mut programs: Vec<SavedProgram> = self
            .programs
            .iter()
            .map(|slot| match slot {
                Some(p) => SavedProgram {
                    host: p.host.to_string(),
                    program: p.name.to_string(),
                    totals: p.totals,
                    transactions: p.transactions,
                    last_report_unix: p.last_report_unix,
                    interval: p.interval,
                    clock_offset: p.clock_offset,
                    clock_steps: p.clock_steps,
                    source: p.source.0,
                    processes: Vec::new(),
                },
                None => SavedProgram {
                    host: String::new(),
                    program: String::new(),
                    totals: [0; 4],
                    transactions: None,
                    last_report_unix: 0.0,
                    interval: 0.0,
                    clock_offset: None,
                    clock_steps: 0,
                    source: 0,
                    processes: Vec::new(),
                },
            })
            .collect();
        for (id, p) in &self.processes {
            let (Some(program), Some(token)) = (
                programs.get_mut(id.program as usize),
                self.tokens.name(id.token),
            ) else {
                continue;
            };
            let extra = p.extra.as_deref();
            program.processes.push(SavedProcess {
                token,
                live_for: seconds(i128::from(p.live_until.0) - now_tick),
                pool: p.pool.map(|(t, v)| (t.get(), pool_array(&v))),
                totals: stamp(&p.totals),
                transactions: extra.and_then(|e| stamp(&e.transactions)),
                relay: extra.and_then(|e| e.relay.as_ref()).map(|r| SavedRelay {
                    gauges: r.gauges.map(|g| g.map(|(t, v)| (t.get(), v))),
                    counters: r.counters.map(|c| c.map(|(t, v)| (t.get(), v))),
                }),
                source: p.source.0,
                confirmed: p.has(CONFIRMED),
            });
        }
        let live = |p: &SavedProgram| !p.host.is_empty() || !p.program.is_empty();
        programs.retain(live);
        Saved {
            format: FORMAT,
            saved_unix: now.unix,
            programs,
        }
    }

    /// A store that continues a saved one at `now`: the same counters, each
    /// process judged against its last saved reports, live for what it had
    /// left when saved. What the limits do not hold is left out.
    pub fn restore(saved: Saved, freshness: Freshness, limits: Limits, now: Now) -> SqlaStore {
        let mut store = SqlaStore::new(freshness, limits);
        // The store's clock starts early enough that a dead process keeps
        // the time it has left before it is forgotten.
        let back = freshness
            .forget_after
            .min(Duration::from_secs(7 * 24 * 3600));
        store.epoch = now.at.checked_sub(back).unwrap_or(now.at);
        let now_tick = i128::from(store.tick(now.at).0);
        let tick_in = |secs: f64| {
            let t = now_tick + (secs * 1e9) as i128;
            Tick(t.clamp(0, i128::from(u64::MAX)) as u64)
        };
        for p in saved.programs {
            if store.program_count >= limits.max_programs {
                break;
            }
            let id: ProgramId = store.add_program(&p.host, &p.program, Source(p.source), now.at);
            let Some(Some(program)) = store.programs.get_mut(id as usize) else {
                continue;
            };
            *program = Program {
                host: program.host.clone(),
                name: Arc::clone(&program.name),
                totals: p.totals,
                transactions: p.transactions,
                last_report_unix: p.last_report_unix,
                interval: p.interval,
                live_until: program.live_until,
                clock_offset: p.clock_offset,
                clock_steps: p.clock_steps,
                source: program.source,
                created: program.created,
                peaks: program.peaks.clone(),
                history: program.history.clone(),
            };
            let mut live_until = Tick::default();
            for sp in p.processes {
                if store.processes.len() >= limits.max_processes {
                    break;
                }
                let token = store.tokens.hold(&sp.token);
                let until = tick_in(sp.live_for);
                live_until = live_until.max(until);
                let relay = sp.relay.map(|r| Relay {
                    gauges: r.gauges.map(unstamp),
                    counters: r.counters.map(unstamp),
                });
                let transactions = unstamp(sp.transactions);
                let extra = (relay.is_some() || transactions.is_some()).then(|| {
                    Box::new(Extra {
                        transactions,
                        relay,
                        held_pool: None,
                    })
                });
                let mut flags = if sp.confirmed { CONFIRMED } else { 0 };
                if sp.live_for <= 0.0 {
                    flags |= EXPIRY_COUNTED;
                }
                store.processes.insert(
                    ProcessId { program: id, token },
                    Process {
                        live_until: until,
                        pool: unstamp(sp.pool.map(|(t, v)| (t, pool_of(v)))),
                        totals: unstamp(sp.totals),
                        extra,
                        source: Source(sp.source),
                        flags,
                    },
                );
            }
            if let Some(Some(program)) = store.programs.get_mut(id as usize) {
                program.live_until = program.live_until.max(live_until);
            }
        }
        // The peaks start over from the restored sums.
        let mut held = vec![[0.0f64; 2]; store.programs.len()];
        for (id, p) in &store.processes {
            if let Some(sum) = held.get_mut(id.program as usize) {
                let load = p.load();
                sum[0] += load[0];
                sum[1] += load[1];
            }
        }
        store.hold(&held, now.at);
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectd::CdTime;
    use crate::route::{Cumulative, ProcessKey, Sample, SqlaRecord};

    fn rec(token: &str, t: u64, sample: Sample) -> SqlaRecord {
        SqlaRecord {
            key: ProcessKey {
                host: "vm".into(),
                program: "app".into(),
                token: token.into(),
            },
            time: CdTime::from_secs(t),
            interval: CdTime::from_secs(2),
            sample,
        }
    }

    fn pool(out: f64) -> Sample {
        Sample::Pool(Pool {
            numpools: 1.0,
            checkedout: out,
            checkedin: 4.0 - out,
            detached: 0.0,
            connections: 4.0,
        })
    }

    fn totals(t: [u64; 4]) -> Sample {
        Sample::Cumulative(Cumulative::Totals(t))
    }

    #[test]
    fn a_restored_store_holds_the_restored_gauges_for_its_peaks() {
        let (f, l) = (Freshness::default(), Limits::default());
        let mut s = SqlaStore::new(f, l);
        let t0 = Now::wall();
        s.apply(&rec("100:abcdef", 100, pool(3.0)), t0).unwrap();
        let saved = s.save(t0.after(Duration::from_secs(1)));
        let later = t0.after(Duration::from_secs(2));
        let mut r = SqlaStore::restore(saved, f, l, later);
        r.apply(&rec("100:abcdef", 103, pool(1.0)), later).unwrap();
        let held = r.programs[0].as_ref().map(|p| p.peaks.held());
        assert_eq!(held, Some([1.0, 4.0]));
        let p = r.snapshot(later.at).programs[0].clone();
        assert_eq!((p.checked_out_peak, p.connections_peak), (3.0, 4.0));
    }

    #[test]
    fn a_restored_store_continues_every_counter_and_process() {
        let (f, l) = (Freshness::default(), Limits::default());
        let mut s = SqlaStore::new(f, l);
        let t0 = Now::wall();
        // A long-lived process and one with a text token that exits.
        for (i, at) in [(0u64, t0), (1, t0.after(Duration::from_secs(2)))] {
            s.apply(&rec("100:abcdef", 100 + 2 * i, pool(1.0)), at)
                .unwrap();
            s.apply(
                &rec(
                    "100:abcdef",
                    100 + 2 * i,
                    totals([100_000 + 10 * i, 1, 5, 4]),
                ),
                at,
            )
            .unwrap();
        }
        s.apply(&rec("gone", 100, totals([50_000, 0, 1, 1])), t0)
            .unwrap();
        let at = t0.after(Duration::from_secs(20));
        let before = s.snapshot(at.at).programs[0].clone();
        let saved = s.save(at);
        let json = serde_json::to_string(&saved).unwrap();
        let saved: Saved = serde_json::from_str(&json).unwrap();

        let later = at.after(Duration::from_secs(1));
        let mut r = SqlaStore::restore(saved, f, l, later);
        let after = r.snapshot(later.at).programs[0].clone();
        assert_eq!(
            (after.totals, after.processes),
            (before.totals, before.processes)
        );
        // The long-lived process continues from its last totals; a replay
        // of its last report is still a duplicate; the exited one is still
        // known, so it is not counted twice if it comes back.
        let next = later.after(Duration::from_secs(1));
        assert_eq!(
            r.apply(&rec("100:abcdef", 102, totals([100_010, 1, 5, 4])), next),
            Err(crate::store::sqlalchemy::ApplyError::OutOfOrder)
        );
        r.apply(&rec("100:abcdef", 104, pool(3.0)), next).unwrap();
        r.apply(&rec("100:abcdef", 104, totals([100_020, 1, 5, 4])), next)
            .unwrap();
        r.apply(&rec("gone", 130, totals([50_000, 0, 1, 1])), next)
            .unwrap();
        let p = r.snapshot(next.at).programs[0].clone();
        assert_eq!(p.totals, [150_020, 1, 6, 5]);
        assert_eq!((p.processes, p.pool.checkedout), (2, 3.0));
    }
}
