"""The Python/boto3 baseline for the init benchmark: the same cold-start work
as the Rust Begin function — import the SDK, build KMS, DynamoDB and Secrets
Manager clients, read the admin key from Secrets Manager (moto here) — then
say "ready" and wait, so the harness can read the peak RSS of the process."""

import os
import sys

import boto3

session = boto3.session.Session()
kms = session.client("kms")
dynamodb = session.client("dynamodb")
secrets = session.client("secretsmanager")
secrets.get_secret_value(SecretId=os.environ["CMEK_ADMIN_KEY_SECRET_ARN"])
print("ready", flush=True)
sys.stdin.read()
