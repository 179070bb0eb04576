"""Less work per moto DynamoDB request, the same answers (see DESIGN.md).

The handlers send a few dozen distinct expressions, millions of times over a suite; moto re-derives
the same things from them on each request. Each memo below is keyed by the whole input of a pure
function and hands out a result no caller changes:

1. `method_names_from_class(cls)`: moto lists a response class's methods with `inspect.getmembers`
   on every request (about 0.25 ms), to check the action is one of them. Classes do not change
   while moto runs.
2. `UpdateExpressionParser.make(expression)`: the update expression's syntax tree, parsed twice per
   UpdateItem (once for the names and values it uses, once to apply it). Neither use changes the
   tree: the apply side deep-copies it before validating (`Validator.__init__`), and the other only
   reads its clauses.
3. `ConditionExpressionParser._lex_condition_expression()`: the tokens of a condition or filter
   expression, a function of its text alone. Tokens are namedtuples whose child lists are never
   changed by the parser; each call gets a deque of its own.

A parse that fails raises each time, as before: only results are kept.

7. moto writes every answer through its generic, shape-driven serializer, which visits each
   attribute of each item with name and alias lookups (a quarter of a request's CPU in the system
   tests). An AttributeValue that is already plain JSON (S, N, BOOL, NULL, SS, NS, and M or L of
   those) is written as it is, which is what that walk produces; binary values still take it.

Two narrow what moto walks, with the same results:

5. moto's `transact_write_items` deep-copies every table it touches, once per item, as its rollback
   snapshot: a 100-item transaction on a 10,000-item table copied a million items. The snapshot is
   the items the transaction names (and the stream's length), restored as they were on failure.
6. moto's `Table.query` sorts every item of the table, then keeps those of the partition, comparing
   keys as DynamoTypes: each read of a customer's counters, alerts or contracts cost 25-100 ms on a
   table of a few thousand items. A query of the table reads only its partition; a query of an
   index starts from the items whose index hash key is equal by a plain compare. moto's own checks
   and sort still run on what is left.

4. DynamoDB requests go unsigned: moto checks no signature (its IAM check is off), and SigV4
   signing was about a fifth of a request's cost here. Only DynamoDB: other services' moto backends
   tell accounts apart by the signing key (an assumed role's queue is in another account), and
   presigned URLs keep their signatures, and so do requests to the moto server (an endpoint URL:
   it reads the region from the signature). Installed only where every AWS call goes to moto: the
   local stack and the tests.
"""

from __future__ import annotations

import functools
import threading
from collections import deque

_installed = False
MEMO_SIZE = 4096  # distinct expressions kept; the handlers use far fewer


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    import moto.core.responses as core_responses
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    core_responses.method_names_from_class = functools.lru_cache(maxsize=None)(core_responses.method_names_from_class)

    make = UpdateExpressionParser.make.__func__
    parsed = functools.lru_cache(maxsize=MEMO_SIZE)(lambda cls, expression: make(cls, expression))
    UpdateExpressionParser.make = classmethod(lambda cls, expression: parsed(cls, expression))
    UpdateExpressionParser.make_memo = parsed

    lex = ConditionExpressionParser._lex_condition_expression
    tokens: dict[str, tuple] = {}

    def lex_memo(self):
        expression = self.condition_expression
        if not isinstance(expression, str):
            return lex(self)
        known = tokens.get(expression)
        if known is None:
            known = tuple(lex(self))  # raises for a malformed expression, every time
            if len(tokens) < MEMO_SIZE:
                tokens[expression] = known
        return deque(known)

    ConditionExpressionParser._lex_condition_expression = lex_memo
    ConditionExpressionParser.lex_memo = tokens
    unsigned_dynamodb()
    _plain_attribute_values()
    _item_transaction_snapshots()
    _partition_queries()


def unsigned_dynamodb() -> None:
    from botocore.signers import RequestSigner

    sign = RequestSigner.sign

    def sign_but_dynamodb(self, operation_name, request, *args, **kwargs):
        if self._service_id.hyphenize() == "dynamodb" and not args and not kwargs and ".amazonaws.com" in request.url:
            # a plain request (not a presigned URL) to DynamoDB's own endpoint, which the in-process
            # mock answers: it checks no signature. The moto server (an endpoint URL) wants one.
            return None
        return sign(self, operation_name, request, *args, **kwargs)

    RequestSigner.sign = sign_but_dynamodb


def _item_transaction_snapshots() -> None:
    import copy
    import types

    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    def deepcopy_except_tables(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    # moto's own whole-table snapshot becomes a no-op; the wrapper below snapshots what is touched
    dynamodb_models.copy = types.SimpleNamespace(deepcopy=deepcopy_except_tables, copy=copy.copy)
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        saved: dict[tuple, object] = {}  # (table, hash, range) -> the item as it was, or None
        stream_lengths: dict[str, int] = {}
        for entry in transact_items:
            kind, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            source = op["Item"] if kind == "Put" else op.get("Key", {})
            if table.hash_key_attr not in source or (table.range_key_attr and table.range_key_attr not in source):
                continue  # moto refuses it before writing anything
            hash_key = DynamoType(source[table.hash_key_attr])
            range_key = DynamoType(source[table.range_key_attr]) if table.range_key_attr else None
            key = (table.name, hash_key, range_key)
            if key not in saved:
                current = _stored(table, hash_key, range_key)
                saved[key] = None if current is None else copy.deepcopy(current)
            if table.stream_shard is not None:
                stream_lengths.setdefault(table.name, len(table.stream_shard.items))
        try:
            return original(self, transact_items)
        except Exception:
            for (table_name, hash_key, range_key), item in saved.items():
                _restore(self.tables[table_name], hash_key, range_key, item)
            for table_name, length in stream_lengths.items():
                del self.tables[table_name].stream_shard.items[length:]
            raise

    DynamoDBBackend.transact_write_items = transact_write_items


def _stored(table, hash_key, range_key):
    if range_key is None:
        return table.items.get(hash_key)
    partition = table.items.get(hash_key)
    return None if partition is None else partition.get(range_key)


def _restore(table, hash_key, range_key, item) -> None:
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        return
    partition = table.items.get(hash_key)
    if item is not None:
        table.items[hash_key][range_key] = item  # a defaultdict(dict): the partition may be new
    elif partition is not None:
        partition.pop(range_key, None)
        if not partition:
            table.items.pop(hash_key, None)


def _partition_queries() -> None:
    from moto.dynamodb.models.table import Table

    hint = threading.local()
    original_query, original_all_items = Table.query, Table.all_items

    def query(self, hash_key, *args, **kwargs):
        # moto's signature: (hash_key, range_comparison, range_objs, limit, exclusive_start_key,
        # scan_index_forward, projection_expressions, index_name=None, ...)
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if hash_key is not None and index_name is None and self.range_key_attr:
            hint.partition = (self, None, hash_key)
        elif hash_key is not None and index_name is not None and self.range_key_attr:
            index = next((i for i in self.all_indexes() if i.name == index_name), None)
            hash_attrs = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"] if index else []
            if len(hash_attrs) == 1:
                hint.partition = (self, hash_attrs[0], hash_key)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            hint.partition = None

    def all_items(self):
        partition = getattr(hint, "partition", None)
        if partition is None or partition[0] is not self:
            return original_all_items(self)
        _, index_hash_attr, key = partition
        if index_hash_attr is None:
            # moto keeps the partition's items in `items[hash_key]`; query filters to exactly those
            return list(self.items.get(key, {}).values())
        # An index query keeps the items whose index hash key equals `key`: a cheap superset here
        # (plain type and value compare), which moto's own, slower checks then narrow.
        # moto's all_items also sorts the whole table; the index query sorts what it keeps anyway.
        return [
            item
            for partition_items in list(self.items.values())
            for item in list(partition_items.values())
            if (value := item.attrs.get(index_hash_attr)) is not None and value.type == key.type and value.value == key.value
        ]

    Table.query, Table.all_items = query, all_items


_PLAIN_TYPES = frozenset({"S", "N", "BOOL", "NULL", "SS", "NS"})


def plain_attribute_value(value) -> bool:
    """True for an AttributeValue whose JSON form is itself: no binary (B, BS) anywhere in it."""
    if type(value) is not dict or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    if kind in _PLAIN_TYPES:
        return True
    if kind == "M":
        return type(inner) is dict and all(plain_attribute_value(v) for v in inner.values())
    if kind == "L":
        return type(inner) is list and all(plain_attribute_value(v) for v in inner)
    return False


def _plain_attribute_values() -> None:
    from moto.core.serialize import JSONSerializer

    serialize = JSONSerializer._serialize

    def _serialize(self, serialized, value, shape, key):
        if shape.name == "AttributeValue" and plain_attribute_value(value):
            serialized[self.get_serialized_name(shape, key)] = value
            return
        serialize(self, serialized, value, shape, key)

    JSONSerializer._serialize = _serialize
    JSONSerializer.generic_serialize = serialize  # the walk itself, for tests that compare
