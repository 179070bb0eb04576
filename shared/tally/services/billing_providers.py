"""Where customers are charged: account-level billing provider settings (delivery methods) and
each customer's billing provider configurations, with metronome-sdk 4.x semantics.

- `set_up` (POST /v1/setUpBillingProvider) stores a delivery method. For Stripe delivered
  directly, `configuration.stripe_secret_key` goes to the vault (Secrets Manager) before the
  document is written, so a document never names a missing secret; the document keeps only the
  secret's name and a masked hint, which is all a read route shows.
- Customer configurations name a delivery method by id, or by `delivery_method` (the account's
  method of that provider and kind). A customer may have several active configurations of a
  provider (say two Stripe customers), never the same one twice; its oldest active one is its
  default, which invoices go to unless their contract names another
  (services/contract_billing_providers.py).
- The older /v1/customers/{id}/billing-config/{type} routes are another view of the same
  customer configurations (`billing_provider_customer_id` is `stripe_customer_id` for Stripe).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Protocol

from tally.billing.aws_delivery import AWS_MARKETPLACE, AWS_SNS, AWS_SQS
from tally.billing.aws_delivery import customer_settings as aws_customer_settings
from tally.billing.aws_delivery import method_settings as aws_method_settings
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.invoice_delivery import DIRECT, STRIPE
from tally.billing.time import format_rfc3339

ACCOUNT = "_account"  # the owner of account-level documents (adapters/dynamo/billing_providers.py)
PROVIDERS = ("aws_marketplace", "stripe", "netsuite", "custom", "azure_marketplace", "quickbooks_online", "workday",
             "gcp_marketplace", "metronome")
DELIVERY_METHODS = ("direct_to_billing_provider", "aws_sqs", "tackle", "aws_sns")
COLLECTION_METHODS = ("charge_automatically", "send_invoice")
TAX_PROVIDERS = ("anrok", "avalara", "stripe")
SECRET_FIELD = "stripe_secret_key"
MAX_SETTING_CHARS = 255
# The older billing-config route's AWS Marketplace fields (metronome-sdk billing_config_create_params)
AWS_BILLING_CONFIG_FIELDS = ("aws_customer_id", "aws_customer_account_id", "aws_product_code", "aws_region",
                             "aws_is_subscription_product")


class Documents(Protocol):
    def create(self, document: dict, uniqueness_key: str | None = None) -> None: ...
    def get(self, document_id: str) -> dict | None: ...
    def replace(self, document: dict) -> None: ...
    def list_for_customer(self, customer_id: str) -> list[dict]: ...


class Vault(Protocol):
    def put(self, name: str, value: str) -> None: ...
    def get(self, name: str) -> str: ...


class CustomerLookup(Protocol):
    def get(self, customer_id: str): ...


@dataclass(frozen=True, slots=True)
class StripeTarget:
    """What delivering an invoice to Stripe needs: the customer, how it pays, and the key's name."""

    configuration_id: str
    stripe_customer_id: str
    collection_method: str
    secret_name: str


def mask(secret: str) -> str:
    """sk_test_****wxyz: the kind of key and its last four characters, as Stripe's dashboard shows."""
    prefix = "_".join(secret.split("_")[:2]) + "_" if secret.count("_") >= 2 else ""
    return f"{prefix}****{secret[-4:]}"


def _text(value, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "must be a non-empty string")
    if len(value) > MAX_SETTING_CHARS:
        raise InvalidInput(field, f"must be at most {MAX_SETTING_CHARS} characters")
    return value


def _stripe_customer_settings(configuration: dict, field: str) -> dict:
    """A Stripe customer configuration: stripe_customer_id (required), stripe_collection_method."""
    unknown = sorted(set(configuration) - {"stripe_customer_id", "stripe_collection_method"})
    if unknown:
        raise InvalidInput(f"{field}.{unknown[0]}", "is not a Stripe customer setting "
                           "(stripe_customer_id, stripe_collection_method)")
    customer = _text(configuration.get("stripe_customer_id"), f"{field}.stripe_customer_id")
    method = configuration.get("stripe_collection_method", "charge_automatically")
    if method not in COLLECTION_METHODS:
        raise InvalidInput(f"{field}.stripe_collection_method", f"must be one of {', '.join(COLLECTION_METHODS)}")
    return {"stripe_customer_id": customer, "stripe_collection_method": method}


class BillingProviderService:
    def __init__(self, methods: Documents, configs: Documents, vault: Vault, customers: CustomerLookup,
                 secret_prefix: Callable[[], str], clock: Callable[[], datetime]) -> None:
        self._methods = methods
        self._configs = configs
        self._vault = vault
        self._customers = customers
        self._secret_prefix = secret_prefix  # read when first needed
        self._clock = clock

    # -- account level -----------------------------------------------------------------------------
    def set_up(self, billing_provider: str, delivery_method: str, configuration: dict) -> str:
        if billing_provider not in PROVIDERS:
            raise InvalidInput("billing_provider", f"must be one of {', '.join(PROVIDERS)}")
        if delivery_method not in DELIVERY_METHODS:
            raise InvalidInput("delivery_method", f"must be one of {', '.join(DELIVERY_METHODS)}")
        if not isinstance(configuration, dict):
            raise InvalidInput("configuration", "must be an object")
        method_id = str(uuid.uuid4())
        settings = dict(configuration)
        document = {"id": method_id, "customer_id": ACCOUNT, "created_at": format_rfc3339(self._clock()),
                    "billing_provider": billing_provider, "delivery_method": delivery_method}
        if billing_provider == STRIPE and delivery_method == DIRECT:
            unknown = sorted(set(settings) - {SECRET_FIELD})
            if unknown:
                raise InvalidInput(f"configuration.{unknown[0]}", f"is not a Stripe setting ({SECRET_FIELD})")
            secret = _text(settings.pop(SECRET_FIELD, None), f"configuration.{SECRET_FIELD}")
            if not secret.startswith(("sk_", "rk_")) or len(secret) < 12:
                raise InvalidInput(f"configuration.{SECRET_FIELD}", "must be a Stripe secret or restricted key (sk_..., rk_...)")
            name = f"{self._secret_prefix()}/{method_id}"
            self._vault.put(name, secret)  # first: the document never names a missing secret
            document |= {"secret_name": name, "secret_hint": mask(secret)}
        elif billing_provider == AWS_MARKETPLACE or delivery_method in (AWS_SNS, AWS_SQS):
            settings = aws_method_settings(billing_provider, delivery_method, settings)
        document["configuration"] = settings
        self._methods.create(document)
        return method_id

    def upsert_avalara_credentials(self, environment: str, username: str, password: str,
                                   delivery_method_ids: list[str], commit_transactions: bool) -> None:
        """POST /v1/upsertAvalaraCredentials: the Avalara account of these delivery methods.

        Every id is checked before anything is written. The credentials go to the vault first (one
        secret per method, a new version on each upsert), so a method never names a missing secret;
        the method keeps the environment, the username, commit_transactions and the secret's name,
        never the password. Tally holds them for the method's tax provider; it computes no tax."""
        username = _text(username, "avalara_username")
        password = _text(password, "avalara_password")
        methods = []
        for index, method_id in enumerate(dict.fromkeys(delivery_method_ids)):
            method = self._methods.get(method_id)
            if method is None or method["customer_id"] != ACCOUNT:
                raise InvalidInput(f"delivery_method_ids[{index}]",
                                   "is not a delivery method of this account (listConfiguredBillingProviders)")
            methods.append(method)
        for method in methods:
            name = f"{self._secret_prefix()}/{method['id']}/avalara"
            self._vault.put(name, json.dumps({"username": username, "password": password}))
            method["tax_credentials"] = {"provider": "avalara", "environment": environment, "username": username,
                                         "commit_transactions": commit_transactions, "secret_name": name}
            self._methods.replace(method)  # conditional on the version read: a concurrent change is a 409

    def delivery_methods(self) -> list[dict]:
        return self._methods.list_for_customer(ACCOUNT)

    def delivery_method_json(self, method: dict) -> dict:
        shown = dict(method["configuration"])
        if "secret_hint" in method:
            shown[SECRET_FIELD] = method["secret_hint"]
        tax = method.get("tax_credentials")
        if tax is not None:  # never the password; the vault holds it
            shown |= {"avalara_environment": tax["environment"], "avalara_username": tax["username"],
                      "avalara_commit_transactions": tax["commit_transactions"]}
        return {"billing_provider": method["billing_provider"], "delivery_method": method["delivery_method"],
                "delivery_method_configuration": shown, "delivery_method_id": method["id"]}

    # -- customer configurations ---------------------------------------------------------------------
    def set_customer_configurations(self, data: list[dict]) -> list[dict]:
        """Validate every entry, then write them: a refusal writes nothing."""
        methods = {m["id"]: m for m in self.delivery_methods()}
        documents: list[dict] = []
        claimed: set[tuple[str, str]] = set()
        for index, entry in enumerate(data):
            field = f"data[{index}]"
            customer_id = _text(entry.get("customer_id"), f"{field}.customer_id")
            self._customer(customer_id, f"{field}.customer_id")
            provider = entry.get("billing_provider")
            if provider not in PROVIDERS:
                raise InvalidInput(f"{field}.billing_provider", f"must be one of {', '.join(PROVIDERS)}")
            method = self._method_of(entry, provider, methods, field)
            configuration = entry.get("configuration") or {}
            if not isinstance(configuration, dict):
                raise InvalidInput(f"{field}.configuration", "must be an object")
            if provider == STRIPE:
                configuration = _stripe_customer_settings(configuration, f"{field}.configuration")
            elif provider == AWS_MARKETPLACE or method["delivery_method"] in (AWS_SNS, AWS_SQS):
                configuration = aws_customer_settings(provider, method["delivery_method"], configuration,
                                                      method.get("configuration") or {}, f"{field}.configuration")
            tax = entry.get("tax_provider")
            if tax is not None and (tax not in TAX_PROVIDERS or provider != STRIPE):
                raise InvalidInput(f"{field}.tax_provider", "must be anrok, avalara or stripe, on a stripe configuration")
            same = (customer_id, provider, method["id"], repr(sorted(configuration.items())))
            if same in claimed or any(
                    (c["delivery_method_id"], c["configuration"]) == (method["id"], configuration)
                    for c in self._actives(customer_id, provider)):
                raise InvalidInput(f"{field}.configuration",
                                   f"the customer already has this active {provider} configuration")
            claimed.add(same)
            documents.append({
                "id": str(uuid.uuid4()), "customer_id": customer_id, "created_at": format_rfc3339(self._clock()),
                "position": index,  # orders configurations made in one request (the default is the oldest)
                "billing_provider": provider, "delivery_method_id": method["id"],
                "delivery_method": method["delivery_method"], "configuration": configuration,
                "tax_provider": tax, "archived_at": None,
            })
        for document in documents:
            self._configs.create(document)
        return documents

    def _method_of(self, entry: dict, provider: str, methods: dict[str, dict], field: str) -> dict:
        method_id = entry.get("delivery_method_id")
        if method_id is not None:
            # A consistent read: the listing is an index, which may lag a method set up just before.
            method = methods.get(method_id) or self._methods.get(method_id)
            if method is not None and method["customer_id"] != ACCOUNT:
                method = None
            if method is None:
                raise InvalidInput(f"{field}.delivery_method_id", "is not a delivery method of this account (listConfiguredBillingProviders)")
            if method["billing_provider"] != provider:
                raise InvalidInput(f"{field}.delivery_method_id", f"is a {method['billing_provider']} delivery method, not {provider}")
            return method
        kind = entry.get("delivery_method")
        if kind is None:
            raise InvalidInput(f"{field}.delivery_method", "delivery_method or delivery_method_id is required")
        if kind not in DELIVERY_METHODS:
            raise InvalidInput(f"{field}.delivery_method", f"must be one of {', '.join(DELIVERY_METHODS)}")
        matching = [m for m in methods.values() if m["billing_provider"] == provider and m["delivery_method"] == kind]
        if not matching:
            raise InvalidInput(f"{field}.delivery_method",
                               f"the account has no {provider} {kind} delivery method; set one up first (setUpBillingProvider)")
        return matching[-1]  # the newest

    def customer_configurations(self, customer_id: str, include_archived: bool = False) -> list[dict]:
        self._customer(customer_id, "customer_id")
        return [c for c in self._configs.list_for_customer(customer_id) if include_archived or c["archived_at"] is None]

    def archive_customer_configurations(self, customer_id: str, ids: list[str]) -> list[str]:
        self._customer(customer_id, "customer_id")
        found = []
        for index, config_id in enumerate(ids):
            document = self._configs.get(config_id)
            if document is None or document["customer_id"] != customer_id:
                raise InvalidInput(f"customer_billing_provider_configuration_ids[{index}]", "is not a configuration of this customer")
            found.append(document)
        for document in found:
            if document["archived_at"] is None:
                self._configs.replace(document | {"archived_at": format_rfc3339(self._clock())})
        return list(ids)

    @staticmethod
    def configuration_json(document: dict) -> dict:
        return {"id": document["id"], "archived_at": document["archived_at"],
                "billing_provider": document["billing_provider"], "configuration": document["configuration"],
                "customer_id": document["customer_id"], "delivery_method": document["delivery_method"],
                "delivery_method_configuration": {}, "delivery_method_id": document["delivery_method_id"]}

    # -- the older per-customer routes -----------------------------------------------------------------
    def set_billing_config(self, customer_id: str, provider: str, body: dict) -> None:
        if provider not in (STRIPE, AWS_MARKETPLACE):
            raise InvalidInput("billing_provider_type", "only stripe and aws_marketplace are delivered by Tally so far")
        self._customer(customer_id, "customer_id")
        if self._active(customer_id, provider) is not None:  # this older route knows one per provider
            raise InvalidInput("billing_provider_type", f"the customer already has an active {provider} configuration; archive it first")
        if provider == AWS_MARKETPLACE:
            configuration = {name: body[name] for name in AWS_BILLING_CONFIG_FIELDS if body.get(name) is not None}
            if "aws_customer_account_id" not in configuration:  # billing_provider_customer_id is the AWS customer
                configuration.setdefault("aws_customer_id", body.get("billing_provider_customer_id"))
        else:
            configuration = {"stripe_customer_id": body.get("billing_provider_customer_id")}
        if body.get("stripe_collection_method") is not None:
            configuration["stripe_collection_method"] = body["stripe_collection_method"]
        try:
            self.set_customer_configurations([{"customer_id": customer_id, "billing_provider": provider,
                                               "delivery_method": DIRECT, "configuration": configuration}])
        except InvalidInput as exc:  # name the fields of this route's body
            field = {"data[0].configuration.stripe_customer_id": "billing_provider_customer_id",
                     "data[0].configuration.stripe_collection_method": "stripe_collection_method",
                     "data[0].customer_id": "customer_id",
                     **{f"data[0].configuration.{name}": name for name in AWS_BILLING_CONFIG_FIELDS},
                     }.get(exc.field, "billing_provider_type")
            raise InvalidInput(field, exc.rule) from exc

    def billing_config(self, customer_id: str, provider: str) -> dict:
        self._customer(customer_id, "customer_id")
        active = self._active(customer_id, provider)
        if active is None:
            raise NotFound(f"customer {customer_id} has no {provider} billing configuration")
        configuration = active["configuration"]
        if provider == AWS_MARKETPLACE:
            shown = {name: configuration[name] for name in AWS_BILLING_CONFIG_FIELDS if name in configuration}
            return shown | {"billing_provider_customer_id": configuration.get("aws_customer_id",
                                                                             configuration.get("aws_customer_account_id"))}
        return {"billing_provider_customer_id": configuration.get("stripe_customer_id"),
                "stripe_collection_method": configuration.get("stripe_collection_method")}

    def delete_billing_config(self, customer_id: str, provider: str) -> None:
        self._customer(customer_id, "customer_id")
        active = self._active(customer_id, provider)
        if active is not None:
            self.archive_customer_configurations(customer_id, [active["id"]])

    # -- what delivery reads ---------------------------------------------------------------------------
    def configuration_for_contract(self, customer_id: str, spec: dict, field: str) -> dict:
        """The configuration a contract names (its shown JSON): by billing_provider_configuration_id,
        or by billing_provider and delivery_method when the customer has one such active
        configuration. 400 naming the field: unknown, another customer's, archived, ambiguous."""
        self._customer(customer_id, "customer_id")
        config_id = spec.get("billing_provider_configuration_id")
        if config_id is not None:
            document = self._configs.get(config_id)
            if document is None or document.get("customer_id") != customer_id or "billing_provider" not in document:
                raise InvalidInput(f"{field}.billing_provider_configuration_id",
                                   "is not a billing provider configuration of this customer (getCustomerBillingProviderConfigurations)")
            if document["archived_at"] is not None:
                raise InvalidInput(f"{field}.billing_provider_configuration_id", f"was archived at {document['archived_at']}")
            for name in ("billing_provider", "delivery_method"):
                if spec.get(name) is not None and spec[name] != document[name]:
                    raise InvalidInput(f"{field}.{name}", f"is not the configuration's ({document[name]})")
            return self.configuration_json(document)
        provider, kind = spec.get("billing_provider"), spec.get("delivery_method")
        if provider is None or kind is None:
            raise InvalidInput(f"{field}.billing_provider_configuration_id",
                               "is required unless billing_provider and delivery_method are both given")
        matching = [c for c in self._actives(customer_id, provider) if c["delivery_method"] == kind]
        if not matching:
            raise InvalidInput(f"{field}.billing_provider", f"the customer has no active {provider} {kind} configuration")
        if len(matching) > 1:
            raise InvalidInput(f"{field}.billing_provider_configuration_id",
                               f"the customer has {len(matching)} active {provider} {kind} configurations: name one by id")
        return self.configuration_json(matching[0])

    def stripe_target(self, customer_id: str, configuration_id: str | None = None) -> StripeTarget | None:
        """The Stripe configuration delivered directly that a contract names (`configuration_id`,
        if still active), else the customer's default; None: not delivered."""
        if configuration_id is None:
            active = self._active(customer_id, STRIPE)
        else:
            active = self._configs.get(configuration_id)
            if active is None or active["customer_id"] != customer_id or active["archived_at"] is not None \
                    or active["billing_provider"] != STRIPE:
                return None
        if active is None or active["delivery_method"] != DIRECT:
            return None
        method = self._methods.get(active["delivery_method_id"])
        if method is None or "secret_name" not in method:
            return None
        configuration = active["configuration"]
        return StripeTarget(active["id"], configuration["stripe_customer_id"],
                            configuration.get("stripe_collection_method", "charge_automatically"), method["secret_name"])

    def _actives(self, customer_id: str, provider: str) -> list[dict]:
        """The customer's active configurations of the provider, oldest first."""
        active = [c for c in self._configs.list_for_customer(customer_id)
                  if c["billing_provider"] == provider and c["archived_at"] is None]
        return sorted(active, key=lambda c: (c["created_at"], c.get("position", 0), c["id"]))

    def _active(self, customer_id: str, provider: str) -> dict | None:
        """The customer's default configuration of the provider: its oldest active one."""
        active = self._actives(customer_id, provider)
        return active[0] if active else None

    def _customer(self, customer_id: str, field: str) -> None:
        try:
            found = self._customers.get(customer_id)
        except NotFound:
            found = None
        if found is None:
            raise NotFound(f"{field}: customer {customer_id} not found")
