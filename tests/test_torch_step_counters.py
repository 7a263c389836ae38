"""The ``step`` counters of adamax_cy.torch.Adamax's state behave as torch.optim.Adamax's.

torch keeps a loaded counter of any real dtype as it is (an int64 one, a
float16 one that stops at 2048) and advances it in place; a counter shared
by two parameters' states is advanced once per parameter, in order.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from adamax_cy.torch import Adamax  # noqa: E402


def stepped_twins(step_value, step_dtype, betas=(0.999, 0.999)):
    """Both optimizers after one step, then given the same loaded counter."""
    out = []
    for cls in (Adamax, torch.optim.Adamax):
        p = torch.nn.Parameter(torch.linspace(-1, 1, 6, dtype=torch.float64))
        p.grad = torch.linspace(0.5, -0.25, 6, dtype=torch.float64)
        opt = cls([p], lr=0.1, betas=betas)
        opt.step()
        sd = opt.state_dict()
        sd["state"][0]["step"] = torch.tensor(step_value, dtype=step_dtype)
        opt.load_state_dict(sd)
        out.append((p, opt))
    return out


@pytest.mark.parametrize("step_dtype, value", [
    (torch.int64, 7), (torch.int32, 7), (torch.float16, 7), (torch.bfloat16, 7),
    (torch.float16, 2048),  # float16 cannot count past 2048: torch's counter stays there
])
def test_a_counter_of_another_dtype_is_kept_and_advanced_as_torch_does(step_dtype, value):
    (p, ours), (q, theirs) = stepped_twins(value, step_dtype)
    counter = ours.state[p]["step"]
    for _ in range(3):
        ours.step()
        theirs.step()
    assert ours.state[p]["step"] is counter  # the same tensor, as torch keeps its own
    assert counter.dtype == theirs.state[q]["step"].dtype == step_dtype
    assert torch.equal(counter, theirs.state[q]["step"])
    torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-13, atol=0)


def shared_twins(foreach, dtype=torch.float64):
    """Both optimizers over three parameters, the first and last sharing one counter."""
    out = []
    for cls in (Adamax, torch.optim.Adamax):
        gen = torch.Generator().manual_seed(5)
        ps = [torch.nn.Parameter(torch.randn(4, generator=gen, dtype=dtype)) for _ in range(3)]
        opt = cls(ps, lr=0.1, betas=(0.5, 0.999), foreach=foreach)
        for p in ps:
            p.grad = torch.randn(4, generator=gen, dtype=dtype)
        opt.step()
        opt.state[ps[2]]["step"] = opt.state[ps[0]]["step"]
        out.append((ps, opt))
    return out


@pytest.mark.parametrize("foreach", [None, False, True])
def test_a_counter_shared_by_two_parameters_is_advanced_once_for_each_as_torch_does(foreach):
    (ps, ours), (qs, theirs) = shared_twins(foreach)
    for _ in range(3):
        ours.step()
        theirs.step()
    assert ours.state[ps[2]]["step"] is ours.state[ps[0]]["step"]
    for p, q in zip(ps, qs):
        assert torch.equal(ours.state[p]["step"], theirs.state[q]["step"])
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-13, atol=0)
