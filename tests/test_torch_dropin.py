"""adamax_cy.torch.Adamax as a drop-in: every input torch.optim.Adamax takes, with torch's result.

The inputs come from torch's own description of its Adamax, the
``OptimizerInfo`` in ``torch.testing._internal.common_optimizers`` (its
constructor inputs, error inputs and implementations), crossed with the
dtypes, layouts and devices a model may have. Each case states which path
runs (the compiled kernel, or torch's own implementation) and checks that
path's promise: torch's implementation gives torch's result bitwise; the
kernel gives the table path's result bitwise (whose distance to torch's is
bounded step by step in test_torch_optimizer.py).
"""

from __future__ import annotations

import contextlib
import copy
import unittest.mock
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
common_optimizers = pytest.importorskip("torch.testing._internal.common_optimizers")

import adamax_cy.torch as adamax_torch  # noqa: E402
from adamax_cy.torch import Adamax  # noqa: E402
from test_torch_optimizer import lockstep, quadratic_loss, twin  # noqa: E402

INFO = next(info for info in common_optimizers.optim_db if info.optim_cls is torch.optim.Adamax)
INPUTS = INFO.optim_inputs_func(device="cpu")
ERROR_INPUTS = INFO.optim_error_inputs_func(device="cpu", dtype=torch.float32)
#: torch's implementations of Adamax, as its OptimizerInfo lists them, and the default.
IMPLS = ["default", *INFO.supported_impls]
STEPS = 4


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def route(path):
    """Fail if the step takes another path than ``path`` ("kernel" or "torch")."""
    if path == "kernel":
        target = "adamax_cy._torch_general.torch_adamax"
    else:
        target = "adamax_cy._torch_general.adamax_step_many"
    with unittest.mock.patch(target, side_effect=AssertionError(f"not the {path} path"), create=True):
        yield


def impl_kwargs(impl):
    return {"default": {}, "foreach": {"foreach": True}, "differentiable": {"differentiable": True}}[impl]


def make_params(dtype, differentiable=False, device="cpu", seed=0, layout="contiguous"):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (5,), (2, 3, 2, 2)]
    params = []
    for shape in shapes:
        x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        if layout == "channels_last" and len(shape) == 4:
            x = x.to(memory_format=torch.channels_last)
        elif layout == "transposed" and len(shape) == 2:
            x = x.t().contiguous().t()
        elif layout == "gaps":
            x = torch.stack([x, torch.zeros_like(x)], -1)[..., 0]
        x = x.to(device)
        if differentiable:  # a tensor computed from a leaf, as meta-learning steps one
            params.append(x.requires_grad_(True).clone())
        else:
            params.append(torch.nn.Parameter(x))
    return params


def gradients(params, step):
    gen = torch.Generator().manual_seed(100 + step)
    grads = []
    for p in params:
        g = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
        grads.append(torch.empty_like(p).copy_(g.to(p.device)))  # laid out as the parameter
    return grads


def free_run(cls, params, kwargs, steps=STEPS):
    """``steps`` steps of ``cls`` on fixed gradients; the optimizer."""
    opt = cls(params, **kwargs)
    for s in range(steps):
        for p, g in zip(params, gradients(params, s)):
            p.grad = g
        opt.step()
    return opt


def assert_same_run(ref_params, ref_opt, params, opt, equal=torch.equal):
    for pr, po in zip(ref_params, params):
        assert equal(pr.detach(), po.detach())
        sr, so = ref_opt.state[pr], opt.state[po]
        assert sorted(sr) == sorted(so)
        for key in sr:
            assert sr[key].dtype == so[key].dtype and sr[key].device == so[key].device
            assert sr[key].stride() == so[key].stride()
            assert equal(sr[key], so[key]), key


# -- torch's OptimizerInfo: inputs ----------------------------------------------------


def _path(impl, dtype):
    if impl == "differentiable" or dtype in (torch.float16, torch.bfloat16):
        return "torch"
    return "kernel"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                   torch.complex64, torch.complex128], ids=str)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("optim_input", INPUTS, ids=[i.desc for i in INPUTS])
def test_optimizer_info_input_behaves_as_torch(optim_input, impl, dtype):
    kwargs = {**optim_input.kwargs, **impl_kwargs(impl)}
    differentiable = impl == "differentiable"
    path = _path(impl, dtype)
    ref = make_params(dtype, differentiable)
    ours = make_params(dtype, differentiable)
    if path == "torch":
        # torch's implementation, called as torch.optim.Adamax calls it: bitwise torch's run.
        ref_opt = free_run(torch.optim.Adamax, ref, kwargs)
        with route("torch"):
            opt = free_run(Adamax, ours, kwargs)
        assert_same_run(ref, ref_opt, ours, opt)
    elif not dtype.is_complex:
        # The kernel: within the per-step bound of torch's step, at every step.
        with route("kernel"):
            lockstep(ref, torch.optim.Adamax(ref, **kwargs), ours, Adamax(ours, **kwargs),
                     STEPS, quadratic_loss)
    else:
        # Complex parameters are their real and imaginary parts, as in torch:
        # ours on them is ours on their real views, bitwise, and that is
        # within the bound of torch's on the real views (the case above),
        # which is torch's on the complex parameters, bitwise.
        real = [torch.nn.Parameter(torch.view_as_real(p.detach()).clone()) for p in ours]
        with route("kernel"):
            opt = free_run(Adamax, ours, kwargs)
        real_opt = Adamax(real, **kwargs)
        for s in range(STEPS):
            for r, g in zip(real, gradients(ours, s)):
                r.grad = torch.view_as_real(g).clone()
            real_opt.step()
        for p, r in zip(ours, real):
            assert torch.equal(torch.view_as_real(p.detach()), r.detach())
            for key in ("exp_avg", "exp_inf"):
                assert torch.equal(torch.view_as_real(opt.state[p][key]), real_opt.state[r][key])
            assert torch.equal(opt.state[p]["step"], real_opt.state[r]["step"])
        ref_opt = free_run(torch.optim.Adamax, ref, kwargs)
        ref_real = [torch.nn.Parameter(torch.view_as_real(p.detach()).clone()) for p in make_params(dtype)]
        ref_real_opt = torch.optim.Adamax(ref_real, **kwargs)
        for s in range(STEPS):
            for r, g in zip(ref_real, gradients(ref, s)):
                r.grad = torch.view_as_real(g).clone()
            ref_real_opt.step()
        for p, r in zip(ref, ref_real):
            assert torch.equal(torch.view_as_real(p.detach()), r.detach())


# -- torch's OptimizerInfo: error inputs ------------------------------------------------


@pytest.mark.parametrize("error_input", ERROR_INPUTS,
                         ids=[e.optimizer_error_input.desc for e in ERROR_INPUTS])
def test_optimizer_info_error_input_raises_as_torch(error_input):
    optim_input = error_input.optimizer_error_input
    params = optim_input.params
    if params is None:
        params = [torch.nn.Parameter(torch.randn(2, 2))]
    step_error = error_input.error_on == common_optimizers.OptimizerErrorEnum.STEP_ERROR
    for cls in (torch.optim.Adamax, Adamax):  # torch's first: the case is what torch says
        if issubclass(error_input.error_type, Warning):
            with pytest.warns(error_input.error_type, match=error_input.error_regex):
                cls(params, **optim_input.kwargs)
        elif step_error:
            opt = cls(params, **optim_input.kwargs)
            with pytest.raises(error_input.error_type, match=error_input.error_regex):
                opt.step()
        else:
            with pytest.raises(error_input.error_type, match=error_input.error_regex):
                cls(params, **optim_input.kwargs)


@pytest.mark.parametrize(
    "kwargs, torch_words, ours",
    [
        (dict(lr=torch.tensor([0.1, 0.2])), "Tensor lr must be 1-element", "got 2 elements"),
        (dict(lr=-0.5), "Invalid learning rate: -0.5", "lr must be a number >= 0"),
        (dict(lr=float("nan")), "Invalid learning rate: nan", "lr must be a number >= 0"),
        (dict(eps=-1e-8), "Invalid epsilon value: -1e-08", "eps must be a number >= 0"),
        (dict(betas=(1.0, 0.9)), "Invalid beta parameter at index 0: 1.0", "beta1 must be in [0, 1)"),
        (dict(betas=(0.0, 1.0)), "Invalid beta parameter at index 1: 1.0", "beta2 must be in [0, 1)"),
        (dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1", "weight_decay must be a number >= 0"),
    ],
)
def test_errors_contain_torch_wording_and_ours(kwargs, torch_words, ours):
    params = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError) as torch_error:
        torch.optim.Adamax(params, **kwargs)
    assert str(torch_error.value) == torch_words
    with pytest.raises(ValueError) as error:
        Adamax(params, **kwargs)
    assert str(error.value).startswith(torch_words) and ours in str(error.value)


def test_a_group_hyperparameter_changed_to_a_value_torch_refuses_says_so_at_the_step():
    p = torch.nn.Parameter(torch.ones(3))
    opt = Adamax([p])
    opt.param_groups[0]["betas"] = (0.9, 1.5)
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match=r"param_groups\[0\]: Invalid beta parameter at index 1: 1.5"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3)) and not opt.state[p]


# -- what runs where ---------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [None, True, False])
def test_any_foreach_value_is_accepted_and_the_kernel_runs(foreach):
    params = make_params(torch.float64)
    plain = make_params(torch.float64)
    with route("kernel"):
        opt = free_run(Adamax, params, {"foreach": foreach})
    assert opt.param_groups[0]["foreach"] is foreach
    assert_same_run(plain, free_run(Adamax, plain, {}), params, opt)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("foreach", [None, True, False])
def test_half_precision_runs_torch_implementation(dtype, foreach):
    ref, ours = make_params(dtype), make_params(dtype)
    ref_opt = free_run(torch.optim.Adamax, ref, {"foreach": foreach, "weight_decay": 0.1})
    with route("torch"):
        opt = free_run(Adamax, ours, {"foreach": foreach, "weight_decay": 0.1})
    assert_same_run(ref, ref_opt, ours, opt)


def test_meta_device_parameters_run_torch_implementation():
    ref, ours = make_params(torch.float32, device="meta"), make_params(torch.float32, device="meta")
    ref_opt = free_run(torch.optim.Adamax, ref, {})
    with route("torch"):
        opt = free_run(Adamax, ours, {})
    for pr, po in zip(ref, ours):
        sr, so = ref_opt.state[pr], opt.state[po]
        assert torch.equal(sr["step"], so["step"]) and float(so["step"]) == STEPS
        for key in ("exp_avg", "exp_inf"):
            assert so[key].device.type == "meta" and so[key].shape == po.shape
            assert so[key].dtype == sr[key].dtype


def test_strided_parameters_with_gaps_run_torch_implementation():
    ref, ours = make_params(torch.float32, layout="gaps"), make_params(torch.float32, layout="gaps")
    assert not any(p.is_contiguous() for p in ours)
    ref_opt = free_run(torch.optim.Adamax, ref, {"maximize": True})
    with route("torch"):
        opt = free_run(Adamax, ours, {"maximize": True})
    assert_same_run(ref, ref_opt, ours, opt)


def test_differentiable_step_is_torch_step_and_gradients_flow_through_it():
    def meta_gradient(cls):
        w = torch.linspace(-1, 1, 6, dtype=torch.float64, requires_grad=True)
        p = w.clone()
        opt = cls([p], lr=0.1, weight_decay=0.1, differentiable=True)
        p.grad = w * 0.5 - 1  # a gradient that depends on w too
        opt.step()  # (torch's differentiable step supports one step per graph)
        (grad,) = torch.autograd.grad((p ** 2).sum(), w)
        return p.detach(), grad, opt.state[p]

    p_ref, g_ref, s_ref = meta_gradient(torch.optim.Adamax)
    with route("torch"):
        p_ours, g_ours, s_ours = meta_gradient(Adamax)
    assert torch.equal(p_ref, p_ours) and torch.equal(g_ref, g_ours)
    assert not torch.equal(g_ours, 2 * p_ours)  # the step's own derivative is in it
    for key in s_ref:
        assert torch.equal(s_ref[key], s_ours[key])


@pytest.mark.parametrize("layout", ["channels_last", "transposed"])
def test_dense_layouts_are_stepped_in_place_in_storage_order(layout):
    ours = make_params(torch.float32, layout=layout)
    contiguous = make_params(torch.float32)
    assert not all(p.is_contiguous() for p in ours)
    pointers = [p.data_ptr() for p in ours]
    with route("kernel"):
        opt = free_run(Adamax, ours, {"weight_decay": 0.1})
    ref_opt = free_run(Adamax, contiguous, {"weight_decay": 0.1})
    # Elementwise in storage order: bitwise the contiguous parameters' run.
    for p, c in zip(ours, contiguous):
        assert torch.equal(p.detach(), c.detach())
        for key in ("exp_avg", "exp_inf", "step"):
            assert torch.equal(opt.state[p][key], ref_opt.state[c][key])
        for key in ("exp_avg", "exp_inf"):  # laid out as torch lays them out: as the parameter
            assert opt.state[p][key].stride() == p.stride()
    assert [p.data_ptr() for p in ours] == pointers


def test_a_gradient_laid_out_otherwise_than_its_dense_parameter_is_read_correctly():
    p = make_params(torch.float64, layout="channels_last")[2]
    c = torch.nn.Parameter(p.detach().contiguous())
    opt, ref_opt = Adamax([p]), Adamax([c])
    for s in range(3):
        (g,) = gradients([c], s)
        c.grad = g.clone()
        if s == 0:
            p.grad = g.clone()  # contiguous: not the parameter's layout
        elif s == 1:
            p.grad = (-g.to(memory_format=torch.channels_last))._neg_view()  # a lazily negated view
        else:
            p.grad = g.to(memory_format=torch.channels_last)
        assert p.grad.is_contiguous() == (s == 0) and p.grad.is_neg() == (s == 1)
        with route("kernel"):
            opt.step()
        ref_opt.step()
        assert torch.equal(p.detach(), c.detach())


def test_a_channels_last_model_state_dict_loads_into_torch_and_back():
    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(64, 2)
                                   ).to(memory_format=torch.channels_last)

    def train(m, opt, steps, seed):
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            x = torch.randn(5, 3, 6, 6, generator=gen).to(memory_format=torch.channels_last)
            opt.zero_grad()
            m(x).square().sum().backward()
            opt.step()

    ours, ref = model(), model()
    assert not ours[0].weight.is_contiguous()
    opt = Adamax(ours.parameters())
    train(ours, opt, 3, 0)
    ref_opt = torch.optim.Adamax(ref.parameters())
    ref_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    ref.load_state_dict(ours.state_dict())
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert ref_opt.state[q]["exp_avg"].stride() == opt.state[p]["exp_avg"].stride() == q.stride()
    train(ref, ref_opt, 2, 1)
    back = Adamax(ours.parameters())
    back.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
    ours.load_state_dict(ref.state_dict())
    train(ours, back, 1, 2)
    train(ref, ref_opt, 1, 2)
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert float(back.state[p]["step"]) == 6
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_half_precision_state_dict_is_torch_own_both_ways():
    ref, ours = make_params(torch.bfloat16), make_params(torch.bfloat16)
    free_run(torch.optim.Adamax, ref, {}, steps=2)
    opt = free_run(Adamax, ours, {}, steps=2)
    loaded = torch.optim.Adamax(ref)
    loaded.load_state_dict(copy.deepcopy(opt.state_dict()))
    for s in range(2, 4):
        for p, q, g in zip(ref, ours, gradients(ref, s)):
            p.grad, q.grad = g, g.clone()
        loaded.step()
        opt.step()
    assert_same_run(ref, loaded, ours, opt)


def test_a_group_mixing_every_path_steps_each_parameter_by_its_path():
    gen = torch.Generator().manual_seed(4)
    kinds = {
        "table": torch.randn(6, generator=gen),
        "complex": torch.randn(3, generator=gen, dtype=torch.complex64),
        "channels_last": torch.randn(2, 3, 2, 2, generator=gen).to(memory_format=torch.channels_last),
        "bfloat16": torch.randn(5, generator=gen).to(torch.bfloat16),
        "gaps": torch.randn(4, 6, generator=gen)[:, ::2],
    }

    def copy(v):  # of the same strides (clone() would make the slice contiguous)
        return torch.empty_strided(v.size(), v.stride(), dtype=v.dtype).copy_(v)

    mixed = {k: torch.nn.Parameter(copy(v)) for k, v in kinds.items()}
    alone = {k: torch.nn.Parameter(copy(v)) for k, v in kinds.items()}
    assert not mixed["gaps"].is_contiguous() and not mixed["channels_last"].is_contiguous()
    opt = Adamax(list(mixed.values()), lr=0.01)
    refs = {k: (torch.optim.Adamax if k in ("bfloat16", "gaps") else Adamax)([p], lr=0.01)
            for k, p in alone.items()}
    for s in range(3):
        for k in kinds:
            g = torch.randn(kinds[k].shape, generator=gen, dtype=kinds[k].dtype)
            mixed[k].grad, alone[k].grad = g.clone(), g.clone()
            refs[k].step()
        opt.step()
    for k in kinds:
        assert torch.equal(mixed[k].detach(), alone[k].detach()), k
        for key in ("exp_avg", "exp_inf", "step"):
            assert torch.equal(opt.state[mixed[k]][key], refs[k].state[alone[k]][key]), (k, key)


def test_a_group_returns_to_the_table_when_its_parameters_allow():
    p = torch.nn.Parameter(torch.randn(4, 3).t())
    opt = Adamax([p])
    p.grad = torch.ones_like(p)
    opt.step()
    assert 0 in opt._general
    with torch.no_grad():
        p.data = p.data.contiguous()
    opt.state[p] = {k: v.contiguous() for k, v in opt.state[p].items()}
    opt.step()  # the general path, which sees the group is plain again
    p.grad = torch.ones_like(p)
    with route("kernel"):
        opt.step()
    assert 0 not in opt._general and 0 in opt._plans
    assert float(opt.state[p]["step"]) == 3


def test_hyperparameters_only_torch_computes_run_torch_implementation():
    ref, ours = make_params(torch.float64), make_params(torch.float64)
    kwargs = {"weight_decay": float("inf")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_opt = free_run(torch.optim.Adamax, ref, kwargs, steps=1)
        with route("torch"):
            opt = free_run(Adamax, ours, kwargs, steps=1)
    assert_same_run(ref, ref_opt, ours, opt, equal=lambda a, b: torch.equal(a.nan_to_num(), b.nan_to_num()))


def test_spec_convention_refuses_a_parameter_only_torch_can_step():
    good = torch.nn.Parameter(torch.ones(3))
    half = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    opt = Adamax([good, half], convention="spec")
    good.grad, half.grad = torch.ones(3), torch.ones(3, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"params'\]\[1\].*convention='torch' only"):
        opt.step()
    assert torch.equal(good.detach(), torch.ones(3)) and not opt.state[good]


def test_capturable_on_the_cpu_fails_at_the_step_as_torch():
    for cls in (torch.optim.Adamax, Adamax):
        p = torch.nn.Parameter(torch.ones(3))
        opt = cls([p], capturable=True)
        p.grad = torch.ones(3)
        with pytest.raises(AssertionError, match="If capturable=True, params and state_steps"):
            opt.step()
    saved = Adamax([p]).state_dict()
    saved["param_groups"][0]["capturable"] = True
    loaded = Adamax([p])
    loaded.load_state_dict(saved)  # as torch loads it
    assert loaded.param_groups[0]["capturable"] is True


# -- one tensor in two parameter groups ----------------------------------------------------


def test_one_tensor_in_two_groups_is_refused_before_any_write():
    p = torch.nn.Parameter(torch.tensor([-1.0, 0.5]))
    q = torch.nn.Parameter(torch.tensor([2.0]))
    opt = Adamax([{"params": [p]}, {"params": [q], "lr": 0.5}])
    opt.param_groups[1]["params"].append(p)  # bypassing add_param_group's refusal
    p.grad, q.grad = torch.tensor([1.0, 1.0]), torch.tensor([1.0])
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\] and param_groups\[1\]\['params'\]\[1\]"):
        opt.step()
    assert torch.equal(p.detach(), torch.tensor([-1.0, 0.5])) and torch.equal(q.detach(), torch.tensor([2.0]))
    with pytest.raises(ValueError, match="two parameter groups"):
        opt.step()  # refused again, not only once
    opt.param_groups[1]["params"].pop()
    opt.step()
    assert float(opt.state[p]["step"]) == 1


def test_one_tensor_in_two_groups_on_the_general_path_is_refused():
    p = torch.nn.Parameter(torch.ones(2, 2).t())
    opt = Adamax([{"params": [p]}, {"params": [torch.nn.Parameter(torch.ones(2))]}])
    opt.param_groups[1]["params"].append(p)
    p.grad = torch.ones(2, 2)
    with pytest.raises(ValueError, match="two parameter groups"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(2, 2))


# -- what the docstring says about exp_inf --------------------------------------------------


def test_the_docstring_states_exactly_when_exp_inf_equals_torch():
    doc = " ".join(Adamax.__doc__.split())
    assert "``exp_inf`` is bitwise equal to torch's without weight decay" in doc
    assert ("with ``weight_decay`` it can differ by up to one ulp of "
            "``|grad| + weight_decay * |param|``") in doc

    def exp_inf(cls, weight_decay):
        gen = torch.Generator().manual_seed(9)
        p = torch.nn.Parameter(torch.randn(100_000, generator=gen))
        opt = cls([p], weight_decay=weight_decay)
        p.grad = torch.randn(100_000, generator=gen)
        g, before = p.grad.clone(), p.detach().clone()
        opt.step()
        return opt.state[p]["exp_inf"], g.abs() + weight_decay * before.abs()

    ours, _ = exp_inf(Adamax, 0.0)
    assert torch.equal(ours, exp_inf(torch.optim.Adamax, 0.0)[0])
    ours, magnitude = exp_inf(Adamax, 0.1)
    ref, _ = exp_inf(torch.optim.Adamax, 0.1)
    one_rounding = torch.finfo(torch.float32).eps * magnitude
    assert torch.all((ours - ref).abs() <= one_rounding)


def test_docstring_examples_and_paths_are_documented():
    doc = adamax_torch.Adamax.__doc__
    for words in ("Compiled, one call per parameter group", "Compiled, through flat views",
                  "torch's implementation", "DTensor", "float16 and bfloat16", "channels_last"):
        assert words in doc


def test_one_tensor_in_two_groups_on_torch_implementation_is_stepped_as_torch_steps_it():
    def run(cls):
        p = torch.nn.Parameter(torch.tensor([-1.0, 0.5], dtype=torch.bfloat16))
        opt = cls([{"params": [p]}, {"params": [], "lr": 0.5}])
        opt.param_groups[1]["params"].append(p)
        for _ in range(2):
            p.grad = torch.ones(2, dtype=torch.bfloat16)
            opt.step()
        return p.detach(), opt.state[p]

    (p_ref, s_ref), (p_ours, s_ours) = run(torch.optim.Adamax), run(Adamax)
    assert torch.equal(p_ref, p_ours) and float(s_ours["step"]) == 4
    for key in s_ref:
        assert torch.equal(s_ref[key], s_ours[key])


@pytest.mark.parametrize(
    ("lr", "dtype"),
    [
        (torch.tensor(0.01), torch.float64),
        (np.float32(0.01), torch.float64),
        (torch.tensor(1), torch.float64),
        (torch.tensor(0.01, dtype=torch.float16), torch.float32),
        (torch.tensor(0.01), torch.complex128),
    ],
    ids=["f32-tensor-f64", "np-f32-f64", "int-tensor-f64", "f16-tensor-f32", "f32-tensor-c128"],
)
def test_a_learning_rate_narrower_than_the_parameters_gives_torchs_result(lr, dtype):
    """torch divides lr by the bias correction in lr's own precision: so do we."""
    torch.manual_seed(0)
    start = torch.randn(50, dtype=dtype)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt_ours, opt_theirs = Adamax([ours], lr=lr), torch.optim.Adamax([theirs], lr=lr)
    for _ in range(3):
        g = torch.randn(50, dtype=dtype)
        ours.grad, theirs.grad = g.clone(), g.clone()
        opt_ours.step()
        opt_theirs.step()
    assert torch.equal(ours, theirs)
