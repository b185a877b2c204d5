"""The Python/boto3 baseline for the init benchmark: the same cold-start work
as a Rust function, then "ready" on stdout and a wait, so the harness can
read the process's peak RSS.

    python_init.py kms,dynamodb,secretsmanager --read-secret   # as Begin: clients + admin key read
    python_init.py kms,dynamodb                                # as CreateKey: clients only
"""

import os
import sys

import boto3

session = boto3.session.Session()
clients = {name: session.client(name) for name in sys.argv[1].split(",")}
if "--read-secret" in sys.argv:
    clients["secretsmanager"].get_secret_value(SecretId=os.environ["CMEK_ADMIN_KEY_SECRET_ARN"])
print("ready", flush=True)
sys.stdin.read()
