"""Scripted SQLAlchemy applications for tests/real_client.rs.

Each scenario drives real Engines (SQLite files, QueuePool) with the real
sqlalchemy-collectd client plugin enabled through the engine URL, and walks
through named phases. After each phase the app prints one JSON line on stdout
describing the state it holds, then waits for a line "next" on stdin before
the next phase (EOF ends the app). The Rust test decides when state changes
and computes what the exporter must show from these reports; nothing here
knows what the exporter does.

A report is

    {"phase": NAME, "live": [VIEW, ...], "dead": [VIEW, ...]}

with one VIEW per (process, program name) of the processes still running
("live") and of the forked workers that have exited ("dead", their last
state):

    {"pid", "program", "host", "forked", "engines", "own": STATE,
     "inherited": STATE or null, "sender_alive": bool}

STATE is what the process did itself (since it started, or since the fork
for a forked worker); "inherited" is the parent's STATE for that program at
the moment of the fork. A STATE holds

* counts of SQLAlchemy's own pool events on the program's engines:
  checkouts ("checkout"), connects ("connect"), invalidations ("invalidate"
  and "soft_invalidate"), disconnects ("close" and "close_detached"), and
  none_checkins: "checkin" events whose DBAPI connection was None (the
  connection-less record that a hard invalidate() returns to the pool);
* the app's own bookkeeping of connections: held (checked out and in use,
  checked against the pools' own QueuePool.checkedout()), detached (detached
  from their pool and not yet closed), open (connects - disconnects) and idle
  (open connections neither held nor detached, i.e. sitting in a pool).

Usage: app.py SCENARIO --port UDP_PORT --workdir DIR [--host NAME]
              [--url URL --program NAME --hold N --idle N]

Scenario "postgres" (tests/database.rs) connects to a real PostgreSQL, or to
PgBouncer in front of it, at --url (psycopg2), as program --program, which is
also the connections' application_name; it holds --hold connections checked
out and --idle in its pool.

Scenario "eventlet" runs under eventlet.monkey_patch(), as OpenStack services
do (patched before anything else is imported); "asyncio" drives an
AsyncEngine (create_async_engine with aiosqlite).
"""

import sys

EVENTLET = len(sys.argv) > 1 and sys.argv[1] == "eventlet"
if EVENTLET:
    import warnings as _warnings

    # Eventlet 0.41 warns that it is in bugfix-only mode; the services that
    # run under it are what this scenario is for.
    _warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
    import eventlet
    import eventlet.tpool

    eventlet.monkey_patch()

import argparse
import json
import multiprocessing
import os
import warnings

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import SADeprecationWarning
from sqlalchemy.pool import QueuePool
from sqlalchemy_collectd.client import worker as collectd_worker

# sqlalchemy-collectd 0.0.8 registers a "reset" listener with the pre-2.0
# signature; SQLAlchemy 2.1 adapts it and warns on every check-in.
warnings.filterwarnings(
    "ignore",
    message=r'The argument signature for the "PoolEvents\.reset" event',
    category=SADeprecationWarning,
)

ARGS = None
# program name -> Program, for this process
PROGRAMS = {}
# Pools replaced by engine.dispose(close=False) in a forked worker. Keeping
# them alive keeps the DBAPI connections inherited from the parent alive, as
# in any app whose parent still uses them: the client identifies connections
# by id(), so a freed inherited connection could hand its id to a new one.
OLD_POOLS = []
FORKED = False
# The parent's ends of the workers' pipes. A forked worker inherits them and
# closes them, so that the parent's death reaches every worker as EOF.
PARENT_ENDS = []


def zero_state():
    return {
        "held": 0,
        "idle": 0,
        "detached": 0,
        "open": 0,
        "none_checkins": 0,
        "checkouts": 0,
        "connects": 0,
        "invalidations": 0,
        "disconnects": 0,
    }


class Program:
    """One collectd program name in this process: its engines, the pool
    events seen on them, and the connections the app holds."""

    def __init__(self, name, host):
        self.name = name
        self.host = host
        self.engines = []
        self.held = []
        self.detached = []
        self.events = zero_state()
        self.inherited = None

    def engine(self, db, pool_size=5, max_overflow=5):
        url = (
            "sqlite:///%s?plugin=collectd&collectd_host=127.0.0.1"
            "&collectd_port=%d&collectd_program_name=%s"
            "&collectd_report_host=%s"
            % (db, ARGS.port, self.name, self.host)
        )
        engine = sa.create_engine(
            url,
            poolclass=QueuePool,
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        self.listen(engine)
        return engine

    def listen(self, engine):
        """Counts the pool events of a (sync) engine, which becomes one of
        this program's engines."""
        ev = self.events

        def bump(key):
            def listener(*args):
                ev[key] += 1

            return listener

        event.listen(engine, "connect", bump("connects"))
        event.listen(engine, "checkout", bump("checkouts"))
        event.listen(engine, "invalidate", bump("invalidations"))
        event.listen(engine, "soft_invalidate", bump("invalidations"))
        event.listen(engine, "close", bump("disconnects"))
        event.listen(engine, "close_detached", bump("disconnects"))

        @event.listens_for(engine, "checkin")
        def checkin(dbapi_connection, record):
            if dbapi_connection is None:
                ev["none_checkins"] += 1

        self.engines.append(engine)

    def async_engine(self, db, pool_size=5, max_overflow=5):
        """An AsyncEngine (aiosqlite) with the plugin; the pool events and
        the pool's own count are those of its sync_engine."""
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import AsyncAdaptedQueuePool

        url = (
            "sqlite+aiosqlite:///%s?plugin=collectd&collectd_host=127.0.0.1"
            "&collectd_port=%d&collectd_program_name=%s"
            "&collectd_report_host=%s"
            % (db, ARGS.port, self.name, self.host)
        )
        engine = create_async_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        self.listen(engine.sync_engine)
        return engine

    def postgres_engine(self, url, pool_size):
        """An engine on PostgreSQL (psycopg2) whose connections carry the
        program name as their application_name, so that the server's
        pg_stat_activity can attribute them (as far as it can)."""
        url = sa.engine.make_url(url).update_query_dict(
            {
                "plugin": "collectd",
                "collectd_host": "127.0.0.1",
                "collectd_port": str(ARGS.port),
                "collectd_program_name": self.name,
                "collectd_report_host": self.host,
            }
        )
        engine = sa.create_engine(
            url,
            connect_args={"application_name": self.name},
            poolclass=QueuePool,
            pool_size=pool_size,
            max_overflow=0,
        )
        self.listen(engine)
        return engine

    def checkout_committed(self, engine, n):
        """Checks out n connections at once, each running one statement in
        a transaction that it commits: held between transactions, as an
        application holds a connection between requests, so that through
        PgBouncer in transaction mode none of them keeps a server
        connection."""
        for _ in range(n):
            conn = engine.connect()
            conn.exec_driver_sql("select 1").fetchall()
            conn.commit()
            self.held.append(conn)

    async def checkout_async(self, engine, n=1):
        for _ in range(n):
            conn = await engine.connect()
            await conn.exec_driver_sql("select 1")
            self.held.append(conn)

    async def give_back_async(self, n):
        for _ in range(n):
            await self.held.pop().close()

    def checkout(self, engine, n=1):
        for _ in range(n):
            conn = engine.connect()
            conn.exec_driver_sql("select 1").fetchall()
            self.held.append(conn)

    def give_back(self, n):
        for _ in range(n):
            self.held.pop().close()

    def state(self):
        pooled_out = sum(e.pool.checkedout() for e in self.engines)
        if pooled_out != len(self.held):
            raise AssertionError(
                "%s: app holds %d connections, pools say %d checked out"
                % (self.name, len(self.held), pooled_out)
            )
        s = dict(self.events)
        s["held"] = len(self.held)
        s["detached"] = len(self.detached)
        s["open"] = s["connects"] - s["disconnects"]
        s["idle"] = s["open"] - s["held"] - s["detached"]
        if s["idle"] < 0:
            raise AssertionError("%s: negative idle count: %r" % (self.name, s))
        return s

    def view(self):
        return {
            "pid": os.getpid(),
            "program": self.name,
            "host": self.host,
            "forked": FORKED,
            "engines": len(self.engines),
            "own": self.state(),
            "inherited": self.inherited,
            "sender_alive": sender_alive(),
        }


def sender_alive():
    """Whether this process runs the client's sender thread. Diagnostic only:
    the thread iterates the client's registry of targets unlocked, so a
    program name registered while it iterates kills it ("mutated during
    iteration"), and the process silently stops reporting."""
    t = collectd_worker._WORKER_THREAD
    return (
        t is not None and t.is_alive() and collectd_worker._PID == os.getpid()
    )


def program(name, host=None):
    p = PROGRAMS[name] = Program(name, host or ARGS.host)
    return p


def views():
    return [p.view() for p in PROGRAMS.values()]


def db(name="app"):
    return os.path.join(ARGS.workdir, "%s.sqlite" % name)


# ---- forked workers ----------------------------------------------------


def after_fork():
    """In a forked worker: what the parent did becomes "inherited", the
    worker's own record starts empty, and every engine gets a fresh pool
    (SQLAlchemy's recipe for multiprocessing)."""
    global FORKED
    FORKED = True
    for p in PROGRAMS.values():
        p.inherited = p.state()
        p.held = []
        p.detached = []
        for k in p.events:
            p.events[k] = 0
        for e in p.engines:
            OLD_POOLS.append(e.pool)
            e.dispose(close=False)


def worker_main(conn):
    for end in PARENT_ENDS:
        end.close()
    after_fork()
    (prog,) = PROGRAMS.values()
    engine = prog.engines[0]
    while True:
        try:
            cmd, arg = conn.recv()
        except EOFError:
            os._exit(0)
        if cmd == "checkout":
            prog.checkout(engine, arg)
        elif cmd == "give_back":
            prog.give_back(arg)
        elif cmd == "exit":
            # Straight out, as a killed process would: no clean-up, no
            # check-ins of the held connections, nothing more sent.
            conn.send("bye")
            os._exit(0)
        conn.send(views())


class Worker:
    def __init__(self):
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        PARENT_ENDS.append(self.conn)
        self.process = ctx.Process(target=worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.last = self.call("report")

    def call(self, cmd, arg=None):
        self.conn.send((cmd, arg))
        self.last = self.conn.recv()
        return self.last

    def exit(self):
        self.conn.send(("exit", None))
        self.conn.recv()
        self.process.join(10)
        if self.process.exitcode is None:
            raise AssertionError("worker %d did not exit" % self.process.pid)


# ---- phases --------------------------------------------------------------


def phase(name, workers=(), dead=()):
    live = views()
    for w in workers:
        live.extend(w.call("report"))
    gone = [v for w in dead for v in w.last]
    line = json.dumps({"phase": name, "live": live, "dead": gone})
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if EVENTLET:
        # A blocking read would stop the hub, and with it the client's
        # (green) sender thread: read in a real thread.
        cmd = eventlet.tpool.execute(sys.stdin.readline)
    else:
        cmd = sys.stdin.readline()
    if cmd.strip() != "next":
        # EOF or anything else: the test is over.
        os._exit(0)


def scenario_checkout():
    p = program("checkout")
    e = p.engine(db())
    phase("init")
    p.checkout(e, 3)
    phase("three_out")
    p.give_back(1)
    phase("one_returned")


def scenario_invalidate_detach():
    p = program("invdet")
    e = p.engine(db())
    phase("init")
    p.checkout(e, 3)
    c1, c2, c3 = p.held
    phase("three_out")
    # Hard invalidate: the DBAPI connection is closed and its record goes
    # back to the pool without a connection.
    c1.invalidate()
    p.held.remove(c1)
    phase("invalidated")
    c2.detach()
    p.held.remove(c2)
    p.detached.append(c2)
    phase("detached")
    c2.close()
    p.detached.remove(c2)
    phase("detached_closed")
    c3.close()
    p.held.remove(c3)
    phase("returned")
    # The pool hands out the connection-less record first: a reconnect.
    p.checkout(e, 1)
    phase("reconnected")


def scenario_two_engines():
    p = program("twoeng")
    a = p.engine(db("a"))
    b = p.engine(db("b"))
    phase("init")
    p.checkout(a, 2)
    p.checkout(b, 1)
    phase("out")
    # The last one held is b's.
    p.give_back(1)
    phase("one_returned")


def scenario_fork():
    hold_client_send_locks_across_forks()
    p = program("forkapp")
    e = p.engine(db())
    phase("init")
    p.checkout(e, 1)
    p.give_back(1)
    phase("parent_one_idle")
    workers = [Worker() for _ in range(3)]
    phase("forked", workers)
    for i, w in enumerate(workers):
        w.call("checkout", i + 1)
        phase("worker_%d_out" % (i + 1), workers)
    p.checkout(e, 2)
    phase("parent_two_out", workers)
    for i, w in enumerate(workers):
        w.call("give_back", i + 1)
    phase("workers_returned", workers)


def scenario_programs():
    alpha = program("alpha")
    beta = program("beta", ARGS.host + "-beta")
    a = alpha.engine(db("alpha"))
    b = beta.engine(db("beta"))
    phase("init")
    alpha.checkout(a, 2)
    beta.checkout(b, 1)
    phase("out")
    alpha.give_back(1)
    phase("back")


def scenario_programs_side():
    alpha = program("alpha")
    a = alpha.engine(db("alpha"))
    phase("init")
    alpha.checkout(a, 3)
    phase("out")
    alpha.give_back(3)
    phase("back")


def scenario_worker_exit():
    hold_client_send_locks_across_forks()
    p = program("exitapp")
    e = p.engine(db())
    p.checkout(e, 1)
    p.give_back(1)
    phase("parent_one_idle")
    workers = [Worker() for _ in range(2)]
    for i, w in enumerate(workers):
        w.call("checkout", i + 1)
    phase("workers_out", workers)
    gone = workers.pop(0)
    gone.exit()
    phase("worker_exited", workers, dead=[gone])


def hold_client_send_locks_across_forks():
    """sqlalchemy-collectd 0.0.8 is not fork-safe: its sender thread holds
    the ClientConnection's lock while it sends, and a process forked in that
    moment inherits the lock held by a thread it does not have, so the
    worker's own sender thread (alive, per sender_alive) blocks on it
    forever and the worker never reports. A fork right after
    create_engine() meets the parent's first send: about 3% of such forks
    (more under load). The usual remedy: take the locks before fork() and
    release them on both sides."""
    from sqlalchemy_collectd import protocol

    held = []

    def before():
        held[:] = list(protocol.ClientConnection.connections.values())
        for c in held:
            c._mutex.acquire()

    def after():
        for c in held:
            c._mutex.release()
        del held[:]

    os.register_at_fork(
        before=before, after_in_parent=after, after_in_child=after
    )


def scenario_relay():
    """For tests/collectd_daemon.rs, through sqlalchemy-collectd's server
    plugin: a parent and two workers forked before the parent's first
    connect (so nothing is inherited), all holding connections of one
    program; then every process returns one and the parent checks one out
    again (checkouts and connects part). The workers are forked right after
    create_engine(), so the client's send lock is held across the forks
    (see hold_client_send_locks_across_forks)."""
    hold_client_send_locks_across_forks()
    p = program("relayapp")
    e = p.engine(db())
    workers = [Worker() for _ in range(2)]
    p.checkout(e, 2)
    for i, w in enumerate(workers):
        w.call("checkout", 2 * i + 1)
    phase("out", workers)
    p.give_back(2)
    p.checkout(e, 1)
    for w in workers:
        w.call("give_back", 1)
    phase("back", workers)


def scenario_dashboards():
    """For tests/dashboards.rs: one program with two engines, so that every
    series the dashboards chart has data: connections held on both engines,
    one hard invalidation (the invalidations counter moves) and one detached
    connection kept open. The last phase holds this state (the client keeps
    reporting it) until the test ends."""
    p = program("dashapp")
    a = p.engine(db("a"))
    b = p.engine(db("b"))
    p.checkout(a, 3)
    p.checkout(b, 1)
    c1, c2 = p.held[0], p.held[1]
    c1.invalidate()
    p.held.remove(c1)
    c2.detach()
    p.held.remove(c2)
    p.detached.append(c2)
    phase("holding")


def scenario_saturate():
    """For tests/alerting.rs: one program whose single engine has
    pool_size 2 and max_overflow 0 checks out both of its connections and
    holds them (pool usage 100 %) until told "next"; then it returns them
    and holds that state (nothing checked out, two idle) until the test
    ends."""
    p = program("alertapp")
    e = p.engine(db(), pool_size=2, max_overflow=0)
    p.checkout(e, 2)
    phase("saturated")
    p.give_back(2)
    phase("released")


def scenario_eventlet():
    """The checkout scenario under eventlet: checkouts in green threads."""
    for module in ("thread", "socket", "time"):
        if not eventlet.patcher.is_monkey_patched(module):
            raise AssertionError("eventlet did not patch %s" % module)
    p = program("eventlet")
    e = p.engine(db())
    phase("init")
    pool = eventlet.GreenPool()
    for _ in range(3):
        pool.spawn(p.checkout, e)
    pool.waitall()
    phase("three_out")
    p.give_back(1)
    phase("one_returned")


def scenario_asyncio():
    """The checkout scenario on an AsyncEngine: three connections checked
    out concurrently by tasks, one given back."""
    import asyncio

    p = program("asyncio")
    loop = asyncio.new_event_loop()
    e = p.async_engine(db())
    phase("init")

    async def three():
        await asyncio.gather(*(p.checkout_async(e) for _ in range(3)))

    loop.run_until_complete(three())
    phase("three_out")
    loop.run_until_complete(p.give_back_async(1))
    phase("one_returned")


def scenario_postgres():
    """For tests/database.rs: program ARGS.program on PostgreSQL (directly
    or through PgBouncer, ARGS.url) checks out hold + idle connections at
    once, then gives idle of them back to its pool: hold checked out, idle
    checked in, all of them open. It holds that state (the client keeps
    reporting it) until the test ends."""
    p = program(ARGS.program)
    e = p.postgres_engine(ARGS.url, pool_size=ARGS.hold + ARGS.idle)
    p.checkout_committed(e, ARGS.hold + ARGS.idle)
    p.give_back(ARGS.idle)
    phase("holding")


SCENARIOS = {
    "eventlet": scenario_eventlet,
    "asyncio": scenario_asyncio,
    "checkout": scenario_checkout,
    "invalidate_detach": scenario_invalidate_detach,
    "two_engines": scenario_two_engines,
    "fork": scenario_fork,
    "programs": scenario_programs,
    "programs_side": scenario_programs_side,
    "worker_exit": scenario_worker_exit,
    "relay": scenario_relay,
    "dashboards": scenario_dashboards,
    "saturate": scenario_saturate,
    "postgres": scenario_postgres,
}


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--host", default="itest")
    # Scenario "postgres" only.
    ap.add_argument("--url")
    ap.add_argument("--program")
    ap.add_argument("--hold", type=int, default=0)
    ap.add_argument("--idle", type=int, default=0)
    ARGS = ap.parse_args()
    SCENARIOS[ARGS.scenario]()
    # Workers get EOF on their pipes and leave; nothing to clean up.
    os._exit(0)


if __name__ == "__main__":
    main()
