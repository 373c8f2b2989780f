"""The seed's gift-type-totals aggregation as a PyFlink Table API job, the
baseline of scripts/bench-flink.

Usage: python gift_type_totals.py FILE --mode streaming|batch
                                  [--checkpoints DIR] [--collect]

Reads FILE (JSON lines of `live_gift_total`) with the filesystem connector
and the json format, computes the seed's
`SELECT gift_type, SUM(gift_total_amount) ... GROUP BY gift_type` at
parallelism 1, and writes it into a blackhole sink. `--collect` prints
the final totals as JSON instead (`{"gift_type": total}`), to check them
against Apiary's; it is not the measured path.
"""

import argparse
import json

from pyflink.common import Configuration
from pyflink.table import EnvironmentSettings, TableEnvironment

# The seed's table: every gift field, with its Flink json settings (a
# missing field reads as NULL, a present field of the wrong type fails the
# job), which are the rules Apiary's seed-json-parser follows. Flink
# pushes the projection into the json format, so only the two fields the
# query reads are converted.
SOURCE = """
CREATE TABLE live_gift_total (
    user_id BIGINT,
    gift_type INT,
    gift_total_amount BIGINT,
    room_id BIGINT,
    ip STRING,
    create_time TIMESTAMP(3),
    update_time TIMESTAMP(3)
) WITH (
    'connector' = 'filesystem',
    'path' = 'file://{path}',
    'format' = 'json',
    'json.fail-on-missing-field' = 'false',
    'json.ignore-parse-errors' = 'false'
)
"""

SINK = """
CREATE TABLE gift_type_totals (
    gift_type INT,
    gift_total_amount BIGINT
) WITH ('connector' = 'blackhole')
"""

QUERY = """
SELECT gift_type, SUM(gift_total_amount) AS gift_total_amount
FROM live_gift_total
GROUP BY gift_type
"""


def settings(mode, checkpoints):
    config = Configuration()
    config.set_string("parallelism.default", "1")
    if mode == "streaming":
        # The tuning a Flink engineer applies to a GROUP BY: mini-batch
        # aggregation (which also turns on local-global aggregation), so
        # state is touched once per key and batch rather than per record.
        config.set_string("table.exec.mini-batch.enabled", "true")
        config.set_string("table.exec.mini-batch.allow-latency", "1 s")
        config.set_string("table.exec.mini-batch.size", "5000")
        if checkpoints:
            # Exactly-once checkpoints every 2 s (Apiary's default interval)
            # of the default heap state backend to local files: what ships
            # with Flink, no extra jar.
            config.set_string("execution.checkpointing.interval", "2 s")
            config.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
            config.set_string("execution.checkpointing.storage", "filesystem")
            config.set_string("execution.checkpointing.dir", f"file://{checkpoints}")
    builder = EnvironmentSettings.new_instance()
    builder = builder.in_streaming_mode() if mode == "streaming" else builder.in_batch_mode()
    return builder.with_configuration(config).build()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--mode", choices=["streaming", "batch"], required=True)
    parser.add_argument("--checkpoints", metavar="DIR")
    parser.add_argument("--collect", action="store_true")
    args = parser.parse_args()

    env = TableEnvironment.create(settings(args.mode, args.checkpoints))
    env.execute_sql(SOURCE.format(path=args.file))
    if not args.collect:
        env.execute_sql(SINK)
        env.execute_sql(f"INSERT INTO gift_type_totals {QUERY}").wait()
        return

    # A streaming GROUP BY emits a changelog: the last row per key wins.
    totals = {}
    with env.execute_sql(QUERY).collect() as rows:
        for row in rows:
            kind = row.get_row_kind().name
            if kind in ("INSERT", "UPDATE_AFTER"):
                totals[row[0]] = row[1]
            else:
                totals.pop(row[0], None)
    print(json.dumps({str(k): v for k, v in sorted(totals.items())}))


if __name__ == "__main__":
    main()
