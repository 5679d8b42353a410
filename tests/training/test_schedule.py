"""The learning-rate schedule, against values worked out by hand."""
import pytest

from volgen.training.schedule import learning_rate


def test_constant_keeps_the_base_rate():
    assert [learning_rate(3e-4, "constant", s, 10) for s in (0, 5, 10)] == [3e-4, 3e-4, 3e-4]


def test_cosine_falls_from_the_base_rate_through_half_to_zero():
    # (1 + cos(pi * s / 8)) / 2 at s = 0, 2, 4, 6, 8: 1, (1 + sqrt(2)/2) / 2, 1/2, (1 - sqrt(2)/2) / 2, 0
    rates = [learning_rate(1.0, "cosine", s, 8) for s in (0, 2, 4, 6, 8, 12)]
    assert rates == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466, 0.0, 0.0], abs=1e-7)


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="constant, cosine"):
        learning_rate(1e-3, "linear", 0, 10)
