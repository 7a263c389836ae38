"""adamax_cy.torch.Adamax raises torch.optim.Adamax's exception type for the same bad input.

Ours may say more, and stays a ValueError (the library's type for a value
out of place), but code that catches what torch raises catches ours.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from adamax_cy.torch import Adamax  # noqa: E402


def parameter():
    p = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    p.grad = torch.full((5,), 0.5, dtype=torch.float64)
    return p


def betas_too_short(cls):
    cls([parameter()], betas=(0.9,))


def parameter_shrunk_under_its_state(cls):
    p = parameter()
    opt = cls([p])
    opt.step()
    p.data = torch.ones(3, dtype=torch.float64)
    p.grad = torch.ones(3, dtype=torch.float64)
    opt.step()


def exp_avg_of_another_shape(cls):
    p = parameter()
    opt = cls([p])
    opt.step()
    opt.state[p]["exp_avg"] = torch.zeros(3, dtype=torch.float64)
    opt.step()


def exp_avg_of_another_dtype(cls):
    p = parameter()
    opt = cls([p])
    opt.step()
    opt.state[p]["exp_avg"] = torch.zeros(5, dtype=torch.float32)
    opt.step()


def state_entry_missing(cls):
    p = parameter()
    opt = cls([p])
    opt.step()
    del opt.state[p]["exp_inf"]
    opt.step()


def gradient_of_another_dtype(cls):
    p = parameter()
    opt = cls([p])
    opt.step()
    p.grad.data = torch.ones(5, dtype=torch.float32)
    opt.step()


def inference_parameter(cls):
    with torch.inference_mode():
        p = torch.ones(5, dtype=torch.float64)
    opt = cls([p])
    p.grad = torch.ones(5, dtype=torch.float64)
    opt.step()


@pytest.mark.parametrize("bad", [
    betas_too_short, parameter_shrunk_under_its_state, exp_avg_of_another_shape,
    exp_avg_of_another_dtype, state_entry_missing, gradient_of_another_dtype, inference_parameter,
])
def test_a_bad_input_raises_the_exception_type_torch_raises(bad):
    with pytest.raises(Exception) as theirs:
        bad(torch.optim.Adamax)
    with pytest.raises(type(theirs.value)) as ours:
        bad(Adamax)
    assert isinstance(ours.value, ValueError), repr(ours.value)
