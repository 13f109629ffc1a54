"""Training: it learns, checkpoints reload exactly, resume is exact, a kill never corrupts a folder."""
from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from invrim import RIM, Gaussian, Hourglass, Problem, RIMCell, UNet
from invrim.physics import Blur
from invrim.physics.blur import gaussian_psf
from invrim.training import EarlyStopping
from invrim.runs import read_tensors

SIZE = 16


def smooth_images(n, seed):
    """Smooth random images: low-pass filtered noise, scaled to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    k = torch.fft.rfftfreq(SIZE)[None, :] ** 2 + torch.fft.fftfreq(SIZE)[:, None] ** 2
    spectrum = torch.randn(n, 1, SIZE, SIZE // 2 + 1, dtype=torch.complex64, generator=g) * torch.exp(-k / 0.05)
    x = torch.fft.irfft2(spectrum, s=(SIZE, SIZE))
    x = x - x.amin(dim=(-2, -1), keepdim=True)
    return x / x.amax(dim=(-2, -1), keepdim=True)


@pytest.fixture(scope="module")
def deblurring():
    psf = gaussian_psf(5, 1.2)
    problem = Problem(Blur(psf, boundary="periodic"), Gaussian(sigma=0.03))
    g = torch.Generator().manual_seed(1)
    x_train, x_test = smooth_images(256, 0), smooth_images(64, 1)
    return problem, (problem.simulate(x_train, g), x_train), (problem.simulate(x_test, g), x_test)


def make_rim(problem, **kw):
    torch.manual_seed(0)
    net = Hourglass(1, dimensions=2, nf=8, ch_mult=(2,), hidden_units=16, num_layers=1)
    return RIM((SIZE, SIZE), net, problem=problem, T=4, standardize_score=True,
               initialization_method="approximate_inverse", **kw)


def mse(a, b):
    return float(((a - b) ** 2).mean())


def test_training_learns_to_deblur(deblurring, tmp_path):
    problem, (y, x), (y_test, x_test) = deblurring
    rim = make_rim(problem)
    history = rim.fit(torch.utils.data.TensorDataset(y, x), epochs=20, learning_rate=3e-3,
                      batch_size=16, seed=0, progress=False, checkpoints_directory=tmp_path / "run")
    assert history[-1] < 0.4 * history[0], history
    x_hat = rim.predict(y_test)
    err_rim = mse(x_hat, x_test)
    err_obs = mse(y_test, x_test)
    err_adj = mse(problem.forward_model.adjoint(y_test), x_test)
    assert err_rim < 0.5 * err_obs and err_rim < 0.3 * err_adj, (err_rim, err_obs, err_adj)

    # predictions of a reloaded checkpoint equal the original's exactly
    reloaded = RIM((SIZE, SIZE), checkpoints_directory=tmp_path / "run", problem=problem)
    assert torch.equal(reloaded.predict(y_test), x_hat)
    # the problem itself is rebuilt from model.json through the registry when not given
    reloaded = RIM(checkpoints_directory=tmp_path / "run")
    assert reloaded.problem.forward_model.boundary == "periodic" and reloaded.problem.likelihood.sigma == 0.03
    assert reloaded.dimensions == (SIZE, SIZE)
    assert reloaded.T == rim.T and reloaded.standardize_score
    assert reloaded.initialization_method == "approximate_inverse"
    assert torch.equal(reloaded.predict(y_test), x_hat)


def test_checkpoint_folder_holds_no_pickle_and_loads_without_it(deblurring, tmp_path, monkeypatch):
    problem, (y, x), _ = deblurring
    rim = make_rim(problem)
    rim.fit(torch.utils.data.TensorDataset(y[:32], x[:32]), epochs=5, learning_rate=1e-3,
            batch_size=16, seed=0, progress=False, checkpoints_directory=tmp_path, models_to_keep=2,
            validation_split=0.25)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert all(n.endswith((".json", ".jsonl", ".safetensors")) for n in names), names
    index = json.loads((tmp_path / "checkpoints.json").read_text())
    weights = [c for c in index["checkpoints"]]
    assert len(weights) <= 3 and index["last"] == "weights_epoch0005.safetensors"   # 2 best + the last
    assert len(list(tmp_path.glob("weights_epoch*.safetensors"))) == len(weights)
    assert len(list(tmp_path.glob("state_epoch*"))) == 2                          # one resume state
    losses = {c["epoch"]: c["loss"] for c in index["checkpoints"]}
    assert index["best"] == f"weights_epoch{min(losses, key=losses.get):04d}.safetensors"
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3, 4, 5] and all(l["val_loss"] is not None for l in lines)

    def forbidden(*a, **k):
        raise AssertionError("pickle must not be used to load a checkpoint")
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    for which in ("best", "last"):
        RIM((SIZE, SIZE), checkpoints_directory=tmp_path, problem=problem, checkpoint=which)


def test_hidden_units_survive_a_reload(tmp_path, deblurring):
    """Seed defect: hidden_units was not saved, so a reload silently built a different model."""
    problem, (y, x), _ = deblurring
    net = Hourglass(1, dimensions=2, nf=8, ch_mult=(2,), hidden_units=48, num_layers=1)
    rim = RIM((SIZE, SIZE), net, problem=problem, T=2)
    rim.fit(torch.utils.data.TensorDataset(y[:8], x[:8]), epochs=1, batch_size=8, progress=False,
            checkpoints_directory=tmp_path)
    reloaded = RIM((SIZE, SIZE), checkpoints_directory=tmp_path, problem=problem)
    assert reloaded.model.config()["hidden_units"] == 48
    assert torch.equal(reloaded.predict(y[:4]), rim.predict(y[:4]))
    with pytest.warns(UserWarning, match="T=3 overrides the checkpoint's T=2"):
        assert RIM((SIZE, SIZE), checkpoints_directory=tmp_path, problem=problem, T=3).T == 3
    with pytest.raises(ValueError, match="differs from the one saved"):
        RIM((SIZE, SIZE), Hourglass(1, dimensions=2, nf=8, ch_mult=(2,), hidden_units=32, num_layers=1),
            checkpoints_directory=tmp_path, problem=problem)
    with pytest.raises(ValueError, match="no checkpoint of epoch 7; kept epochs: 1"):
        RIM((SIZE, SIZE), checkpoints_directory=tmp_path, problem=problem, checkpoint=7)


def test_resume_continues_exactly(deblurring, tmp_path):
    problem, (y, x), _ = deblurring
    data = torch.utils.data.TensorDataset(y[:48], x[:48])
    # (a cosine schedule spans the epochs asked for, so a 2-epoch run differs by design: constant)
    opts = dict(learning_rate=2e-3, batch_size=8, seed=3, progress=False, ema_decay=0.9, warmup=5)
    straight = make_rim(problem)
    h1 = straight.fit(data, epochs=4, checkpoints_directory=tmp_path / "a", **opts)
    interrupted = make_rim(problem)
    interrupted.fit(data, epochs=2, checkpoints_directory=tmp_path / "b", **opts)
    resumed = make_rim(problem)
    h2 = resumed.fit(data, epochs=4, checkpoints_directory=tmp_path / "b", **opts)
    assert list(h2) == list(h1)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    a = read_tensors(tmp_path / "a" / "weights_epoch0004.safetensors")
    b = read_tensors(tmp_path / "b" / "weights_epoch0004.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="already holds a training run"):
        make_rim(problem).fit(data, epochs=5, checkpoints_directory=tmp_path / "b", resume=False, **opts)


def test_dataloader_workers_persist_and_change_nothing(deblurring):
    """With worker processes (kept across epochs) the run is the same as without."""
    problem, (y, x), _ = deblurring
    data = torch.utils.data.TensorDataset(y[:32], x[:32])
    val = torch.utils.data.TensorDataset(y[32:40], x[32:40])
    opts = dict(learning_rate=2e-3, batch_size=8, seed=5, progress=False, validation_dataset=val)
    plain = make_rim(problem).fit(data, epochs=3, **opts)
    workers = make_rim(problem).fit(data, epochs=3, num_workers=2, **opts)
    assert list(workers) == list(plain) and workers.val_loss == plain.val_loss


def test_ema_weights_are_saved_and_left_in_the_model(deblurring, tmp_path):
    problem, (y, x), _ = deblurring
    rim = make_rim(problem)
    rim.fit(torch.utils.data.TensorDataset(y[:32], x[:32]), epochs=2, learning_rate=1e-2,
            batch_size=8, ema_decay=0.5, seed=0, progress=False, checkpoints_directory=tmp_path)
    saved = read_tensors(tmp_path / "weights_epoch0002.safetensors")
    state = read_tensors(tmp_path / "state_epoch0002.safetensors")
    for k, v in rim.model.state_dict().items():
        assert torch.equal(saved[k], v) and torch.equal(state[f"ema.{k}"], v)
    assert any(not torch.equal(state[f"model.{k}"], state[f"ema.{k}"]) for k in saved)


def test_non_finite_loss_stops_and_keeps_the_last_good_weights(deblurring, tmp_path, caplog):
    problem, (y, x), _ = deblurring

    class Poisoned(torch.utils.data.Dataset):
        def __init__(self):
            self.calls = 0

        def __len__(self):
            return 16

        def __getitem__(self, i):
            self.calls += 1
            bad = self.calls > 32            # epochs 1 and 2 are fine, then NaNs arrive
            return (y[i] * (math.nan if bad else 1.0), x[i])

    rim = make_rim(problem)
    history = rim.fit(Poisoned(), epochs=5, learning_rate=1e-3, batch_size=8, shuffle=False,
                      progress=False, checkpoints_directory=tmp_path)
    assert history.stop_reason.startswith("non-finite loss") and len(history) == 2
    assert "training stopped: non-finite loss" in caplog.text
    saved = read_tensors(tmp_path / "weights_epoch0002.safetensors")
    for k, v in rim.model.state_dict().items():
        assert torch.isfinite(v).all() and torch.equal(saved[k], v)


def test_early_stopping_patience_resets_on_improvement():
    """Seed defect: patience was decremented on every non-improving epoch and never reset."""
    stopper = EarlyStopping(patience=2)
    decisions = [stopper.step(v) for v in [1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.7, 0.75, 0.76]]
    assert decisions == [False] * 8 + [True]
    stopper = EarlyStopping(patience=1, tolerance=0.1)
    assert [stopper.step(v) for v in [1.0, 0.95]] == [False, True]   # 5 % is below the tolerance


def test_early_stopping_and_time_limit_in_fit(deblurring):
    problem, (y, x), _ = deblurring
    data = torch.utils.data.TensorDataset(y[:16], x[:16])
    rim = make_rim(problem)
    history = rim.fit(data, epochs=50, learning_rate=1e-12, batch_size=8, patience=2, tolerance=0.5,
                      validation_dataset=data, progress=False)
    assert history.stop_reason == "early stopping" and len(history) == 3
    assert len(history.val_loss) == 3
    start = time.monotonic()
    history = make_rim(problem).fit(data, epochs=10_000, batch_size=8, max_time=1.0 / 3600, progress=False)
    assert history.stop_reason == "time limit" and time.monotonic() - start < 10
    # a limit already spent when training starts still trains one epoch (it once returned nothing)
    history = make_rim(problem).fit(data, epochs=5, batch_size=8, max_time=1e-9, progress=False)
    assert len(history) == 1 and history.stop_reason == "time limit"


class SimulatedStream(torch.utils.data.IterableDataset):
    """Fresh images every epoch, simulated on the fly: the case an IterableDataset is for."""

    def __init__(self, problem, n):
        self.problem, self.n, self.epoch = problem, n, 0

    def __iter__(self):
        self.epoch += 1
        if self.n == 0:
            return iter(())
        x = smooth_images(self.n, 100 + self.epoch)
        y = self.problem.simulate(x, torch.Generator().manual_seed(self.epoch))
        return iter(zip(y, x))


class SimulatedStreamWithLength(SimulatedStream):
    def __len__(self):
        return self.n


def test_training_on_a_stream_learns(deblurring):
    problem, _, (y_test, x_test) = deblurring
    rim = make_rim(problem)
    stream = SimulatedStream(problem, 128)
    history = rim.fit(stream, epochs=12, learning_rate=3e-3, batch_size=16, progress=False,
                      validation_dataset=SimulatedStream(problem, 16))
    assert stream.epoch == 12 and len(history) == 12 and len(history.val_loss) == 12
    assert history[-1] < 0.5 * history[0], history
    err_rim, err_obs = mse(rim.predict(y_test), x_test), mse(y_test, x_test)
    err_adj = mse(problem.forward_model.adjoint(y_test), x_test)
    assert err_rim < 0.6 * err_obs and err_rim < 0.4 * err_adj, (err_rim, err_obs, err_adj)


def test_stream_options_and_errors(deblurring):
    problem, _, _ = deblurring
    rim = make_rim(problem)
    with pytest.raises(ValueError, match="validation_split needs a dataset with a length"):
        rim.fit(SimulatedStream(problem, 8), epochs=1, validation_split=0.1, progress=False)
    with pytest.raises(ValueError, match="scheduler='cosine' .* define __len__, set max_time"):
        rim.fit(SimulatedStream(problem, 8), epochs=1, scheduler="cosine", progress=False)
    with pytest.raises(ValueError, match="yielded no samples in epoch 1"):
        rim.fit(SimulatedStream(problem, 0), epochs=1, progress=False)
    # a bare Python generator is neither: say what to pass instead of "has no len()"
    with pytest.raises(TypeError, match="map-style Dataset .* or a torch.utils.data.IterableDataset, got generator"):
        rim.fit((s for s in SimulatedStream(problem, 8)), epochs=1, progress=False)
    # under torchrun every rank would see the whole stream: refused on every rank alike
    from invrim.training.fit import _check_streams
    for train, val in ((SimulatedStream(problem, 8), None), (torch.utils.data.TensorDataset(torch.zeros(2)),
                                                             SimulatedStream(problem, 8))):
        with pytest.raises(ValueError, match="cannot split an IterableDataset across torchrun"):
            _check_streams(train, val, 0.0, "constant", math.inf, world=2)
    # with __len__ the run's length is known: the cosine schedule reaches its minimum at the end
    history = rim.fit(SimulatedStreamWithLength(problem, 8), epochs=4, batch_size=4,
                      learning_rate=1e-3, scheduler="cosine", min_learning_rate=1e-5, progress=False)
    rates = [r["learning_rate"] for r in history.records]
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.1 * rates[0]


def test_learning_rate_schedule():
    from invrim.training.fit import _learning_rate
    assert _learning_rate(1.0, 0, 100, 10, "constant", 0) == pytest.approx(0.1)
    assert _learning_rate(1.0, 9, 100, 10, "constant", 0) == pytest.approx(1.0)
    assert _learning_rate(1.0, 50, 100, 0, "cosine", 0.1) == pytest.approx(0.55)
    assert _learning_rate(1.0, 100, 100, 0, "linear", 0.0) == pytest.approx(0.0)
    # with a time limit, the schedule follows whichever comes first: steps or time
    assert _learning_rate(1.0, 10, 1000, 0, "linear", 0.0, time_fraction=0.5) == pytest.approx(0.5)
    assert _learning_rate(1.0, 900, 1000, 0, "linear", 0.0, time_fraction=0.5) == pytest.approx(0.1)
    assert _learning_rate(1.0, 10, 1000, 0, "constant", 0.0, time_fraction=0.9) == pytest.approx(1.0)
    # a run of unknown length (a stream without __len__) follows the time limit alone
    assert _learning_rate(1.0, 10**6, None, 0, "linear", 0.0, time_fraction=0.25) == pytest.approx(0.75)


def test_bad_training_options(deblurring):
    problem, (y, x), _ = deblurring
    data = torch.utils.data.TensorDataset(y[:4], x[:4])
    rim = make_rim(problem)
    for kw, msg in [(dict(epochs=0), "epochs"), (dict(batch_size=0), "batch_size"),
                    (dict(learning_rate=-1), "learning_rate"), (dict(scheduler="exp"), "scheduler"),
                    (dict(validation_split=1.5), "validation_split"), (dict(ema_decay=2), "ema_decay")]:
        with pytest.raises(ValueError, match=msg):
            rim.fit(data, progress=False, **{"epochs": 1, **kw})
    with pytest.raises(ValueError, match="tuple \\(y, x, \\*args\\)"):
        rim.fit([torch.zeros(1)], epochs=1, progress=False)


KILL_SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_training import make_rim, smooth_images
    from invrim import Problem, Gaussian
    from invrim.physics import Blur
    from invrim.physics.blur import gaussian_psf
    problem = Problem(Blur(gaussian_psf(5, 1.2), boundary="periodic"), Gaussian(sigma=0.03))
    x = smooth_images(32, 0)
    y = problem.simulate(x, torch.Generator().manual_seed(1))
    rim = make_rim(problem)
    rim.fit(torch.utils.data.TensorDataset(y, x), epochs=int(sys.argv[2]), learning_rate=1e-3,
            batch_size=4, seed=0, progress=False, checkpoints_directory=sys.argv[1])
""")


def test_killed_training_leaves_a_loadable_folder_and_resumes(tmp_path, deblurring):
    problem = deblurring[0]
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent)))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    epochs = 40

    def finished_epochs():
        path = run / "metrics.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    for round_, pause in enumerate((0.0, 0.013, 0.029)):   # kill at several points of an epoch
        proc = subprocess.Popen([sys.executable, str(script), str(run), str(epochs)], env=env)
        target = finished_epochs() + 4
        deadline = time.monotonic() + 120
        while finished_epochs() < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(pause)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
        rim = RIM((SIZE, SIZE), checkpoints_directory=run, problem=problem)   # always loadable
        assert torch.isfinite(rim.predict(torch.rand(1, 1, SIZE, SIZE))).all()
    assert finished_epochs() < epochs
    assert subprocess.run([sys.executable, str(script), str(run), str(epochs)], env=env).returncode == 0
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == list(range(1, epochs + 1))
    assert not list(run.glob(".*.tmp"))


def test_fit_stores_the_tikhonov_baseline_only_for_file_backed_linear_data(tmp_path):
    import json

    from invrim import RIM
    from invrim.backbones import Hourglass
    from invrim.data import HDF5Dataset, simulate
    path = tmp_path / "d.h5"
    simulate(path, forward_model="blur", forward_model_config={"psf_sigma": 1.0}, generator="ellipses",
             generator_config={"shape": [12, 12]}, likelihood="gaussian", likelihood_config={"sigma": 0.05},
             samples=40, seed=0, progress=False)
    ds = HDF5Dataset(path)
    rim = RIM((12, 12), Hourglass(channels=1, dimensions=2, nf=4, hidden_units=4), problem=ds.problem, T=2)
    rim.fit(ds, epochs=1, progress=False, seed=0, run_dir=tmp_path / "run")
    choice = json.loads((tmp_path / "run" / "baselines.json").read_text())["tikhonov"]
    x = torch.stack([ds[i]["x"] for i in range(32)])
    assert choice["samples"] == 32 and f"{path} (the first 32 training samples)" == choice["source"]
    assert choice["damping"] > 0 and abs(choice["prior_mean"] - float(x.mean())) < 1e-5
    # an in-memory dataset is not read before training (its __getitem__ may draw random numbers)
    items = [ds[i] for i in range(8)]
    rim2 = RIM((12, 12), Hourglass(channels=1, dimensions=2, nf=4, hidden_units=4), problem=ds.problem, T=2)
    rim2.fit(items, epochs=1, progress=False, seed=0, run_dir=tmp_path / "run2")
    assert not (tmp_path / "run2" / "baselines.json").exists()


def test_the_default_start_becomes_tikhonov_on_a_linear_problem_once_fit_chose_its_damping(deblurring, tmp_path):
    from invrim.baselines import choose_tikhonov
    problem, (y, x), (y_test, x_test) = deblurring
    torch.manual_seed(0)
    net = Hourglass(1, dimensions=2, nf=8, ch_mult=(2,), hidden_units=16, num_layers=1)
    rim = RIM((SIZE, SIZE), net, problem=problem, T=4, standardize_score=True)     # initialization "auto"
    assert rim.start_method == "approximate_inverse" and rim.chooses_tikhonov_start
    untrained, _ = rim.initialization(y_test)                  # an untrained RIM predicts from the pseudo-inverse
    torch.testing.assert_close(untrained, problem.forward_model.pseudo_inverse(y_test))
    rim.fit(torch.utils.data.TensorDataset(y[:64], x[:64]), epochs=2, batch_size=16, seed=0, progress=False,
            run_dir=tmp_path / "run")
    expected = choose_tikhonov(problem.forward_model, [(y[:32], x[:32], {})], iterations=10, tol=0.0)
    assert rim.settings.initialization_method == "auto" and rim.start_method == "tikhonov"
    assert rim.settings.initialization_damping == pytest.approx(expected["damping"])
    x0, _ = rim.initialization(y_test)
    torch.testing.assert_close(x0, problem.forward_model.least_squares(
        y_test, damping=expected["damping"], prior_mean=expected["prior_mean"], iterations=10, tol=0.0))
    assert float(((x0 - x_test) ** 2).mean()) < float(((untrained - x_test) ** 2).mean())
    # the choice is saved with the run and reloads with it
    saved = json.loads((tmp_path / "run" / "model.json").read_text())["rim"]
    assert saved["initialization_damping"] == pytest.approx(expected["damping"])
    reloaded = RIM(checkpoints_directory=tmp_path / "run")
    assert reloaded.start_method == "tikhonov"
    torch.testing.assert_close(reloaded.predict(y_test), rim.predict(y_test))

    # resuming with a fresh RIM keeps the saved choice, even on other data (where a new one would differ)
    torch.manual_seed(0)
    fresh = RIM((SIZE, SIZE), Hourglass(1, dimensions=2, nf=8, ch_mult=(2,), hidden_units=16, num_layers=1),
                problem=problem, T=4, standardize_score=True)
    other = (torch.utils.data.TensorDataset(4 * y[64:128], 4 * x[64:128]))
    assert choose_tikhonov(problem.forward_model, [(4 * y[64:96], 4 * x[64:96], {})], iterations=10,
                           tol=0.0)["prior_mean"] != pytest.approx(expected["prior_mean"])
    fresh.fit(other, epochs=3, batch_size=16, seed=0, progress=False, run_dir=tmp_path / "run", resume=True)
    assert fresh.settings.initialization_damping == rim.settings.initialization_damping
    assert fresh.settings.initialization_prior_mean == rim.settings.initialization_prior_mean


def test_the_default_start_stays_the_pseudo_inverse_where_no_damping_can_be_chosen(deblurring):
    problem, (y, x), _ = deblurring

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(zip(y[:32], x[:32]))
    torch.manual_seed(0)
    rim = RIM((SIZE, SIZE), Hourglass(1, dimensions=2, nf=8, ch_mult=(2,), hidden_units=16, num_layers=1),
              problem=problem, T=2)
    rim.fit(Stream(), epochs=1, batch_size=16, seed=0, progress=False)      # no error: it keeps its start
    assert rim.start_method == "approximate_inverse" and rim.settings.initialization_damping is None
    explicit = RIM((SIZE, SIZE), Hourglass(1, dimensions=2, nf=8, ch_mult=(2,), hidden_units=16, num_layers=1),
                   problem=problem, T=2, initialization_method="tikhonov")
    with pytest.raises(ValueError, match="streamed dataset"):
        explicit.fit(Stream(), epochs=1, batch_size=16, seed=0, progress=False)
    # a score_fn script has no forward model: torch-rim's zero start, or its approximate inverse
    scripted = RIM((SIZE, SIZE), Hourglass(1, dimensions=2, nf=8, hidden_units=8), score_fn=lambda x, y: y - x)
    assert scripted.start_method == "zeros" and not scripted.chooses_tikhonov_start
    scripted = RIM((SIZE, SIZE), Hourglass(1, dimensions=2, nf=8, hidden_units=8), score_fn=lambda x, y: y - x,
                   approximate_inverse_fn=lambda y: y)
    assert scripted.start_method == "approximate_inverse"


def test_choosing_the_start_leaves_the_random_number_generators_as_they_were(deblurring):
    import random

    import numpy as np

    from invrim.training.fit import _choose_initialization
    problem, (y, x), _ = deblurring

    class Drawing(torch.utils.data.Dataset):                 # a dataset that draws its noise when read
        def __len__(self):
            return 64

        def __getitem__(self, i):
            return y[i] + 0.01 * torch.randn(()) + 0.0 * np.random.rand() + 0.0 * random.random(), x[i]
    rim = RIM((SIZE, SIZE), Hourglass(1, dimensions=2, nf=8, hidden_units=8), problem=problem, T=2)
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    _choose_initialization(rim, Drawing(), torch.device("cpu"))
    assert rim.start_method == "tikhonov"
    after = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    assert torch.equal(after[0], torch.rand(3)) and np.array_equal(after[1], np.random.rand(3))
    assert after[2] == random.random()


def test_a_forward_model_can_ask_auto_for_its_pseudo_inverse_start(deblurring):
    """CT's FBP trains better than the Tikhonov start at a few minutes: its ``auto_start`` says so,
    and ``fit`` then keeps the pseudo-inverse start (an explicit ``"tikhonov"`` still gets it)."""
    import copy
    problem, (y, x), _ = deblurring
    fbp_like = copy.deepcopy(problem)
    fbp_like.forward_model.auto_start = "pseudo_inverse"         # an instance attribute, as a subclass would set
    torch.manual_seed(0)
    rim = RIM((SIZE, SIZE), Hourglass(1, dimensions=2, nf=8, hidden_units=8), problem=fbp_like, T=2)
    assert not rim.chooses_tikhonov_start
    rim.fit(torch.utils.data.TensorDataset(y[:32], x[:32]), epochs=1, batch_size=16, seed=0, progress=False)
    assert rim.start_method == "approximate_inverse" and rim.settings.initialization_damping is None
    explicit = RIM((SIZE, SIZE), Hourglass(1, dimensions=2, nf=8, hidden_units=8), problem=fbp_like, T=2,
                   initialization_method="tikhonov")
    explicit.fit(torch.utils.data.TensorDataset(y[:32], x[:32]), epochs=1, batch_size=16, seed=0, progress=False)
    assert explicit.start_method == "tikhonov" and explicit.settings.initialization_damping is not None
    fbp_like.forward_model.auto_start = "fbp"
    from invrim.plugins.testing import check_auto_start
    with pytest.raises(AssertionError, match="auto_start must be"):
        check_auto_start(fbp_like.forward_model)
    with pytest.raises(ValueError, match=r"auto_start must be 'tikhonov' or 'pseudo_inverse', got 'fbp'"):
        RIM((SIZE, SIZE), Hourglass(1, dimensions=2, nf=8, hidden_units=8), problem=fbp_like, T=2)


def test_the_shipped_ct_radio_and_lensing_models_start_from_their_pseudo_inverse():
    ct = pytest.importorskip("invrim_ct.physics")
    radio = pytest.importorskip("invrim_radio.physics")
    lensing = pytest.importorskip("invrim_lensing.physics")
    assert ct.ParallelBeamCT.auto_start == "pseudo_inverse"
    assert radio.RadioInterferometry.auto_start == "pseudo_inverse"
    assert lensing.SIELensing.auto_start == "pseudo_inverse"
    from invrim.physics import Blur
    assert Blur.auto_start == "tikhonov"


def test_the_default_T_is_six_and_the_torch_rim_settings_restore_ten(deblurring):
    import invrim.compat
    from invrim.config import RIMConfig
    problem, _, (y_test, _) = deblurring
    net = Hourglass(1, dimensions=2, nf=8, hidden_units=8)
    assert RIMConfig().T == 6
    rim = RIM((SIZE, SIZE), net, problem=problem)
    assert rim.T == 6 and len(rim(y_test[:2])) == 6
    torch_rim_like = RIM((SIZE, SIZE), net, problem=problem, **invrim.compat.TORCH_RIM_SETTINGS)
    assert torch_rim_like.T == 10 and torch_rim_like.start_method == "zeros"
    assert not torch_rim_like.chooses_tikhonov_start


SMALL_BACKBONES = {
    "Hourglass": lambda scale: Hourglass(1, dimensions=2, nf=8, ch_mult=(2,), hidden_units=16, num_layers=1,
                                         output_scale=scale),
    "UNet": lambda scale: UNet(1, dimensions=2, nf=8, ch_mult=(1, 2), output_scale=scale),
    "RIMCell": lambda scale: RIMCell(1, dimensions=2, hidden_channels=16, output_scale=scale),
}


@pytest.mark.parametrize("backbone", list(SMALL_BACKBONES))
def test_an_untrained_rim_stays_near_its_start(deblurring, backbone):
    """output_scale=0.1 (every convolutional backbone's default): the untrained RIM's T updates move
    its estimate about a tenth as far from the initial estimate as PyTorch's initialisation
    (output_scale=1, torch-rim's) does, from the same random draws, and its error stays close to the
    start's; a bad output_scale is refused."""
    problem, _, (y, x) = deblurring
    y, x = y[:8], x[:8]
    moved, errors = {}, {}
    for scale in (0.1, 1.0):
        torch.manual_seed(0)
        net = SMALL_BACKBONES[backbone](scale)
        rim = RIM((SIZE, SIZE), net, problem=problem, T=4, initialization_method="approximate_inverse")
        with torch.no_grad():
            trajectory = rim(y)
        moved[scale] = float((trajectory[-1] - trajectory[0]).norm())
        errors[scale] = mse(trajectory[-1], x) / mse(trajectory[0], x)
    assert 0.05 < moved[0.1] / moved[1.0] < 0.2, moved
    assert errors[0.1] < 1.5 and errors[0.1] < errors[1.0], errors
    cls = type(SMALL_BACKBONES[backbone](0.1))
    assert cls(1, dimensions=2).output_scale == 0.1
    with pytest.raises(ValueError, match="output_scale must be a non-negative number, got -1"):
        cls(1, dimensions=2, output_scale=-1)
