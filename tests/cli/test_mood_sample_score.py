"""``picard-ad mood --task sample`` with a method's own sample score (an untrained tiny vae: the maximum over slices
of each slice's L_KL + L_rec) and without one (the slice maps' 0.99 quantiles, as before)."""

import json

import numpy as np
import pytest
import torch
from mood_cases import mood, write_cases

from picard_ad.methods import create_method, load_method


@pytest.fixture()
def cases(tmp_path):
    return write_cases(tmp_path / "in")


def read_scores(folder):
    return {p.name: float(p.read_text()) for p in folder.glob("*.txt")}


def write_untrained_vae_run(run_dir, seed: int = 0):
    """A vae run folder holding an untrained network of the tiny preset (no training: a checkpoint written by hand)."""
    import dataclasses

    from picard_ad.methods.vae import VAE, VAETraining
    from picard_ad.methods.vae.training import NETWORK
    from picard_ad.training.checkpoint import write_checkpoint
    from picard_ad.training.loop import checkpoint_info

    config = dataclasses.replace(VAE.preset("tiny"), device="cpu")
    torch.manual_seed(seed)
    write_checkpoint(run_dir / "best", {NETWORK: VAETraining.build(config)}, checkpoint_info("vae", config, 0, None))
    method = VAE(config)
    method.read_state(run_dir)
    method.fitted = True
    return method.save(run_dir)


def negative_elbo_by_hand(run_dir, path) -> list[float]:
    """L_KL + L_rec of every slice of a volume (axis 2), from the saved network's closed forms (Gaussian, c = 1)."""
    from picard_ad.io import iter_slices
    from picard_ad.methods.vae import fit_to_input, normalise

    method = load_method(run_dir)
    config = method.train_config
    assert (config.likelihood, config.scale) == ("gaussian", 1.0)
    values = []
    for image in iter_slices(path, axis=2):
        pixels = fit_to_input(image.pixels, config.input_size)
        x = torch.from_numpy(normalise(pixels, config.preprocessing()))[None, None]
        with torch.no_grad():
            mean, log_sigma = method.network.encode(x)
            kl = 0.5 * (mean**2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum()
            rec = ((x - method.network.decode(mean)) ** 2 / 2 + 0.5 * np.log(2 * np.pi)).sum()
        values.append(float(kl + rec))
    return values


def raw_sample_scores(folder, center: float, scale: float) -> dict[str, float]:
    """The raw sample scores behind a sample-task output folder: its logistic inverted."""
    return {name: center + scale * float(np.log(p / (1 - p))) for name, p in read_scores(folder).items()}


def test_the_sample_task_takes_the_methods_own_score_max_over_slices(cases, tmp_path):
    from picard_ad.data.tissue import tissue_mask
    from picard_ad.io import iter_slices
    from picard_ad.jobs.mood import SLICE_QUANTILE

    run_dir = write_untrained_vae_run(tmp_path / "vae")
    by_hand = {path.name: negative_elbo_by_hand(run_dir, path) for path in sorted(cases.glob("*.nii*"))}
    assert all(len(set(values)) > 1 for name, values in by_hand.items() if name != "flat.nii")  # the max matters
    center = float(np.mean([max(values) for values in by_hand.values()]))
    out = tmp_path / "own"
    result = mood(cases, out, "--model", run_dir, "--task", "sample", "--center", center, "--scale", 1000.0)
    assert result.exit_code == 0, result.output
    assert "maximum over slices of vae's own kl+rec" in result.output
    written = raw_sample_scores(out, center, 1000.0)
    assert written.keys() == {f"{name}.txt" for name in by_hand}
    for name, values in by_hand.items():
        assert written[f"{name}.txt"] == pytest.approx(max(values), rel=1e-5, abs=1e-3), name

    # Without its own score (brightness; vae with sample_score map) the old rule holds: the maximum over slices
    # of each slice map's 0.99 quantile over tissue.
    for args, score_map in [(("--method", "brightness"), create_method("brightness").score_map),
                            (("--model", run_dir, "--sample-score", "map", "--gradient", "vanilla"),
                             load_method(run_dir, sample_score="map", gradient="vanilla").score_map)]:
        out = tmp_path / f"map_{args[0]}"
        result = mood(cases, out, *args, "--task", "sample", "--center", 0.5, "--scale", 0.05)
        assert result.exit_code == 0, result.output
        written = raw_sample_scores(out, 0.5, 0.05)
        for path in sorted(cases.glob("*.nii*")):
            quantiles = []
            for image in iter_slices(path, axis=2):
                scores, tissue = score_map(image.pixels), tissue_mask(image.pixels)
                quantiles.append(np.quantile(scores[tissue] if tissue.any() else scores, SLICE_QUANTILE))
            assert written[f"{path.name}.txt"] == pytest.approx(max(quantiles), rel=1e-6, abs=1e-6), (args, path)


def test_a_calibration_of_map_quantiles_is_refused_for_the_own_sample_score(cases, tmp_path):
    run_dir = write_untrained_vae_run(tmp_path / "vae")
    first = mood(cases, tmp_path / "a", "--model", run_dir, "--task", "sample", "--calibrate", cases)
    assert first.exit_code == 0, first.output
    calibration = json.loads((tmp_path / "a" / "calibration.json").read_text())
    assert calibration["method"]["mood_sample_score"] == "kl+rec"
    elbos = [max(negative_elbo_by_hand(run_dir, path)) for path in sorted(cases.glob("*.nii*"))]
    assert calibration["quantiles"]["0.999"] == pytest.approx(np.quantile(elbos, 0.999), rel=1e-5)
    other = mood(cases, tmp_path / "b", "--model", run_dir, "--task", "sample", "--sample-score", "map",
                 "--gradient", "vanilla", "--calibration", tmp_path / "a" / "calibration.json")  # fmt: skip
    assert other.exit_code == 2 and "made for another method or model" in other.output


@pytest.mark.parametrize("name, own", [("vae", "kl+rec"), ("cevae", "kl+rec"), ("pchvae", "kl+rec"), ("dae", "rec"),
                                       ("cradl", "nll"), ("brightness", None)])  # fmt: skip
def test_which_methods_have_their_own_sample_score(name, own):
    from picard_ad.jobs.mood import slice_sample_score

    method = create_method(name)
    assert method.sample_score_name() == own
    assert (slice_sample_score(method, "sample") is None) == (own is None)
    assert slice_sample_score(method, "pixel") is None
    if own is not None:
        assert create_method(name, settings={"sample_score": "map"}).sample_score_name() is None
