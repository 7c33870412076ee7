"""A SQLAlchemy program reporting its pool to the exporter.

    pip install sqlalchemy sqlalchemy-collectd
    python examples/sqlalchemy_app.py   # then: curl -s localhost:9827/metrics | grep example_app

Holds two connections out of the pool for a minute: the exporter shows
sqlalchemy_connections_checked_out{program="example_app"} 2.
"""
import time

from sqlalchemy import create_engine, text

engine = create_engine(
    "sqlite:///example.db?plugin=collectd&collectd_host=127.0.0.1"
    "&collectd_port=25827&collectd_program_name=example_app"
)
held = [engine.connect() for _ in range(2)]
for conn in held:
    conn.execute(text("select 1"))
time.sleep(60)
