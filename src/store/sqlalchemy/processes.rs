//! One host/program's processes, as they are tracked: what
//! `GET /api/v1/processes` lists (no metric is per process, so cardinality
//! stays per host/program).
//!
//! Takes the store, the exporter's monotonic clock and the page asked for
//! (order, offset, limit); hands on a [`ProcessList`] of that page, built
//! under the store's lock from one pass over the processes and a selection
//! of the page, so that a huge program costs a key per process and a copy
//! of the page only (nothing is formatted under the lock).
//!
//! A process record keeps no receive time (it would cost every process 8
//! bytes): the receive time of its last accepted report is its `live_until`
//! less the liveness window of the program's interval, exact while the
//! program's processes announce one interval (the real client: 2 s). Its
//! client time is the newest of its reports' timestamps, which the clock
//! step rules keep at the last accepted report's.

use super::{Extra, Process, ProcessId, SqlaStore, Stamp, TEXT_TOKEN, Tick};
use crate::collectd::{CdTime, HR_PER_SECOND};
use crate::route::Pool;
use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What names a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// `<pid>:<6 hex digits>`, the real client's form.
    Client { pid: u32, suffix: u32 },
    /// Any other token, as sent.
    Text(Box<str>),
    /// The host/program as sqlalchemy-collectd's server plugin relays it:
    /// sums over the relaying server's processes, no token of its own.
    Relay,
}

impl Token {
    /// The pid, for a token of the client's form.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Token::Client { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// The token as the client sent it; `None` for a relay.
    pub fn text(&self) -> Option<String> {
        match self {
            Token::Client { pid, suffix } => Some(format!("{pid}:{suffix:06x}")),
            Token::Text(t) => Some(t.to_string()),
            Token::Relay => None,
        }
    }
}

/// One process as tracked.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSnapshot {
    pub token: Token,
    /// Whether it is live at the listing's time (dead ones are kept, for
    /// counter continuity, until `--forget-after`).
    pub live: bool,
    /// How long before the listing its last accepted report was received.
    pub age: Duration,
    /// Its last pool gauges (a relay's: the relayed sums); `None` before its
    /// first pool report.
    pub pool: Option<Pool>,
    /// Its last totals as the client sent them (checkouts, invalidated,
    /// connects, disconnects; a relay's: the last relayed sums); `None`
    /// before its first.
    pub totals: Option<[u64; 4]>,
    /// commits, rollbacks, transactions, once it sent them.
    pub transactions: Option<[u64; 3]>,
    /// For a relay: the live processes the relaying server sums.
    pub relayed_processes: Option<u64>,
    /// The client's timestamp of its newest accepted report, Unix seconds;
    /// `None` when the program's reports carry none (they are then ordered
    /// by arrival).
    pub client_time_unix: Option<f64>,
}

/// One page of a host/program's processes.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessList {
    pub host: Arc<str>,
    pub program: Arc<str>,
    /// The report interval the program's newest report announced, seconds.
    pub interval_seconds: f64,
    /// Processes tracked, live and dead, on every page.
    pub total: usize,
    /// Of those, the ones live.
    pub live: usize,
    /// The page, in the order asked for.
    pub processes: Vec<ProcessSnapshot>,
}

/// How [`SqlaStore::processes`] orders processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProcessOrder {
    /// Live ones first, then by checked-out connections (most first), then
    /// by token: who holds the connections.
    #[default]
    CheckedOut,
    /// By token: client tokens by pid, then other tokens, then the relay.
    /// Stable from one request to the next, for walking a large program's
    /// pages.
    Token,
}

/// What a process is ordered by, borrowed from the store.
#[derive(Clone, Copy, Debug)]
struct SortKey<'a> {
    live: bool,
    /// Checked out; below every count before the first pool report.
    out: f64,
    token: TokenKey<'a>,
}

/// Client tokens by pid, then suffix (their packed number's order), then
/// text tokens, then the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TokenKey<'a> {
    Client(u64),
    Text(&'a str),
    Relay,
}

/// A total order (tokens are unique within a program), so pages never
/// overlap.
fn compare(order: ProcessOrder, a: &SortKey<'_>, b: &SortKey<'_>) -> Ordering {
    match order {
        ProcessOrder::Token => a.token.cmp(&b.token),
        ProcessOrder::CheckedOut => b
            .live
            .cmp(&a.live)
            .then_with(|| b.out.total_cmp(&a.out))
            .then_with(|| a.token.cmp(&b.token)),
    }
}

/// Orders `items` by `order` and keeps `limit` of them from `offset` on;
/// only what is kept is sorted (selected first from the rest).
fn page<T>(items: &mut Vec<(SortKey<'_>, T)>, order: ProcessOrder, offset: usize, limit: usize) {
    let total = items.len();
    if offset >= total {
        items.clear();
        return;
    }
    let cmp = |a: &(SortKey<'_>, T), b: &(SortKey<'_>, T)| compare(order, &a.0, &b.0);
    let end = offset.saturating_add(limit).min(total);
    if end < total {
        items.select_nth_unstable_by(end, cmp);
        items.truncate(end);
    }
    items.sort_unstable_by(cmp);
    items.drain(..offset);
}

impl SqlaStore {
    /// One page of the processes of `host`/`program` tracked at `now`, live
    /// and dead, in `order`; `None` for a host/program not tracked (never
    /// seen, or forgotten). Under the store's lock this costs one pass over
    /// the processes and a selection of the page; only the page is copied.
    pub fn processes(
        &self,
        host: &str,
        program: &str,
        now: Instant,
        order: ProcessOrder,
        offset: usize,
        limit: usize,
    ) -> Option<ProcessList> {
        let id = *self.index.get(host)?.get(program)?;
        let p = self.programs.get(id as usize)?.as_ref()?;
        let now_tick = self.tick(now);
        let forget = self.forget_ticks();
        // As the snapshot: what a sweep would forget now is gone already.
        if p.live_until.0.saturating_add(forget) <= now_tick.0 {
            return None;
        }
        let mut items: Vec<(SortKey<'_>, (&ProcessId, &Process))> = self
            .processes
            .iter()
            .filter(|(pid, process)| {
                pid.program == id && process.live_until.0.saturating_add(forget) > now_tick.0
            })
            .map(|(pid, process)| {
                let relay = process.extra.as_deref().and_then(|e| e.relay.as_ref());
                let out = match relay {
                    Some(r) => r.gauges[1].map(|(_, v)| v),
                    None => process.pool.map(|(_, g)| g.checkedout),
                };
                let key = SortKey {
                    live: process.live_until > now_tick,
                    out: out.unwrap_or(f64::NEG_INFINITY),
                    token: match relay {
                        Some(_) => TokenKey::Relay,
                        None => self.token_key(pid),
                    },
                };
                (key, (pid, process))
            })
            .collect();
        let total = items.len();
        let live = items.iter().filter(|(k, _)| k.live).count();
        page(&mut items, order, offset, limit);

        let interval = CdTime((p.interval * HR_PER_SECOND as f64) as u64);
        let window = self.freshness.window(interval).as_nanos();
        let window = window.min(u128::from(u64::MAX)) as u64;
        let clock_known = p.clock_offset.is_some();
        let processes = items
            .into_iter()
            .map(|(key, (_, process))| {
                let received = Tick(process.live_until.0.saturating_sub(window));
                let mut newest: Option<Stamp> = None;
                let mut seen = |t: Stamp| newest = Some(newest.map_or(t, |n| n.max(t)));
                process.pool.iter().for_each(|(t, _)| seen(*t));
                process.totals.iter().for_each(|(t, _)| seen(*t));
                let extra = process.extra.as_deref();
                let transactions = extra.and_then(|e| e.transactions);
                transactions.iter().for_each(|(t, _)| seen(*t));
                let relay = extra.and_then(|e: &Extra| e.relay.as_ref());
                let (pool, totals, relayed) = match relay {
                    Some(r) => {
                        r.gauges.iter().flatten().for_each(|(t, _)| seen(*t));
                        r.counters.iter().flatten().for_each(|(t, _)| seen(*t));
                        let totals = r
                            .counters
                            .iter()
                            .any(Option::is_some)
                            .then(|| r.counters.map(|c| c.map_or(0, |(_, v)| v)));
                        let pool = r.gauges[..5].iter().any(Option::is_some).then(|| r.pool());
                        (pool, totals, Some(r.processes()))
                    }
                    None => (
                        process.pool.map(|(_, g)| g),
                        process.totals.map(|(_, t)| t),
                        None,
                    ),
                };
                ProcessSnapshot {
                    token: match key.token {
                        TokenKey::Client(n) => Token::Client {
                            pid: (n >> 24) as u32,
                            suffix: (n & 0xff_ffff) as u32,
                        },
                        TokenKey::Text(t) => Token::Text(t.into()),
                        TokenKey::Relay => Token::Relay,
                    },
                    live: key.live,
                    age: Duration::from_nanos(now_tick.0.saturating_sub(received.0)),
                    pool,
                    totals,
                    transactions: transactions.map(|(_, t)| t),
                    relayed_processes: relayed,
                    client_time_unix: newest
                        .filter(|_| clock_known)
                        .map(|t| CdTime(t.get()).as_secs_f64()),
                }
            })
            .collect();
        Some(ProcessList {
            host: p.host.clone(),
            program: p.name.clone(),
            interval_seconds: p.interval,
            total,
            live,
            processes,
        })
    }

    fn token_key(&self, id: &ProcessId) -> TokenKey<'_> {
        if id.token & TEXT_TOKEN == 0 {
            return TokenKey::Client(id.token);
        }
        // Every text token's number has its name while a process holds it.
        TokenKey::Text(self.tokens.names.get(&id.token).map_or("", |n| n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Cumulative, ProcessKey, RelayStat, Sample, SqlaRecord};
    use crate::store::sqlalchemy::Limits;
    use crate::store::{Freshness, Now};

    const S: Duration = Duration::from_secs(1);

    fn pool(token: &str, t: u64, out: f64, connections: f64) -> SqlaRecord {
        SqlaRecord {
            key: ProcessKey {
                host: "web1".into(),
                program: "api".into(),
                token: token.into(),
            },
            time: CdTime::from_secs(t),
            interval: CdTime::from_secs(2),
            sample: Sample::Pool(Pool {
                numpools: 1.0,
                checkedout: out,
                checkedin: connections - out,
                detached: 0.0,
                connections,
            }),
        }
    }

    fn totals(token: &str, t: u64, totals: [u64; 4]) -> SqlaRecord {
        SqlaRecord {
            sample: Sample::Cumulative(Cumulative::Totals(totals)),
            ..pool(token, t, 0.0, 0.0)
        }
    }

    fn store() -> SqlaStore {
        SqlaStore::new(Freshness::default(), Limits::default())
    }

    fn listing(
        s: &SqlaStore,
        at: Instant,
        order: ProcessOrder,
        offset: usize,
        limit: usize,
    ) -> Option<ProcessList> {
        s.processes("web1", "api", at, order, offset, limit)
    }

    fn tokens(list: &ProcessList) -> Vec<String> {
        list.processes
            .iter()
            .map(|p| p.token.text().unwrap_or_else(|| "(relay)".into()))
            .collect()
    }

    #[test]
    fn a_process_is_listed_with_its_own_gauges_totals_age_and_clock_offset() {
        let mut s = store();
        let t0 = Now::wall();
        let client = 1_000_000;
        s.apply(&pool("4242:00beef", client, 3.0, 5.0), t0).unwrap();
        s.apply(&totals("4242:00beef", client, [30, 1, 6, 1]), t0)
            .unwrap();
        s.apply(&pool("7:a1b2c3", client, 1.0, 1.0), t0.after(S))
            .unwrap();
        let list = listing(&s, t0.at + 2 * S, ProcessOrder::Token, 0, 10).unwrap();
        assert_eq!(
            (&*list.host, &*list.program, list.interval_seconds),
            ("web1", "api", 2.0)
        );
        assert_eq!((list.total, list.live), (2, 2));
        assert_eq!(tokens(&list), ["7:a1b2c3", "4242:00beef"]);
        let p = &list.processes[1];
        assert_eq!(
            p.token,
            Token::Client {
                pid: 4242,
                suffix: 0xbeef
            }
        );
        assert_eq!(p.token.pid(), Some(4242));
        assert!(p.live);
        assert_eq!(p.age, 2 * S);
        assert_eq!(
            p.pool.map(|g| (g.checkedout, g.connections)),
            Some((3.0, 5.0))
        );
        assert_eq!(p.totals, Some([30, 1, 6, 1]));
        assert_eq!(p.client_time_unix, Some(client as f64));
        assert_eq!(p.relayed_processes, None);
        // The one that sent only a pool report has no totals yet.
        assert_eq!(list.processes[0].totals, None);
        assert_eq!(list.processes[0].age, S);
    }

    #[test]
    fn dead_processes_are_listed_until_forgotten_and_unknown_programs_are_none() {
        let mut s = store();
        let t0 = Now::wall();
        s.apply(&pool("1:aaaaaa", 100, 2.0, 2.0), t0).unwrap();
        s.apply(&pool("2:bbbbbb", 100, 1.0, 1.0), t0).unwrap();
        s.apply(&pool("2:bbbbbb", 110, 1.0, 1.0), t0.after(10 * S))
            .unwrap();
        // 1 stopped at t0: dead after its 6 s window, still listed, first
        // after the live one whatever it held.
        let list = listing(&s, t0.at + 12 * S, ProcessOrder::CheckedOut, 0, 10).unwrap();
        assert_eq!((list.total, list.live), (2, 1));
        let got: Vec<_> = list
            .processes
            .iter()
            .map(|p| (p.token.pid(), p.live, p.age))
            .collect();
        assert_eq!(got, [(Some(2), true, 2 * S), (Some(1), false, 12 * S)]);
        let order = ProcessOrder::CheckedOut;
        assert!(s.processes("web1", "nope", t0.at, order, 0, 10).is_none());
        assert!(s.processes("web9", "api", t0.at, order, 0, 10).is_none());
        // 1 is forgotten an hour after it died (3606 s), the program an hour
        // after its last process did (3616 s), before and after a sweep.
        let at = |secs| t0.at + Duration::from_secs(secs);
        let list = listing(&s, at(3610), order, 0, 10).unwrap();
        assert_eq!(
            (tokens(&list), list.total),
            (vec!["2:bbbbbb".to_owned()], 1)
        );
        let later = at(3616);
        assert!(listing(&s, later, order, 0, 10).is_none());
        s.sweep(later);
        assert!(listing(&s, later, order, 0, 10).is_none());
    }

    #[test]
    fn checked_out_order_puts_the_holders_first_and_pages_do_not_overlap() {
        let mut s = store();
        let t0 = Now::wall();
        // Pids 1..=25; pid n holds n % 4 connections.
        for n in 1..=25u32 {
            s.apply(
                &pool(&format!("{n}:abcdef"), 100, f64::from(n % 4), 4.0),
                t0,
            )
            .unwrap();
        }
        s.apply(&pool("worker-x", 100, 3.0, 4.0), t0).unwrap();
        let page = |order, offset, limit| {
            let list = listing(&s, t0.at, order, offset, limit).unwrap();
            assert_eq!(list.total, 26);
            tokens(&list)
        };
        let first = page(ProcessOrder::CheckedOut, 0, 4);
        assert_eq!(first, ["3:abcdef", "7:abcdef", "11:abcdef", "15:abcdef"]);
        let mut all = Vec::new();
        for offset in (0..26).step_by(4) {
            all.extend(page(ProcessOrder::CheckedOut, offset, 4));
        }
        let mut want: Vec<(u32, String)> = (1..=25u32)
            .map(|n| (n % 4, format!("{n}:abcdef")))
            .chain([(3, "worker-x".to_owned())])
            .collect();
        // Most held first; ties by pid, the text token after the pids.
        want.sort_by_key(|(out, _)| std::cmp::Reverse(*out));
        let want: Vec<String> = want.into_iter().map(|(_, t)| t).collect();
        assert_eq!(all, want);
        assert_eq!(
            &all[..7],
            [
                "3:abcdef",
                "7:abcdef",
                "11:abcdef",
                "15:abcdef",
                "19:abcdef",
                "23:abcdef",
                "worker-x"
            ]
        );
        // By token: pids in numeric order, then text.
        assert_eq!(
            page(ProcessOrder::Token, 8, 3),
            ["9:abcdef", "10:abcdef", "11:abcdef"]
        );
        assert_eq!(page(ProcessOrder::Token, 24, 10), ["25:abcdef", "worker-x"]);
        assert_eq!(page(ProcessOrder::Token, 26, 10), Vec::<String>::new());
        assert_eq!(
            page(ProcessOrder::Token, usize::MAX, usize::MAX),
            Vec::<String>::new()
        );
        assert_eq!(page(ProcessOrder::Token, 0, 0), Vec::<String>::new());
    }

    #[test]
    fn a_relayed_program_is_one_entry_of_the_relayed_sums() {
        let mut s = store();
        let t0 = Now::wall();
        let relay = |t, stat| SqlaRecord {
            key: ProcessKey {
                host: "web1".into(),
                program: "api".into(),
                token: crate::collectd::Str::from_static(crate::route::RELAY_TOKEN),
            },
            time: CdTime::from_secs(t),
            interval: CdTime::from_secs(10),
            sample: Sample::Relay(stat),
        };
        for (index, value) in [2.0, 3.0, 1.0, 0.0, 4.0, 2.0].into_iter().enumerate() {
            s.apply(&relay(100, RelayStat::Gauge { index, value }), t0)
                .unwrap();
        }
        s.apply(
            &relay(
                100,
                RelayStat::Counter {
                    index: 0,
                    value: 17,
                },
            ),
            t0,
        )
        .unwrap();
        let list = listing(&s, t0.at + S, ProcessOrder::CheckedOut, 0, 10).unwrap();
        assert_eq!(list.total, 1);
        let p = &list.processes[0];
        assert_eq!(
            (&p.token, p.token.text(), p.token.pid()),
            (&Token::Relay, None, None)
        );
        assert_eq!(p.relayed_processes, Some(2));
        assert_eq!(
            p.pool,
            Some(Pool {
                numpools: 2.0,
                checkedout: 3.0,
                checkedin: 1.0,
                detached: 0.0,
                connections: 4.0
            })
        );
        assert_eq!(p.totals, Some([17, 0, 0, 0]));
        assert_eq!((p.live, p.age), (true, S));
        assert_eq!(list.interval_seconds, 10.0);
    }

    #[test]
    fn without_client_timestamps_there_is_no_client_time() {
        let mut s = store();
        let t0 = Now::wall();
        let mut r = pool("1:aaaaaa", 0, 1.0, 1.0);
        r.time = CdTime(0);
        s.apply(&r, t0).unwrap();
        let list = listing(&s, t0.at, ProcessOrder::Token, 0, 1).unwrap();
        assert_eq!(list.processes[0].client_time_unix, None);
    }

    #[test]
    fn a_fixed_stale_after_gives_the_receive_time_too() {
        let mut s = SqlaStore::new(
            Freshness {
                stale_after: Some(Duration::from_secs(90)),
                ..Freshness::default()
            },
            Limits::default(),
        );
        let t0 = Now::wall();
        s.apply(&pool("1:aaaaaa", 100, 1.0, 1.0), t0).unwrap();
        let list = listing(&s, t0.at + 5 * S, ProcessOrder::Token, 0, 1).unwrap();
        assert_eq!(
            (list.processes[0].age, list.processes[0].live),
            (5 * S, true)
        );
    }
}
