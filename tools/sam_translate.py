"""Print template.yaml as CloudFormation would receive it from `sam deploy`:
the AWS SAM translator's output, with the roles, policies, permissions and
rules SAM generates. Used by the IAM coverage test, which evaluates every
recorded AWS call against the roles as they would really deploy.

Usage: python tools/sam_translate.py template.yaml > translated.json
"""

import json
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """SAM asks IAM for AWS managed policy ARNs only to expand policy names
    given without an ARN; the template gives none, so nothing is looked up."""

    def load(self):
        return {}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        template = yaml_parse(f.read())
    # What `sam package` does before deploying: code and definition go to S3.
    template.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://bucket/code.zip"
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in props:
            props["CodeUri"] = "s3://bucket/code.zip"
        if resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["DefinitionUri"] = "s3://bucket/definition.json"
    json.dump(transform(template, {}, NoManagedPolicies()), sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
