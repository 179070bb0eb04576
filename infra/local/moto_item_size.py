"""DynamoDB refuses an UpdateItem whose result would exceed 400 KB ("Item size to update has
exceeded the maximum allowed size"). moto checks the size only when an attribute is set, not when
ADD grows a set in place: it stores the oversized item and fails every later read of it. This
patch refuses the ADD instead, before it changes anything, as DynamoDB does. Idempotent."""

from __future__ import annotations

MAX_ITEM_BYTES = 400 * 1024


def install_item_size_limit() -> None:
    from moto.dynamodb.exceptions import ItemSizeTooLarge, ProvidedKeyDoesNotExist
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.parsing.executors import AddExecutor

    original = AddExecutor.execute
    if getattr(original, "_tally_item_size", False):
        return

    def execute(self, item) -> None:
        value = self.get_action_value()
        if isinstance(value, DynamoType) and value.is_set():
            try:
                held = self.get_item_at_end_of_path(item)
            except ProvidedKeyDoesNotExist:
                held = None
            present = set(held.value) if isinstance(held, DynamoType) and held.is_set() else set()
            sub_type = value.type[0]
            growth = sum(DynamoType({sub_type: v}).size() for v in set(value.value) - present)
            if growth and item.size() + growth > MAX_ITEM_BYTES:
                raise ItemSizeTooLarge
        original(self, item)

    execute._tally_item_size = True  # type: ignore[attr-defined]
    AddExecutor.execute = execute
