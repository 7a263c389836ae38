"""adamax_cy.torch.Adamax sees every change of the memory it walks.

The compiled table remembers each tensor's memory between steps; it must
compare everything that decides the memory a step reads and writes (dtype,
shape, strides, storage offset, size), not the address alone.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from adamax_cy.torch import Adamax  # noqa: E402


def stepped(shape, dtype=torch.float32, seed=0):
    """A parameter, its optimizer after one step, and its gradient (kept)."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype))
    p.grad = torch.randn(shape, generator=gen, dtype=dtype)
    opt = Adamax([p], lr=0.01)
    opt.step()
    return p, opt


def snapshot(p, opt):
    state = opt.state[p]
    return [t.detach().clone() for t in (p, state["exp_avg"], state["exp_inf"], state["step"])]


def assert_unchanged(before, p, opt):
    for old, new in zip(before, snapshot(p, opt)):
        assert torch.equal(old, new)


# ---------------------------------------------------------------- the parameter


def test_a_transposed_view_at_the_same_address_is_refused():
    p, opt = stepped((3, 4))
    p.data = p.data.t()  # the same address, another layout
    assert p.data_ptr() == p.data.t().data_ptr()
    p.grad = torch.ones(4, 3)
    before = snapshot(p, opt)
    with pytest.raises(ValueError):
        opt.step()
    assert_unchanged(before, p, opt)


def test_a_shrunk_view_with_the_old_gradient_writes_nothing_past_its_end():
    p, opt = stepped((10,))
    storage = p.data
    tail = storage[5:].clone()
    p.data = storage[:5]  # the same address; the old 10-element gradient stays
    with pytest.raises((ValueError, RuntimeError)):
        opt.step()
    assert torch.equal(storage[5:], tail)


def test_a_view_of_another_dtype_at_the_same_address_is_refused():
    p, opt = stepped((8,))
    raw = p.data.clone()
    p.data = p.data.view(torch.float64)  # float32 memory read as float64; the gradient kept
    with pytest.raises((ValueError, TypeError)):
        opt.step()
    assert torch.equal(p.data.view(torch.float32), raw)


# ---------------------------------------------------------------- the gradient


def transpose_(g):
    g.t_()


def as_strided_(g):
    g.as_strided_(g.shape, (1, g.shape[0]))


def set_(g):
    g.set_(g.untyped_storage(), 0, g.shape, (1, g.shape[0]))


def data_assigned(g):
    g.data = g.data.t()


@pytest.mark.parametrize("change", [transpose_, as_strided_, set_, data_assigned])
def test_an_in_place_layout_change_of_the_gradient_is_seen(change):
    # Two identical optimizers; one's gradient changes its layout in place,
    # the other gets a new, contiguous tensor of the same values.
    p, opt = stepped((4, 4))
    q, other = stepped((4, 4))
    g = p.grad
    change(g)
    assert not g.is_contiguous()
    q.grad = g.detach().contiguous()
    opt.step()
    other.step()
    assert torch.equal(p.detach(), q.detach())
    assert torch.equal(opt.state[p]["exp_avg"], other.state[q]["exp_avg"])
