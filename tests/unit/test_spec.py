from __future__ import annotations

import pytest
from river import anomaly, base, compose, ensemble, forest, linear_model, naive_bayes, optim, tree

from delta.errors import SpecError
from delta.spec import build

ACCEPTED = [
    ("preprocessing.StandardScaler() | linear_model.LogisticRegression()", compose.Pipeline),
    ("preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))", compose.Pipeline),
    ("linear_model.LinearRegression(optimizer=optim.Adam(lr=0.01), l2=0.001, intercept_lr=0.1)",
     linear_model.LinearRegression),
    ("linear_model.PAClassifier(C=0.01, mode=1)", linear_model.PAClassifier),
    ("linear_model.Perceptron()", linear_model.Perceptron),
    ("tree.HoeffdingTreeClassifier(grace_period=100, delta=1e-5, nominal_attributes=['country'])",
     tree.HoeffdingTreeClassifier),
    ("tree.HoeffdingAdaptiveTreeRegressor(seed=42)", tree.HoeffdingAdaptiveTreeRegressor),
    ("naive_bayes.GaussianNB()", naive_bayes.GaussianNB),
    ("forest.ARFClassifier(n_models=3, seed=1)", forest.ARFClassifier),
    ("ensemble.BaggingClassifier(model=preprocessing.StandardScaler() | linear_model.LogisticRegression(), "
     "n_models=3, seed=42)", ensemble.BaggingClassifier),
    ("anomaly.HalfSpaceTrees(n_trees=5, height=3, window_size=50, seed=1)", anomaly.HalfSpaceTrees),
    ("(preprocessing.StandardScaler() + feature_extraction.PolynomialExtender(degree=2)) | "
     "linear_model.LogisticRegression()", compose.Pipeline),
    ("compose.Select('a', 'b') | preprocessing.MinMaxScaler() | neighbors.KNNClassifier(n_neighbors=3)",
     compose.Pipeline),
    ("river.linear_model.LogisticRegression(loss=optim.losses.Hinge(), l2=-0.0)", linear_model.LogisticRegression),
    ("linear_model.LogisticRegression(optimizer=optim.SGD(optim.schedulers.InverseScaling(0.1)))",
     linear_model.LogisticRegression),
    ("preprocessing.OneHotEncoder() | linear_model.SoftmaxRegression()", compose.Pipeline),
]


@pytest.mark.parametrize(("spec", "cls"), ACCEPTED)
def test_accepts_real_river_models(spec: str, cls: type) -> None:
    model = build(spec)
    assert isinstance(model, cls)
    assert isinstance(model, base.Estimator)


def test_built_arguments_reach_the_model() -> None:
    model = build("linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=0.5)")
    assert isinstance(model.optimizer, optim.SGD)
    assert model.optimizer.learning_rate == 0.05
    assert model.l2 == 0.5
    assert build("tree.HoeffdingTreeClassifier(nominal_attributes=['c'])").nominal_attributes == ["c"]


REFUSED = [
    ("__import__('os').system('true')", "__import__('os')"),
    ('__import__("os").system("true")', '__import__("os")'),
    ("os.system('ls')", "os.system"),
    ("linear_model.LogisticRegression().__class__", "LogisticRegression().__class__"),
    ("linear_model.__dict__", "linear_model.__dict__"),
    ("linear_model._private()", "linear_model._private"),
    ("linear_model.LogisticRegression(optimizer=lambda: 0)", "lambda: 0"),
    ("linear_model.LogisticRegression(l2=[x for x in (1, 2)])", "[x for x in (1, 2)]"),
    ("linear_model.LogisticRegression(l2=f'{1}')", "f'{1}'"),
    ("linear_model.LogisticRegression(*[1])", "*[1]"),
    ("linear_model.LogisticRegression(**{'l2': 1})", "**{'l2': 1}"),
    ("datasets.Phishing()", "datasets.Phishing"),
    ("stream.iter_csv('/etc/passwd')", "stream.iter_csv"),
    ("linear_model.LogisticRegression(l2=2**10)", "2**10"),
    ("linear_model.LogisticRegression() - linear_model.Perceptron()", "-"),
    ("linear_model.LogisticRegression(l2=open)", "open"),
    ("linear_model.LogisticRegression(foo=1)", "foo"),
    ("optim.SGD(0.1)", "not a River estimator"),
    ("utils.Rolling(metrics.Accuracy, window_size=3)", "utils"),
    ("evaluate.progressive_val_score", "evaluate"),
    ("linear_model.LogisticRegression(l2=x[0])", "x[0]"),
    ("linear_model.LogisticRegression(", "not a valid expression"),
    ("", "empty"),
    ("linear_model.LogisticRegression() if True else 1", "`linear_model.LogisticRegression() if True else 1`"),
    ("linear_model.LogisticRegression(l2=(yield))", "yield"),
]


@pytest.mark.parametrize(("spec", "quoted"), REFUSED)
def test_refuses_and_quotes_the_offending_part(spec: str, quoted: str) -> None:
    with pytest.raises(SpecError) as info:
        build(spec)
    assert quoted in str(info.value)


def test_spec_length_is_bounded() -> None:
    with pytest.raises(SpecError, match="over the limit"):
        build("linear_model.LogisticRegression(" + " " * 20_000 + ")")
