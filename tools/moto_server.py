"""moto's server, with DynamoDB requests applied one at a time.

moto's TransactWriteItems snapshots and restores whole tables without a lock,
so under its threaded server two concurrent transactions can half-apply
(a cancelled transaction's item survives, or a committed one is rolled back).
Real DynamoDB applies each transaction atomically; serializing DynamoDB
requests restores that guarantee without hiding any race in our own code,
which still interleaves freely *between* requests. Every other service stays
concurrent (Step Functions executions call back into this server).

Second fix: StartExecution deep-copies the state machine, including its
finished executions, whose interpreter state holds a lock that cannot be
copied; so once one execution has run, every later StartExecution fails with
HTTP 500. The copy now shares the executions list (the clone never uses it).
"""

import copy

import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

_dynamodb = threading.Lock()


def _patch_state_machine_deepcopy():
    from moto.stepfunctions.models import StateMachine

    def deepcopy_sharing_executions(self, memo):
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            setattr(clone, key, value if key == "executions" else copy.deepcopy(value, memo))
        return clone

    StateMachine.__deepcopy__ = deepcopy_sharing_executions


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
    _patch_state_machine_deepcopy()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialize_dynamodb(app), threaded=True)


if __name__ == "__main__":
    main()
