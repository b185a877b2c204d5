"""moto's server, with DynamoDB requests applied one at a time.

moto's TransactWriteItems snapshots and restores whole tables without a lock,
so under its threaded server two concurrent transactions can half-apply
(a cancelled transaction's item survives, or a committed one is rolled back).
Real DynamoDB applies each transaction atomically; serializing DynamoDB
requests restores that guarantee without hiding any race in our own code,
which still interleaves freely *between* requests. Every other service stays
concurrent (Step Functions executions call back into this server).
"""

import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

_dynamodb = threading.Lock()


def serialize_dynamodb(app):
    def wrapped(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB_"):
            with _dynamodb:
                # Materialize the body inside the lock: the write happens here.
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wrapped


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialize_dynamodb(app), threaded=True)


if __name__ == "__main__":
    main()
