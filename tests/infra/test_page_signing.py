"""The page signing key: a secret the stack generates, read by the API function alone, on that one
secret; its ARN reaches the function as PAGE_SIGNING_SECRET_ARN."""

from __future__ import annotations

API = "functions.api.handler.handler"


def test_the_stack_generates_a_64_character_key(synth):
    _, secret = synth.one("AWS::SecretsManager::Secret", "PageSigning")
    generate = secret["Properties"]["GenerateSecretString"]
    assert generate["PasswordLength"] == 64 and generate["ExcludePunctuation"] is True
    assert "SecretString" not in secret["Properties"]  # never a value in the template


def test_only_the_api_function_reads_it_with_get_secret_value_on_it_alone(synth):
    secret_id, _ = synth.one("AWS::SecretsManager::Secret", "PageSigning")
    readers = {}
    for role in synth.of_type("AWS::IAM::Role"):
        for statement in synth.statements_of(role):
            if {"Ref": secret_id} in (statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]):
                readers.setdefault(role, []).append(statement["Action"])
    assert readers == {synth.role_of(API): [["secretsmanager:GetSecretValue"]]}
    _, function = synth.function(API)
    assert function["Properties"]["Environment"]["Variables"]["PAGE_SIGNING_SECRET_ARN"] == {"Ref": secret_id}
