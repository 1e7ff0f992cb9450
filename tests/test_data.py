"""Disjoint alphabets and tensors (symlib.data)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from symlib import DataConfig, get_task, make_data, matches  # noqa: E402
from symlib.data import split_figure  # noqa: E402


@pytest.mark.parametrize("name", ["aba_abb", "programs", "variable_binding"])
def test_no_test_token_is_ever_seen_in_training(name):
    d = make_data(get_task(name), DataConfig(n=300, n_test=500, test_alphabet=100), seed=3)
    train, val, test = d.tokens("train"), d.tokens("val"), d.tokens("test")
    assert train and test and not (train & test) and not (train & val) and not (val & test)
    assert max(train) < d.offsets["val"] <= min(val) and min(test) >= d.offsets["test"]
    assert not torch.isin(d.x["train"], torch.tensor(sorted(test))).any()


def test_every_string_matches_its_template_and_label():
    task = get_task("variable_binding")
    d = make_data(task, 200, seed=0)
    for split in ("train", "test"):
        for row, t, y in zip(d.x[split][:50], d.template[split][:50], d.y[split][:50]):
            x = tuple(d.token_name(int(i)) for i in row)
            z = task.templates[int(t)]
            assert matches(x, z)
            # the target is the token substituted for the label wildcard
            assert d.token_name(int(y)) == x[z.index(task.labels[int(t)])]


def test_sizes_default_to_n_and_counts_are_multinomial():
    task = get_task("majority", k=4)
    d = make_data(task, 512, seed=1)
    assert d.x["train"].shape == (512, 4) and d.offsets["val"] - d.offsets["train"] == 512
    counts = np.bincount(d.template["train"].numpy(), minlength=8)
    assert counts.sum() == 512 and counts.min() > 30  # 64 expected per template
    assert len(set(counts.tolist())) > 1               # drawn, not fixed
    assert set(d.y["train"].tolist()) == {1.0, -1.0}


def test_regression_and_next_token_dtypes():
    assert make_data(get_task("aba_abb"), 8).y["train"].dtype == torch.float32
    assert make_data(get_task("copy"), 8).y["train"].dtype == torch.int64


def test_data_are_deterministic_per_seed():
    a, b, c = (make_data(get_task("aba_abb"), 64, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.x["train"], b.x["train"]) and not torch.equal(a.x["train"], c.x["train"])


def test_large_alphabet_substitutions_are_injective():
    d = make_data(get_task("variable_binding"), DataConfig(n=4000), seed=0)
    x = d.x["train"]
    wild = x[:, [0, 2, 4, 6]]  # α γ β δ
    assert all(len(set(r)) == 4 for r in wild.tolist())


@pytest.mark.parametrize("config, message", [
    (DataConfig(n=1), "fewer than the task's 2 templates"),
    (DataConfig(n=8, test_alphabet=1), "test alphabet has 1 tokens, too few"),
    (DataConfig(n=8, train_alphabet=1), "train alphabet has 1 tokens"),
])
def test_bad_sizes(config, message):
    with pytest.raises(ValueError, match=message):
        make_data(get_task("aba_abb"), config)


@pytest.mark.parametrize("field", ["n", "n_test", "test_alphabet", "n_val"])
def test_non_positive_sizes(field):
    kwargs = {"n": 8, field: 0}
    with pytest.raises(ValueError, match=f"{field} must be a positive integer"):
        DataConfig(**kwargs)


def test_split_figure_draws_one_histogram_per_split_over_disjoint_id_ranges():
    d = make_data(get_task("aba_abb"), DataConfig(n=16, n_test=32, test_alphabet=32), seed=0)
    fig = split_figure(d, title="ABA vs ABB")
    ax = fig.axes[0]
    assert ax.get_title() == "ABA vs ABB" and ax.get_ylabel() == "occurrences"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "val", "test"]
    steps = ax.collections                                                   # one step outline per split
    assert len(steps) == 3
    occupied = []                                                            # ids where a split's count is > 0
    for c in steps:
        v = c.get_paths()[0].vertices
        occupied.append((v[v[:, 1] > 0, 0].min(), v[v[:, 1] > 0, 0].max()))
    ranges = sorted(occupied)
    assert all(a[1] <= b[0] + 3 for a, b in zip(ranges, ranges[1:]))        # disjoint, up to a bin's width
    plt.close(fig)
