"""A local AWS built from `template.yaml`: moto on loopback, the template's resources created in it,
and moto's Lambda backend dispatching to the real handlers the template names."""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import logging
import os
import secrets
import threading
import traceback
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import boto3
import requests
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.server import ThreadedMotoServer

from vtriage_local.loopback import answered_in_process
from vtriage_local.moto_memory import moto_memory
from vtriage_local.moto_speedups import moto_speedups, signed_for_moto
from vtriage_local.template import (
    MEMBER_ROLE_TEMPLATE_PATH,
    PROJECT_ROOT,
    TEMPLATE_PATH,
    FunctionSpec,
    Intrinsics,
    condition_holds,
    functions,
    load_template,
    parameter_problems,
)

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
_DUMMY_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/vtriage-local"
# The role through which the local tools reach another account of the organisation, as its administrators
# do (moto does not check that it exists, nor its trust policy).
ADMINISTRATOR_ROLE = "OrganizationAccountAccessRole"


# moto's Step Functions engine runs ASL only when asked to; its Lambda backend must not need Docker.
def _moto_config(run_state_machines: bool) -> dict[str, Any]:
    return {"stepfunctions": {"execute_state_machine": run_state_machines}, "lambda": {"use_docker": False}}


_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    """The one boto3 session of the local tools' clients (create clients under _SESSION_LOCK: a session
    is not thread-safe). A session parses botocore's endpoint and service models on its first client
    of each service: a session per client made each stack's set-up parse them again, half its time."""
    return boto3.session.Session()


# The template parameters that say where the deployment acts (its members, their role, the Regions): the
# local stack reads them itself, to deploy member-role.yaml in each member account.
ORGANISATION_PARAMETERS = frozenset({"MemberAccountIds", "MemberRoleName", "MemberExternalId", "ActRegions"})


# The stacks of this process started and not yet stopped, oldest first, and the value each variable they
# set had before any of them set it.
_RUNNING: list[LocalAws] = []
_BEFORE_STACKS: dict[str, str | None] = {}


def _put_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class LocalSetupError(RuntimeError):
    """The local AWS could not be set up as the template describes."""


@dataclass
class LocalContext:
    """The parts of the Lambda context object that handlers and powertools read."""

    function_name: str
    timeout_s: int
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        """The function's ARN."""
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        """The function's log group."""
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        """A log stream name."""
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        """Time left: the whole timeout, since local invocations are not cut short."""
        return self.timeout_s * 1000


class LocalAws:
    """moto on loopback with the template's queues, tables, topic, secret, functions and state machine."""

    def __init__(
        self,
        template_path: Path = TEMPLATE_PATH,
        parameters: dict[str, str] | None = None,
        vt_api_key: str = "local-replay-key",
        *,
        run_state_machines: bool = True,
    ) -> None:
        """Describe the stack from `template_path` with `parameters` over the template's defaults.

        `run_state_machines=False` records started executions without running them: for measuring the
        functions alone, since moto's engine runs executions in this process, on the same cores.
        """
        self.template_path = template_path
        self.run_state_machines = run_state_machines
        self.template = load_template(template_path)
        self.functions: dict[str, FunctionSpec] = functions(self.template, template_path.parent)
        declared = self.template.get("Parameters", {})
        unknown = sorted(set(parameters or {}) - set(declared))
        if unknown:
            raise LocalSetupError(
                f"template.yaml has no parameter {', '.join(unknown)}; its parameters: {', '.join(declared)}"
            )
        # As CloudFormation does before it deploys anything, for the organisation's parameters: each value
        # its parameter's constraint refuses is named, not left for a function's settings or member-role.yaml
        # to refuse later in their own terms. The others reach the functions' settings, which name what they
        # refuse (and let through what a local run needs, such as a ticket provider's URL on loopback).
        given = {name: value for name, value in (parameters or {}).items() if name in ORGANISATION_PARAMETERS}
        problems = parameter_problems(self.template, given)
        if problems:
            raise LocalSetupError("; ".join(problems))
        self.parameters = {name: str(spec.get("Default", "")) for name, spec in declared.items()} | (
            parameters or {}
        )
        self.vt_api_key = vt_api_key
        self.physical: dict[str, dict[str, str]] = {}
        self._server: ThreadedMotoServer | None = None
        self._patch: Any = None
        self._engine_patches: list[Any] = []
        # The environment this stack set while it runs (see stop).
        self._saved_env: dict[str, str | None] = {}
        self._modules: dict[str, ModuleType] = {}
        self._import_lock = threading.Lock()
        self._accounts: dict[str, dict[str, str]] = {}
        self._deploying_clients: dict[str, Any] = {}
        self.endpoint_url = ""

    # -- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalAws:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start moto, deploy the template's resources into it, and point this process's AWS clients at it."""
        # One line per request on stderr is noise to a person reading the runner's output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # Before moto loads anything: its reset and its first requests load the models the patches share.
        self._engine_patches = [*moto_speedups(), *moto_memory()]
        for patch in self._engine_patches:
            patch.start()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        # botocore's requests reach moto's application in process; its server stays for HTTP's users.
        server = self._server._server
        assert server is not None
        self._engine_patches.append(answered_in_process(self.endpoint_url, server.app))
        self._engine_patches[-1].start()
        self._engine_patches.append(signed_for_moto(self.endpoint_url, f"http://localhost:{port}"))
        self._engine_patches[-1].start()
        self._set_env(
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                # moto's Step Functions engine calls Lambda and DynamoDB through this port.
                "MOTO_PORT": str(port),
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_PROFILE": None,
                # moto's 1,300 Amazon images (and a snapshot each) are filtered on every launch and every
                # DescribeSnapshots: a tenth of a run's CPU. The mirror registers the one image it uses.
                "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
            }
        )
        # moto keeps its backends per process: start from nothing, whatever ran here before.
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        self._accounts.clear()
        self._deploying_clients.clear()
        requests.post(
            f"{self.endpoint_url}/moto-api/config", json=_moto_config(self.run_state_machines), timeout=10
        ).raise_for_status()
        self._patch = mock.patch.object(LambdaSimpleBackend, "invoke", _make_dispatcher(self))
        self._patch.start()
        self._deploy()
        self._set_env(self.function_environment())

    def stop(self) -> None:
        """Stop moto and give the process its environment back."""
        if self._patch is not None:
            self._patch.stop()
            self._patch = None
        for patch in reversed(self._engine_patches):
            patch.stop()
        self._engine_patches = []
        if self._server is not None:
            self._server.stop()
            self._server = None
        # Each variable goes back to what the newest stack still running set, or else to what it was
        # before any stack: stacks need not stop in the order they started (a test's module stack may
        # start before its package's and stop first), and the environment must not keep a stopped one's.
        if self in _RUNNING:
            _RUNNING.remove(self)
        for name in self._saved_env:
            holder = next((other for other in reversed(_RUNNING) if name in other._saved_env), None)
            _put_env(name, holder._saved_env[name] if holder else _BEFORE_STACKS.pop(name, None))
        self._saved_env.clear()

    def _set_env(self, values: dict[str, str | None]) -> None:
        if self not in _RUNNING:
            _RUNNING.append(self)
        for name, value in values.items():
            if not any(name in other._saved_env for other in _RUNNING):
                _BEFORE_STACKS[name] = os.environ.get(name)
            self._saved_env[name] = value
            _put_env(name, value)

    # -- clients and names ---------------------------------------------------------------------

    def client(self, service: str, region: str = REGION, account: str = ACCOUNT_ID) -> Any:
        """A boto3 client on the local AWS: the stack's own account and Region unless others are given.
        Another account is reached as AWS reaches it, through an assumed role's credentials: moto keeps
        one backend per account and selects it by the credentials' account."""
        credentials = {
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        if account != ACCOUNT_ID:
            credentials = self._credentials_in(account)
        with _SESSION_LOCK:
            return _session().client(
                service,  # type: ignore[call-overload]
                region_name=region,
                endpoint_url=self.endpoint_url,
                **credentials,
            )

    def _deploying(self, service: str) -> Any:
        """The client the deployment uses for a service of the stack's own account and Region, made once
        (a client costs tens of milliseconds to make; the deployment makes some twenty calls)."""
        if service not in self._deploying_clients:
            self._deploying_clients[service] = self.client(service)
        return self._deploying_clients[service]

    def _credentials_in(self, account: str) -> dict[str, str]:
        """Credentials in another account: a session of the role an organisation's administrators use
        there (AWS Organizations creates it in each account it creates), kept for the stack's life."""
        if account not in self._accounts:
            assumed = self.client("sts").assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/{ADMINISTRATOR_ROLE}", RoleSessionName="vtriage-local"
            )["Credentials"]
            self._accounts[account] = {
                "aws_access_key_id": assumed["AccessKeyId"],
                "aws_secret_access_key": assumed["SecretAccessKey"],
                "aws_session_token": assumed["SessionToken"],
            }
        return self._accounts[account]

    def ref(self, logical_id: str) -> str:
        """What `!Ref logical_id` gives locally."""
        if logical_id in self.physical:
            return self.physical[logical_id]["Ref"]
        if logical_id in self.parameters:
            return self.parameters[logical_id]
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::StackName": "vtriage-local",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        raise LocalSetupError(f"template.yaml refers to {logical_id}, which the local stack does not create")

    def get_att(self, logical_id: str, attribute: str) -> str:
        """What `!GetAtt logical_id.attribute` gives locally."""
        try:
            return self.physical[logical_id][attribute]
        except KeyError:
            raise LocalSetupError(f"no local value for !GetAtt {logical_id}.{attribute}") from None

    def resolve(self, value: Any) -> Any:
        """Evaluate the intrinsic functions the template uses, with local names."""
        return Intrinsics(self.template, self.parameters, self.ref, self.get_att).resolve(value)

    def function_environment(self) -> dict[str, str | None]:
        """The union of every function's environment, resolved. Functions share this process, so two
        functions giving one variable different values is a setup error."""
        merged: dict[str, str] = {}
        for spec in self.functions.values():
            for name, raw in spec.environment.items():
                value = str(self.resolve(raw))
                if name in merged and merged[name] != value:
                    raise LocalSetupError(
                        f"{name} is {merged[name]!r} in one function and {value!r} in {spec.logical_id}: "
                        "the local runner runs every function in one process and needs one value"
                    )
                merged[name] = value
        return dict(merged)

    # -- deployment ---------------------------------------------------------------------------------

    def _deploy(self) -> None:
        # moto's Lambda checks that a function's role exists; SAM makes one per function in the cloud.
        self._deploying("iam").create_role(
            RoleName=_DUMMY_ROLE.rsplit("/", 1)[-1],
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                        }
                    ],
                }
            ),
        )
        resources = self.template["Resources"]
        order = [
            "AWS::SQS::Queue",
            "AWS::DynamoDB::Table",
            "AWS::SNS::Topic",
            "AWS::SecretsManager::Secret",
            "AWS::Serverless::Function",
            "AWS::Serverless::StateMachine",
            # Last: a policy document may name any resource above.
            "AWS::IAM::ManagedPolicy",
        ]
        for resource_type in order:
            # A queue that redrives to another needs that one first.
            ordered = sorted(
                (name for name, spec in resources.items() if spec.get("Type") == resource_type),
                key=lambda name: "RedrivePolicy" in resources[name].get("Properties", {}),
            )
            for logical_id in ordered:
                self._create(resource_type, logical_id, resources[logical_id].get("Properties", {}))
        self._create_vt_secret()

    def _create(self, resource_type: str, logical_id: str, properties: dict[str, Any]) -> None:
        creators = {
            "AWS::SQS::Queue": self._create_queue,
            "AWS::DynamoDB::Table": self._create_table,
            "AWS::SNS::Topic": self._create_topic,
            "AWS::SecretsManager::Secret": self._create_secret,
            "AWS::Serverless::Function": self._create_function,
            "AWS::Serverless::StateMachine": self._create_state_machine,
            "AWS::IAM::ManagedPolicy": self._create_managed_policy,
        }
        creators[resource_type](logical_id, properties)

    def member_accounts(self) -> list[str]:
        """The member accounts the stack's MemberAccountIds lists, each once, in order, as the functions'
        settings read them; the deployment's own account is no member (`organisation_notes`)."""
        listed = self.parameters.get("MemberAccountIds", "")
        accounts = dict.fromkeys(account.strip() for account in listed.split(","))
        return [account for account in accounts if account and account != ACCOUNT_ID]

    def organisation_notes(self) -> list[str]:
        """What a person should know of the organisation parameters, said once when the stack is built:
        MemberAccountIds listing the deployment's own account, which stays the own account."""
        listed = {account.strip() for account in self.parameters.get("MemberAccountIds", "").split(",")}
        if ACCOUNT_ID not in listed:
            return []
        return [
            f"MemberAccountIds lists this deployment's own account {ACCOUNT_ID}: it is acted in as the own "
            "account, with the functions' own credentials (no member role is assumed there)"
        ]

    def deploy_member_roles(self) -> dict[str, str]:
        """Deploy member-role.yaml in every member account MemberAccountIds lists, as the StackSet does
        in the cloud: the role each one's findings are acted on through. Its ARN by account."""
        return {account: self._deploy_member_role(account) for account in self.member_accounts()}

    def _deploy_member_role(self, account: str) -> str:
        """Deploy member-role.yaml in a member account, as the StackSet does in the cloud, with the
        deployment's values: the remediate function's role as the one principal it trusts, the external id,
        role name and Regions the remediate function uses."""
        template = load_template(MEMBER_ROLE_TEMPLATE_PATH)
        declared = template.get("Parameters", {})
        given = {
            "RemediateRoleArn": str(
                self.resolve(self.template["Outputs"]["RemediateFunctionRoleArn"]["Value"])
            ),
            "ExternalId": self.parameters.get("MemberExternalId", ""),
            "RoleName": self.parameters.get("MemberRoleName", ""),
            "ActRegions": self.parameters.get("ActRegions", ""),
            "NaclBlocking": "true"
            if condition_holds(self.template, "HasNaclRules", self.parameters)
            else "false",
        }
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise LocalSetupError(f"member-role.yaml has no parameter {', '.join(unknown)}")
        problems = parameter_problems(template, given)
        if problems:
            raise LocalSetupError(f"member-role.yaml refuses {'; '.join(problems)}")
        parameters = {name: str(spec.get("Default", "")) for name, spec in declared.items()} | given
        physical: dict[str, dict[str, str]] = {}
        pseudo = {
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::StackName": f"vtriage-member-{account}",
            "AWS::URLSuffix": "amazonaws.com",
        }

        def ref(name: str) -> str:
            if name in physical:
                return physical[name]["Ref"]
            value = parameters.get(name, pseudo.get(name))
            if value is None:
                raise LocalSetupError(
                    f"member-role.yaml refers to {name}, which the local stack does not create"
                )
            return value

        def get_att(logical_id: str, attribute: str) -> str:
            try:
                return physical[logical_id][attribute]
            except KeyError:
                raise LocalSetupError(
                    f"no local value for !GetAtt {logical_id}.{attribute} in member-role.yaml"
                ) from None

        intrinsics = Intrinsics(template, parameters, ref, get_att)
        iam = self.client("iam", account=account)
        resources = template["Resources"]
        # Policies first: the role's own policy names the containment policy.
        creators = {"AWS::IAM::ManagedPolicy": _create_member_policy, "AWS::IAM::Role": _create_member_role}
        unsupported = sorted({str(spec.get("Type")) for spec in resources.values()} - set(creators))
        if unsupported:
            raise LocalSetupError(
                f"member-role.yaml has resources of type {', '.join(unsupported)}, not created locally"
            )
        for resource_type, create in creators.items():
            for logical_id, spec in resources.items():
                if spec.get("Type") == resource_type:
                    physical[logical_id] = create(
                        iam, logical_id, intrinsics.resolve(spec.get("Properties", {}))
                    )
        return str(intrinsics.resolve(template["Outputs"]["MemberRoleArn"]["Value"]))

    def _create_queue(self, logical_id: str, properties: dict[str, Any]) -> None:
        attributes: dict[str, str] = {}
        for name in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "ReceiveMessageWaitTimeSeconds",
        ):
            if name in properties:
                attributes[name] = str(self.resolve(properties[name]))
        if "RedrivePolicy" in properties:
            attributes["RedrivePolicy"] = json.dumps(self.resolve(properties["RedrivePolicy"]))
        sqs = self._deploying("sqs")
        url = sqs.create_queue(QueueName=logical_id, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.physical[logical_id] = {"Ref": url, "Arn": arn, "QueueName": logical_id, "QueueUrl": url}

    def _create_table(self, logical_id: str, properties: dict[str, Any]) -> None:
        dynamodb = self._deploying("dynamodb")
        arguments: dict[str, Any] = {
            "TableName": logical_id,
            "KeySchema": properties["KeySchema"],
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if properties.get("GlobalSecondaryIndexes"):
            arguments["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
        arn = dynamodb.create_table(**arguments)["TableDescription"]["TableArn"]
        ttl = properties.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(
                TableName=logical_id,
                TimeToLiveSpecification={
                    "AttributeName": ttl["AttributeName"],
                    "Enabled": bool(ttl["Enabled"]),
                },
            )
        self.physical[logical_id] = {"Ref": logical_id, "Arn": arn}

    def _create_topic(self, logical_id: str, properties: dict[str, Any]) -> None:
        arn = self._deploying("sns").create_topic(Name=logical_id)["TopicArn"]
        self.physical[logical_id] = {"Ref": arn, "TopicArn": arn, "TopicName": logical_id}

    def _create_function(self, logical_id: str, properties: dict[str, Any]) -> None:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("app.py", "# the local runner dispatches to the real handler\n")
        spec = self.functions[logical_id]
        arn = self._deploying("lambda").create_function(
            FunctionName=logical_id,
            Runtime=spec.runtime,
            Role=_DUMMY_ROLE,
            Handler=f"{spec.handler_module}.{spec.handler_function}",
            Code={"ZipFile": archive.getvalue()},
            Timeout=spec.timeout,
        )["FunctionArn"]
        self.physical[logical_id] = {"Ref": logical_id, "Arn": arn}
        # SAM makes each function a role, <function>Role; locally every function runs as the one role.
        self.physical[f"{logical_id}Role"] = {"Ref": _DUMMY_ROLE.rsplit("/", 1)[-1], "Arn": _DUMMY_ROLE}
        if "FunctionUrlConfig" in properties:
            # SAM names a function's URL resource <function>Url. moto answers nothing on it: locally the
            # URL only appears in links, and tests call the handler with the request a URL would send.
            url = self._deploying("lambda").create_function_url_config(
                FunctionName=logical_id, AuthType=str(properties["FunctionUrlConfig"].get("AuthType", "NONE"))
            )["FunctionUrl"]
            self.physical[f"{logical_id}Url"] = {"FunctionUrl": url}

    def _create_state_machine(self, logical_id: str, properties: dict[str, Any]) -> None:
        definition = (self.template_path.parent / str(properties["DefinitionUri"])).read_text(
            encoding="utf-8"
        )
        for key, value in properties.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + key + "}", str(self.resolve(value)))
        arn = self._deploying("stepfunctions").create_state_machine(
            name=logical_id, definition=definition, roleArn=_DUMMY_ROLE
        )["stateMachineArn"]
        self.physical[logical_id] = {"Ref": arn, "Arn": arn, "Name": logical_id}

    def _create_managed_policy(self, logical_id: str, properties: dict[str, Any]) -> None:
        document = json.dumps(self.resolve(properties["PolicyDocument"]))
        name = str(self.resolve(properties.get("ManagedPolicyName", logical_id)))
        arn = self._deploying("iam").create_policy(PolicyName=name, PolicyDocument=document)["Policy"]["Arn"]
        self.physical[logical_id] = {"Ref": arn, "PolicyArn": arn}

    def _create_secret(self, logical_id: str, properties: dict[str, Any]) -> None:
        name = str(self.resolve(properties.get("Name", logical_id)))
        if "GenerateSecretString" in properties:
            value = secrets.token_urlsafe(48)
        else:
            value = str(self.resolve(properties.get("SecretString", "")))
        arn = self._deploying("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        self.physical[logical_id] = {"Ref": arn, "Id": arn}

    def _create_vt_secret(self) -> None:
        name = self.parameters.get("VirusTotalApiKeySecretName")
        if name:
            self._deploying("secretsmanager").create_secret(Name=name, SecretString=self.vt_api_key)

    # -- Lambda dispatch ------------------------------------------------------------------------------

    def handler(self, logical_id: str) -> Any:
        """The real handler function the template names for this function."""
        spec = self.functions[logical_id]
        with self._import_lock:
            module = self._modules.get(logical_id)
            if module is None:
                path = spec.code_dir / f"{spec.handler_module.replace('.', '/')}.py"
                module_spec = importlib.util.spec_from_file_location(f"vtriage_function_{logical_id}", path)
                if module_spec is None or module_spec.loader is None:
                    raise LocalSetupError(f"cannot load {path} for {logical_id}")
                module = importlib.util.module_from_spec(module_spec)
                module_spec.loader.exec_module(module)
                self._modules[logical_id] = module
        return getattr(module, spec.handler_function)

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Call the function's real handler in this process, as Lambda would."""
        spec = self.functions[logical_id]
        return self.handler(logical_id)(event, LocalContext(function_name=logical_id, timeout_s=spec.timeout))

    def function_for(self, name_or_arn: str) -> str:
        """The logical id of the function a name or ARN designates."""
        name = name_or_arn.split(":function:", 1)[-1].split(":", 1)[0]
        if name not in self.functions:
            raise LocalSetupError(f"no function {name!r} in template.yaml")
        return name


def _create_member_policy(iam: Any, logical_id: str, properties: dict[str, Any]) -> dict[str, str]:
    name = str(properties.get("ManagedPolicyName", logical_id))
    arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(properties["PolicyDocument"]))[
        "Policy"
    ]["Arn"]
    return {"Ref": arn, "PolicyArn": arn}


def _create_member_role(iam: Any, logical_id: str, properties: dict[str, Any]) -> dict[str, str]:
    name = str(properties.get("RoleName", logical_id))
    role = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(properties["AssumeRolePolicyDocument"]),
        Description=str(properties.get("Description", "")),
        MaxSessionDuration=int(properties.get("MaxSessionDuration", 3600)),
    )["Role"]
    for policy in properties.get("Policies", []):
        iam.put_role_policy(
            RoleName=name,
            PolicyName=policy["PolicyName"],
            PolicyDocument=json.dumps(policy["PolicyDocument"]),
        )
    for arn in properties.get("ManagedPolicyArns", []):
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    return {"Ref": name, "Arn": role["Arn"], "RoleId": role["RoleId"]}


def _make_dispatcher(aws: LocalAws) -> Any:
    def invoke(  # noqa: PLR0917 (the signature of the moto method it replaces)
        backend: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        event = json.loads(body) if body else {}
        try:
            result = aws.invoke(aws.function_for(function_name), event)
        except Exception as error:  # a Lambda function error: reported to the caller, as Lambda does
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorType": type(error).__name__,
                    "errorMessage": str(error),
                    "stackTrace": traceback.format_exception(error)[-5:],
                }
            ).encode()
        return json.dumps(result).encode()

    return invoke


@contextmanager
def local_aws(**kwargs: Any) -> Iterator[LocalAws]:
    """A started LocalAws, stopped on exit."""
    aws = LocalAws(**kwargs)
    aws.start()
    try:
        yield aws
    finally:
        aws.stop()


__all__ = ["ACCOUNT_ID", "PROJECT_ROOT", "REGION", "LocalAws", "LocalSetupError", "local_aws"]
