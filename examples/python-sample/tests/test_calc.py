import pytest

from sample_calc import add, mean


def test_add_is_exact() -> None:
    assert add("0.1", "0.2") == "0.3"


def test_mean() -> None:
    assert mean(["1", "2", "4"]) == "2.333333333333333333333333333"


def test_mean_of_nothing() -> None:
    with pytest.raises(ValueError):
        mean([])
