"""The key that signs public page links (hosted invoice pages, invoice PDFs, embeddable dashboards).

A secret the stack generates in Secrets Manager (64 random letters and digits); only the API
function reads it, with GetSecretValue on this one secret (tally.adapters.secrets.PageSigningKeys).
Rotate it with `aws secretsmanager put-secret-value --secret-id <PageSigningSecretArn>
--secret-string <new 64 characters>`: the new value (AWSCURRENT) signs from the next cache refresh
(5 minutes), and links signed with the one before (AWSPREVIOUS) keep working until they expire.
"""

from __future__ import annotations

from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constructs.tally_function import TallyFunction
from infra.nag import acknowledge

KEY_CHARACTERS = 64  # ~380 bits from 62 symbols; HMAC-SHA256 needs 256


class PageSigning(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Key",
            description="Signs Tally's public page links (hosted invoices, invoice PDFs, dashboards)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=KEY_CHARACTERS, exclude_punctuation=True, include_space=False,
            ),
        )
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "Rotated by an operator with put-secret-value (see infra/constructs/page_signing.py): "
            "verification accepts the current and the previous version, so a rotation needs no "
            "rotation function, and links signed before it stay valid until they expire.",
        )

    def grant_signing(self, function: TallyFunction) -> None:
        """`function` signs and verifies page links: it reads this secret, and nothing else new."""
        function.allow(["secretsmanager:GetSecretValue"], [self.secret.secret_arn])
        function.function.add_environment("PAGE_SIGNING_SECRET_ARN", self.secret.secret_arn)
