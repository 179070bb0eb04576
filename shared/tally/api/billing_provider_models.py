"""Request bodies of the billing provider routes (metronome-sdk 4.x: types/v1/settings/
billing_provider_*_params.py, types/v1/customer_*_billing_configurations_params.py,
types/v1/customers/billing_config_create_params.py). Values are checked by
services/billing_providers.py, which names the field of each refusal."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import ConfigDict, Field

from tally.api.models import MAX_ID_LENGTH, Request

MAX_CONFIGURATIONS = 100  # entries of one setCustomerBillingProviderConfigurations call


class BillingProviderSetUp(Request):
    billing_provider: str = Field(max_length=64)
    configuration: dict[str, Any]
    delivery_method: str = Field(max_length=64)


class AvalaraCredentialsUpsert(Request):
    avalara_environment: Literal["PRODUCTION", "SANDBOX"]
    avalara_username: str = Field(min_length=1, max_length=255)
    avalara_password: str = Field(min_length=1, max_length=255)
    delivery_method_ids: list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]] = Field(
        min_length=1, max_length=MAX_CONFIGURATIONS)
    commit_transactions: bool = False


class BillingProviderList(Request):
    next_page: Optional[str] = Field(default=None, max_length=1024)


class CustomerBillingConfiguration(Request):
    billing_provider: str = Field(max_length=64)
    customer_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    configuration: Optional[dict[str, Any]] = None
    delivery_method: Optional[str] = Field(default=None, max_length=64)
    delivery_method_id: Optional[str] = Field(default=None, max_length=MAX_ID_LENGTH)
    tax_provider: Optional[str] = Field(default=None, max_length=64)


class CustomerBillingConfigurationsSet(Request):
    data: list[CustomerBillingConfiguration] = Field(min_length=1, max_length=MAX_CONFIGURATIONS)


class CustomerBillingConfigurationsGet(Request):
    customer_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    include_archived: bool = False


class CustomerBillingConfigurationsArchive(Request):
    customer_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    customer_billing_provider_configuration_ids: list[str] = Field(min_length=1, max_length=MAX_CONFIGURATIONS)


class BillingConfigCreate(Request):
    """POST /v1/customers/{customer_id}/billing-config/{billing_provider_type}: Stripe, and AWS
    Marketplace (its aws_* fields; billing_provider_customer_id is the AWS customer unless
    aws_customer_account_id is given). Azure's fields are refused: it is not delivered."""

    billing_provider_customer_id: str = Field(min_length=1, max_length=255)
    stripe_collection_method: Optional[str] = Field(default=None, max_length=64)
    aws_customer_account_id: Optional[str] = Field(default=None, max_length=255)
    aws_customer_id: Optional[str] = Field(default=None, max_length=255)
    aws_product_code: Optional[str] = Field(default=None, max_length=255)
    aws_region: Optional[str] = Field(default=None, max_length=64)
    aws_is_subscription_product: Optional[bool] = None


# The SDK's create lists five providers and its edit all nine; a provider Tally does not deliver
# is refused as having no active configuration.
ContractBillingProvider = Literal["aws_marketplace", "stripe", "netsuite", "custom", "azure_marketplace",
                                  "quickbooks_online", "workday", "gcp_marketplace", "metronome"]
DeliveryMethod = Literal["direct_to_billing_provider", "aws_sqs", "tackle", "aws_sns"]


class ContractBillingProviderConfigurationIn(Request):
    """A contract's billing provider configuration (create's billing_provider_configuration, an
    edit's add_billing_provider_configuration_update.billing_provider_configuration): by id, or by
    provider and delivery method (services/contract_billing_providers.py)."""

    model_config = ConfigDict(extra="forbid")

    billing_provider: Optional[ContractBillingProvider] = None
    delivery_method: Optional[DeliveryMethod] = None
    billing_provider_configuration_id: Optional[str] = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)

    def to_spec(self) -> dict:
        return self.model_dump(exclude_none=True)


class BillingProviderScheduleIn(Request):
    model_config = ConfigDict(extra="forbid")

    effective_at: Literal["START_OF_CURRENT_PERIOD", "START_OF_NEXT_PERIOD"]


class BillingProviderConfigurationUpdateIn(Request):
    """v2 edit's add_billing_provider_configuration_update."""

    model_config = ConfigDict(extra="forbid")

    billing_provider_configuration: ContractBillingProviderConfigurationIn
    schedule: BillingProviderScheduleIn

    def to_change(self) -> dict:
        return {"billing_provider_configuration": self.billing_provider_configuration.to_spec(),
                "schedule": {"effective_at": self.schedule.effective_at}}
