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

Third fix (speed, not semantics): TransactWriteItems deep-copies every table
it touches for rollback; see _patch_transact_write_items.
"""

import copy

import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

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


def _patch_transact_write_items():
    """TransactWriteItems without deep-copying whole tables.

    moto snapshots every table a transaction touches (a deepcopy of all its
    items) so it can roll back. With the audit trail in the same table that
    makes each write O(table), and under the lock above the whole local stack
    crawls once a few thousand items exist. This version checks every
    condition first, then applies the writes, snapshotting only the items
    written. Same semantics (all or nothing, per-item cancellation reasons),
    same exceptions.
    """
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    def transact_write_items(self, transact_items):
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        seen = set()
        planned = []  # (op_type, op, table_name, key)
        errors = []
        for item in transact_items:
            if len(list(item.keys())) > 1:
                raise TransactWriteSingleOpException
            op_type, op = next(iter(item.items()))
            original_item = None
            try:
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")
                table_name = op["TableName"]
                table = self.get_table(table_name)
                if op_type == "Put":
                    attrs = op["Item"]
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]
                marker = (str(table_name), str(dict(sorted(key.items()))))
                if marker in seen:
                    raise MultipleTransactionsException()
                seen.add(marker)
                current = self.get_item(table_name, key)
                condition = op.get("ConditionExpression")
                if condition is not None:
                    check = get_filter_expression(
                        condition,
                        op.get("ExpressionAttributeNames"),
                        op.get("ExpressionAttributeValues"),
                    )
                    if not check.expr(current):
                        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=original_item)
                planned.append((op_type, op, table_name, key))
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                raise
            except ConditionalCheckFailed as e:
                errors.append(("ConditionalCheckFailed", str(e.message), original_item))
            except Exception as e:  # noqa: E722 as moto does: reported per item
                errors.append((type(e).__name__, str(e), original_item))
        if any(code is not None for code, _, _ in errors):
            raise TransactionCanceledException(errors)

        # Every condition holds: apply, keeping only the written items' old values.
        undo = []
        try:
            for op_type, op, table_name, key in planned:
                if op_type == "ConditionCheck":
                    continue
                before = self.get_item(table_name, key)
                undo.append((table_name, key, before.to_json()["Attributes"] if before else None))
                names = op.get("ExpressionAttributeNames")
                values = op.get("ExpressionAttributeValues")
                if op_type == "Put":
                    self.put_item(table_name, op["Item"], expression_attribute_names=names,
                                  expression_attribute_values=values)
                elif op_type == "Delete":
                    self.delete_item(table_name, key, expression_attribute_names=names,
                                     expression_attribute_values=values)
                else:
                    self.update_item(table_name, key, update_expression=op["UpdateExpression"],
                                     expression_attribute_names=names, expression_attribute_values=values)
        except Exception:
            for table_name, key, attrs in reversed(undo):
                if attrs is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attrs)
            raise

    DynamoDBBackend.transact_write_items = transact_write_items


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
    parser.add_argument("-p", "--port", type=int, required=True, help="0: any free port (see --port-file)")
    parser.add_argument(
        "--port-file",
        help="write the port listened on here, once listening (how a caller learns a port it did not choose: "
        "picking a free port and handing it over races with every other process on the machine)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _patch_state_machine_deepcopy()
    _patch_transact_write_items()
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(args.host, args.port, serialize_dynamodb(app), threaded=True)
    port = server.socket.getsockname()[1]
    os.environ.setdefault("MOTO_PORT", str(port))
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
