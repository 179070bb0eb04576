"""One construct per capability; `infra.stack.TallyStack` only composes them."""
