"""CLG-INet inside deepinv: the ``CLGINetDenoiser`` adapter, blind and noise-level conditioned.

Denoiser-style checks in the manner of deepinv's own model tests (shapes,
dtypes, the forms σ comes in), then deepinv's algorithms run for a few
iterations with both kinds of network: PnP in HQS and PGD, DPIR, RED in
gradient descent, ``ArtifactRemoval``. Budget: clginet-tiny (or dim 8) on
1×3×32×32, one thread; each test takes about a second.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

dinv = pytest.importorskip("deepinv")

import clg_layers as cl  # noqa: E402
from clg_layers.integrations.deepinv import CLGINetDenoiser  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

KINDS = ("blind", "conditioned")


def network(kind: str) -> cl.CLGINet:
    from conftest import wake

    return wake(cl.build("clginet-tiny", noise_level_map=kind == "conditioned"), seed=3).eval()


def identity_network(kind: str) -> cl.CLGINet:
    """A network that returns its image: a fresh one (every block the identity) with a zero head."""
    model = cl.build("clginet-tiny", noise_level_map=kind == "conditioned").eval()
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    return model


def blur_problem(sigma: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, object]:
    """A striped 1×3×32×32 image, a Gaussian blur (exact FFT prox) and a little noise."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    stripes = [torch.sin(20 * xx), torch.cos(17 * yy), torch.sin(15 * (xx + yy))]
    clean = torch.stack([0.5 + 0.4 * s for s in stripes])[None]
    physics = dinv.physics.BlurFFT(
        img_size=(3, 32, 32),
        filter=dinv.physics.functional.gaussian_blur(sigma=(1.5, 1.5)),
        noise_model=dinv.physics.GaussianNoise(sigma=sigma, rng=torch.Generator().manual_seed(0)),
    )
    return clean, physics(clean), physics


def psnr(x: torch.Tensor, clean: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (x.clamp(0, 1) - clean).pow(2).mean()))


# --------------------------------------------------------------------------------------------------
# The adapter as a denoiser


def test_importing_clg_layers_does_not_import_deepinv() -> None:
    code = "import sys, clg_layers, clg_layers.integrations; print('deepinv' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kind", KINDS)
def test_is_a_deepinv_denoiser(kind: str) -> None:
    model = network(kind)
    denoiser = CLGINetDenoiser(model)
    assert isinstance(denoiser, dinv.models.Denoiser)
    assert denoiser.conditioned is (kind == "conditioned") and denoiser.channels == 3
    assert denoiser.model is model and all(k.startswith("model.") for k in denoiser.state_dict())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "sigma",
    [0.1, 1, torch.tensor(0.1), torch.tensor([0.1]), torch.tensor([0.1, 0.2]), torch.full((2, 1, 1, 1), 0.1)],
    ids=["float", "int", "0-d", "(1,)", "(B,)", "(B,1,1,1)"],
)
def test_shape_and_dtype_for_every_sigma_form(kind: str, sigma: object) -> None:
    denoiser = CLGINetDenoiser(network(kind))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = denoiser(x, sigma)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", KINDS)
def test_odd_sizes_float64_and_gradients(kind: str) -> None:
    denoiser = CLGINetDenoiser(network(kind)).double()
    x = torch.rand(1, 3, 17, 23, dtype=torch.float64, requires_grad=True)
    out = denoiser(x, torch.tensor(0.05, dtype=torch.float64))
    assert out.shape == (1, 3, 17, 23) and out.dtype == torch.float64
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_blind_network_ignores_sigma() -> None:
    model = network("blind")
    denoiser = CLGINetDenoiser(model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        for sigma in (None, 0.0, 0.5, torch.tensor([0.1, 0.3])):
            torch.testing.assert_close(denoiser(x, sigma), expected)


def test_conditioned_network_gets_the_sigma_map() -> None:
    model = network("conditioned")
    denoiser = CLGINetDenoiser(model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(denoiser(x, 0.1), model(cl.with_sigma_map(x, 0.1)))
        per_sample = denoiser(x, torch.tensor([0.05, 0.2]))
        torch.testing.assert_close(per_sample[:1], denoiser(x[:1], 0.05))
        torch.testing.assert_close(per_sample[1:], denoiser(x[1:], 0.2))
        assert not torch.allclose(denoiser(x, 0.05), denoiser(x, 0.2))
        spatial = torch.full((2, 1, 32, 32), 0.1)  # deepinv's DRUNet takes maps too
        torch.testing.assert_close(denoiser(x, spatial), denoiser(x, 0.1))


@pytest.mark.parametrize(
    ("kind", "x", "sigma", "error", "message"),
    [
        ("blind", [[0.0]], 0.1, TypeError, r"`x` must be a \(B, C, H, W\) tensor, got list"),
        ("blind", torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 0.1, TypeError, "floating point"),
        ("blind", torch.rand(1, 1, 8, 8), 0.1, ValueError, r"shape \(B, 3, H, W\), got \(1, 1, 8, 8\)"),
        ("blind", torch.rand(3, 8, 8), 0.1, ValueError, r"got \(3, 8, 8\)"),
        ("blind", torch.rand(1, 3, 8, 8), "0.1", TypeError, "a number, a tensor or None, got str"),
        ("conditioned", torch.rand(1, 3, 8, 8), None, ValueError, "needs `sigma`"),
        ("conditioned", torch.rand(1, 3, 8, 8), -0.1, ValueError, "finite and >= 0"),
        ("conditioned", torch.rand(2, 3, 8, 8), torch.ones(3), ValueError, r"shape \(3,\)"),
        ("conditioned", torch.rand(1, 3, 8, 8), "0.1", TypeError, "got str"),
        ("conditioned", torch.rand(1, 3, 8, 8), True, TypeError, "got bool"),
    ],
)
def test_wrong_inputs_are_refused(kind: str, x: object, sigma: object, error: type, message: str) -> None:
    denoiser = CLGINetDenoiser(identity_network(kind))
    with pytest.raises(error, match=rf"CLGINetDenoiser: .*{message}"):
        denoiser(x, sigma)


def test_wrong_models_are_refused() -> None:
    with pytest.raises(TypeError, match=r"CLGINetDenoiser: `model` must be a clg_layers.CLGINet, got Conv2d"):
        CLGINetDenoiser(torch.nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match=r"maps 3 image channels to 1"):
        CLGINetDenoiser(cl.CLGINet(dim=8, out_chans=1, global_residual=False))


# --------------------------------------------------------------------------------------------------
# deepinv's algorithms


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("algorithm", ["HQS", "PGD"])
def test_pnp_runs_in_deepinv_optimisers(kind: str, algorithm: str) -> None:
    _, y, physics = blur_problem()
    prior = dinv.optim.PnP(denoiser=CLGINetDenoiser(network(kind)))
    solver = getattr(dinv.optim, algorithm)(
        prior=prior, data_fidelity=dinv.optim.L2(), stepsize=1.0, g_param=0.05, max_iter=2
    )
    with torch.no_grad():
        out = solver(y, physics)
    assert out.shape == y.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", KINDS)
def test_pnp_iterate_improves_on_the_measurement(kind: str) -> None:
    # An easy problem (little noise) and a network that returns its image: HQS's data step deconvolves
    # and the prior step must hand that back through the adapter unchanged. Measured: 18.5 -> 20.6 dB.
    clean, y, physics = blur_problem(sigma=0.005)
    prior = dinv.optim.PnP(denoiser=CLGINetDenoiser(identity_network(kind)))
    solver = dinv.optim.HQS(
        prior=prior, data_fidelity=dinv.optim.L2(), stepsize=1.0, g_param=0.05, max_iter=3
    )
    with torch.no_grad():
        out = solver(y, physics)
    assert psnr(out, clean) > psnr(y, clean) + 1.0


def test_dpir_drives_the_conditioned_network_with_its_sigma_schedule() -> None:
    _, y, physics = blur_problem(sigma=0.02)
    model = network("conditioned")
    seen: list[float] = []
    model.embed_sigma.register_forward_pre_hook(lambda _m, args: seen.append(float(args[0][0, 0, 0, 0])))
    with torch.no_grad():
        out = dinv.optim.DPIR(sigma=0.02, denoiser=CLGINetDenoiser(model))(y, physics)
    assert out.shape == y.shape and torch.isfinite(out).all()
    schedule, _, iterations = dinv.optim.dpir.get_DPIR_params(0.02)
    assert len(seen) == iterations
    torch.testing.assert_close(torch.tensor(seen), schedule, rtol=1e-5, atol=1e-7)  # 49/255 down to 0.02


@pytest.mark.parametrize("kind", KINDS)
def test_red_runs_in_gradient_descent(kind: str) -> None:
    _, y, physics = blur_problem()
    prior = dinv.optim.RED(denoiser=CLGINetDenoiser(network(kind)))
    solver = dinv.optim.GD(prior=prior, data_fidelity=dinv.optim.L2(), stepsize=0.5, g_param=0.05, max_iter=2)
    with torch.no_grad():
        out = solver(y, physics)
    assert out.shape == y.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", KINDS)
def test_artifact_removal_reads_sigma_from_the_physics(kind: str) -> None:
    _, y, physics = blur_problem(sigma=0.03)
    model = network(kind)
    reconstructor = dinv.models.ArtifactRemoval(CLGINetDenoiser(model), mode="adjoint")
    with torch.no_grad():
        out = reconstructor(y, physics)
        expected = CLGINetDenoiser(model)(physics.A_adjoint(y), 0.03)
    assert out.shape == y.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, expected)  # the conditioned network got the physics' σ
