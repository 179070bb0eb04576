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

4. DynamoDB requests go unsigned: moto checks no signature (its IAM check is off), and SigV4
   signing was about a fifth of a request's cost here. Only DynamoDB: other services' moto backends
   tell accounts apart by the signing key (an assumed role's queue is in another account), and
   presigned URLs keep their signatures, and so do requests to the moto server (an endpoint URL:
   it reads the region from the signature). Installed only where every AWS call goes to moto: the
   local stack and the tests.
"""

from __future__ import annotations

import functools
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
