"""Safe model specs (DESIGN.md §3): a River expression, parsed with ``ast`` and built by walking the tree.

A spec is written exactly as a River user writes a model, e.g.
``preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))``.
Nothing is ever passed to ``eval``/``exec``. What is allowed:

- a dotted name that starts at one of River's model-building modules (:data:`MODULES`, optionally prefixed with
  ``river.``) and follows only names those modules export in ``__all__``, ending at a class derived from
  ``river.base.Base`` (estimators, optimizers, losses, schedulers, metrics, statistics, distributions);
- calls of such classes with positional and keyword arguments that are literals (numbers, strings, booleans,
  ``None``, and lists/tuples/dicts/sets of those), nested allowed calls or bare allowed classes;
- ``a | b`` (pipeline) and ``a + b`` (union), as River defines them; unary minus on numbers.

Everything else (names outside River, private attributes, functions, lambdas, comprehensions, f-strings, ``*args``,
``**kwargs``, subscripts, other operators) is refused with a :class:`SpecError` quoting the offending part.
Modules that read files or the network (``datasets``, ``stream``) are not reachable.
"""

from __future__ import annotations

import ast
import importlib
import operator
from types import ModuleType
from typing import Any

from river import base

from delta.errors import SpecError

__all__ = ["MAX_SPEC_LENGTH", "MODULES", "build"]

MODULES = frozenset({
    "active", "anomaly", "bandit", "cluster", "compose", "covariance", "drift", "dummy", "ensemble", "facto",
    "feature_extraction", "feature_selection", "forest", "imblearn", "linear_model", "metrics", "misc",
    "model_selection", "multiclass", "multioutput", "naive_bayes", "neighbors", "optim", "preprocessing", "proba",
    "reco", "rules", "sketch", "stats", "time_series", "tree",
})
MAX_SPEC_LENGTH = 10_000

_BINOPS = {ast.BitOr: operator.or_, ast.Add: operator.add}


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: ast.AST, why: str) -> SpecError:
        part = ast.get_source_segment(self.source, node) or ast.dump(node)
        return SpecError(f"model spec refused at `{part}`: {why}")

    def dotted(self, node: ast.expr) -> list[str]:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            raise self.fail(node, "only dotted names of River classes can be referenced")
        parts.append(node.id)
        parts.reverse()
        if parts[0] == "river" and len(parts) > 1:
            parts = parts[1:]
        return parts

    def resolve(self, node: ast.expr) -> type:
        parts = self.dotted(node)
        if parts[0] not in MODULES:
            raise self.fail(node, f"`{parts[0]}` is not a River module; use one of: {', '.join(sorted(MODULES))}")
        obj: Any = importlib.import_module(f"river.{parts[0]}")
        for name in parts[1:]:
            if not isinstance(obj, ModuleType):
                raise self.fail(node, f"attribute access on `{name}` is not allowed; name a class directly")
            if name.startswith("_") or name not in getattr(obj, "__all__", ()):
                raise self.fail(node, f"`{name}` is not a public name of `{obj.__name__}`")
            obj = getattr(obj, name)
        if not (isinstance(obj, type) and issubclass(obj, base.Base)):
            raise self.fail(node, "must name a River class (estimator, optimizer, loss, metric, ...)")
        return obj

    def value(self, node: ast.expr) -> Any:
        match node:
            case ast.Constant(value=v) if v is None or isinstance(v, bool | int | float | str):
                return v
            case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=v)) if isinstance(v, int | float) and not (
                isinstance(v, bool)
            ):
                return -v
            case ast.List(elts=elts):
                return [self.value(e) for e in elts]
            case ast.Tuple(elts=elts):
                return tuple(self.value(e) for e in elts)
            case ast.Set(elts=elts):
                return {self.value(e) for e in elts}
            case ast.Dict(keys=keys, values=values):
                if any(k is None for k in keys):
                    raise self.fail(node, "`**` unpacking is not allowed")
                return {self.value(k): self.value(v) for k, v in zip(keys, values, strict=True)}  # type: ignore[arg-type]
            case ast.Call() | ast.BinOp():
                return self.model(node)
            case ast.Attribute() | ast.Name():
                return self.resolve(node)
        raise self.fail(node, f"{type(node).__name__} is not allowed; use literals and River calls only")

    def model(self, node: ast.expr) -> Any:
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.fail(node, "only `|` (pipeline) and `+` (union) combine models")
            left, right = self.model(node.left), self.model(node.right)
            try:
                return op(left, right)
            except Exception as exc:  # noqa: BLE001 - River raises many kinds; all mean "refused"
                raise self.fail(node, f"River cannot combine these: {exc}") from None
        if not isinstance(node, ast.Call):
            raise self.fail(node, "expected a call of a River class, e.g. `linear_model.LogisticRegression()`")
        cls = self.resolve(node.func)
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.fail(a, "`*` unpacking is not allowed")
            args.append(self.value(a))
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail(kw, "`**` unpacking is not allowed")
            kwargs[kw.arg] = self.value(kw.value)
        try:
            return cls(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - River raises many kinds; all mean "refused"
            raise self.fail(node, f"{cls.__name__} rejected its arguments: {exc}") from None


def build(spec: str) -> Any:
    """Build the River object a spec describes, or raise :class:`SpecError` naming the part that is refused."""
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError("model spec is empty; write a River expression such as `linear_model.LogisticRegression()`")
    if len(spec) > MAX_SPEC_LENGTH:
        raise SpecError(f"model spec is {len(spec)} characters, over the limit of {MAX_SPEC_LENGTH}")
    source = spec.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"model spec is not a valid expression: {exc.msg} at column {exc.offset}") from None
    obj = _Builder(source).model(tree.body)
    if not isinstance(obj, base.Estimator):
        raise SpecError(f"model spec `{source}` builds a {type(obj).__name__}, which is not a River estimator")
    return obj
