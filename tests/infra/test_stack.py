"""Stack outputs and context settings."""

from __future__ import annotations

import os

from tests.infra.conftest import referenced_ids


def test_outputs(synth):
    outputs = synth.template["Outputs"]
    assert set(outputs) == {
        "ApiUrl",
        "EventsTableName",
        "CountersTableName",
        "BillingTableName",
        "AggregatorDlqUrl",
        "CloseBillingPeriodsArn",
        "CycleCloseDlqUrl",
        "InvoicesTopicArn",
        "AlertsTopicArn",
        "AlertsDlqUrl",
        "InvoiceDeliveryQueueUrl",
        "InvoiceDeliveryDlqUrl",
        "PageSigningSecretArn",  # the ARN, never the value (tests/infra/test_page_signing.py)
        "BackfillDlqUrl",
    }
    api_id = next(iter(synth.of_type("AWS::ApiGatewayV2::Api")))
    assert api_id in referenced_ids(outputs["ApiUrl"]["Value"])
    for name, prefix in [
        ("EventsTableName", "TablesEvents"),
        ("CountersTableName", "TablesCounters"),
        ("BillingTableName", "TablesBilling"),
    ]:
        assert outputs[name]["Value"] == {"Ref": synth.one("AWS::DynamoDB::Table", prefix)[0]}
    dlq_id, _ = synth.one("AWS::SQS::Queue", "AggregatorDlq")
    assert outputs["AggregatorDlqUrl"]["Value"] == {"Ref": dlq_id}


def test_context_turns_on_deletion_protection_and_picks_the_layer_version(synth_overridden):
    # `cdk -c` passes context values as strings (tests/infra/conftest.py CONTEXT_OVERRIDES).
    resources = synth_overridden.template["Resources"].values()
    tables = [r for r in resources if r["Type"] == "AWS::DynamoDB::Table"]
    assert [t["Properties"]["DeletionProtectionEnabled"] for t in tables] == [True, True, True]
    functions = [r for r in resources if r["Type"] == "AWS::Lambda::Function"]
    layers = {f["Properties"]["Layers"][0]["Fn::Join"][1][-1] for f in functions}
    assert layers == {":017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-x86_64:27"}
    assert os.path.exists(synth_overridden.outdir / "Tally.template.json")
