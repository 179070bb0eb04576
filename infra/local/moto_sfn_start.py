"""moto's Step Functions interpreter passes a `states:startExecution` task's parameters to boto3
as the state wrote them (`StateMachineArn`, `Name`, `Input`), and boto3 knows only the API's own
casing (`stateMachineArn`...), so every such task fails with States.Runtime. Step Functions maps
them onto the StartExecution request; this does the same, with the model boto3 uses, and leaves
the rest to moto (its start_execution refuses a name in use, as AWS does: ExecutionAlreadyExists).
The close-billing-periods workflow continues as new through this task (infra/constructs/cycle_close.py).
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _stepfunctions_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("stepfunctions")


def install() -> None:
    """Idempotent."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )

    original = StateTaskServiceSfn._normalise_parameters
    if getattr(original, "_api_cased", False):
        return

    def normalise(self, parameters, boto_service_name=None, service_action_name=None):  # noqa: ANN001 - moto's
        original(self, parameters, boto_service_name, service_action_name)
        if service_action_name is None:
            action = self.resource.api_action
            operation = _stepfunctions_model().operation_model(action[:1].upper() + action[1:])
            self._to_boto_request(parameters, operation.input_shape)

    normalise._api_cased = True
    StateTaskServiceSfn._normalise_parameters = normalise
