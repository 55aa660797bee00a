"""musicgen.audioldm.schedulers against ppdiffusers' own schedulers, run side by side on the same inputs.

A full loop per case: the same initial sample and the same random "model outputs" go through both; timesteps,
init_noise_sigma, every scaled model input and every step's prev_sample are compared (1e-6 of the sample's
scale). Configs: the exported tiny model's, the real cvssp/audioldm DDIM (export/audioldm/presets.py), and
variants over every option the port honours.
"""
import json

import numpy as np
import paddle
import ppdiffusers
import pytest

from export.audioldm.presets import AUDIOLDM_S, TINY
from musicgen.audioldm.schedulers import (
    SUPPORTED_SCHEDULERS, DDIMScheduler, SchedulerConfigError, load_scheduler, scheduler_class_name,
)

STEPS = [1, 2, 10, 20, 50]
TOLERANCE = 1e-6
# Two cases where paddle rounds a whole-schedule vector op in a way numpy cannot reproduce bit for bit:
# - rescale_betas_zero_snr takes paddle.sqrt of the schedule: Eigen's fast sqrt (rsqrt estimate + one Newton
#   step, CPU-dependent), about half its results 1 ulp off; a 50-step loop drifts to ~1.3e-6;
# - DPM-Solver's sigmas come from `tensor ** 0.5` (Eigen's vector pow: 37 of 1000 training sigmas 1 ulp off a
#   correctly rounded sqrt); the third-order update's (e^-h - 1 + h) / h^2 magnifies that ulp when h is small:
#   up to 2.6e-6 in a single step at 50 steps (1e-6 holds for orders 1 and 2).
LOOSE_TOLERANCE = 5e-6
SHAPE = (2, 8, 16, 16)

AUDIOLDM_DDIM = {"_class_name": "DDIMScheduler", **AUDIOLDM_S["scheduler"]}
DDIM_CASES = {
    "audioldm": AUDIOLDM_DDIM,
    "audioldm-offset1": {**AUDIOLDM_DDIM, "steps_offset": 1},
    "tiny-preset": {"_class_name": "DDIMScheduler", **TINY["scheduler"]},
    "defaults": {"_class_name": "DDIMScheduler"},
    "linear-clip-alpha1": {"_class_name": "DDIMScheduler", "beta_schedule": "linear", "clip_sample": True,
                           "clip_sample_range": 0.5, "set_alpha_to_one": True},
    "cosine-v-trailing-zsnr": {"_class_name": "DDIMScheduler", "beta_schedule": "squaredcos_cap_v2",
                               "prediction_type": "v_prediction", "timestep_spacing": "trailing",
                               "rescale_betas_zero_snr": True, "clip_sample": False},
    "sample-linspace": {"_class_name": "DDIMScheduler", "prediction_type": "sample", "timestep_spacing": "linspace",
                        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    "trained-betas": {"_class_name": "DDIMScheduler", "num_train_timesteps": 100, "clip_sample": False,
                      "trained_betas": np.linspace(1e-4, 0.05, 100).tolist()},
}


OTHER_BASE = {k: v for k, v in AUDIOLDM_S["scheduler"].items() if k not in ("clip_sample",)}
OTHER_CASES = {
    "pndm-audioldm": {"_class_name": "PNDMScheduler", **OTHER_BASE},
    "pndm-sd-skip-prk": {"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                         "beta_end": 0.012, "skip_prk_steps": True, "steps_offset": 1, "set_alpha_to_one": False},
    "pndm-linspace-v": {"_class_name": "PNDMScheduler", "timestep_spacing": "linspace",
                        "prediction_type": "v_prediction", "set_alpha_to_one": True},
    "pndm-trailing-cosine": {"_class_name": "PNDMScheduler", "timestep_spacing": "trailing",
                             "beta_schedule": "squaredcos_cap_v2", "skip_prk_steps": True},
    "lms-audioldm": {"_class_name": "LMSDiscreteScheduler", **OTHER_BASE},
    "lms-sd-leading": {"_class_name": "LMSDiscreteScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                       "beta_end": 0.012, "timestep_spacing": "leading", "steps_offset": 1},
    "lms-trailing-v": {"_class_name": "LMSDiscreteScheduler", "timestep_spacing": "trailing",
                       "prediction_type": "v_prediction"},
    "dpm-audioldm": {"_class_name": "DPMSolverMultistepScheduler", **OTHER_BASE},
    "dpm3-heun-leading": {"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3, "solver_type": "heun",
                          "timestep_spacing": "leading", "steps_offset": 1, "beta_schedule": "scaled_linear",
                          "beta_start": 0.00085, "beta_end": 0.012},
    "dpm3-plain-v-trailing": {"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3,
                              "algorithm_type": "dpmsolver", "prediction_type": "v_prediction",
                              "timestep_spacing": "trailing", "lower_order_final": False},
    "dpm-plain-heun-sample": {"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver",
                              "solver_type": "heun", "prediction_type": "sample", "euler_at_final": True},
    "dpm-cosine-clipped-deis": {"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "squaredcos_cap_v2",
                                "lambda_min_clipped": -5.1, "algorithm_type": "deis", "solver_type": "bh2"},
    "dpm1": {"_class_name": "DPMSolverMultistepScheduler", "solver_order": 1},
    "euler-audioldm": {"_class_name": "EulerDiscreteScheduler", **OTHER_BASE},
    "euler-sd-leading": {"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear",
                         "beta_start": 0.00085, "beta_end": 0.012, "timestep_spacing": "leading", "steps_offset": 1},
    "euler-trailing-v": {"_class_name": "EulerDiscreteScheduler", "timestep_spacing": "trailing",
                         "prediction_type": "v_prediction"},
    "euler-sample": {"_class_name": "EulerDiscreteScheduler", "prediction_type": "sample"},
}


def reference(config):
    return getattr(ppdiffusers, config["_class_name"]).from_config(dict(config))


def step_kwargs(ref):
    return {"eta": 0.0} if config_name(ref) == "DDIMScheduler" else {}


def config_name(ref):
    return type(ref).__name__


def assert_close(ours, ref, what, tolerance=TOLERANCE):
    ref = np.asarray(ref)
    assert ours.dtype == np.float32 and ours.shape == ref.shape, what
    err = np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30)
    assert err <= tolerance, f"{what}: relative error {err:.3g}"


def run_side_by_side(config, steps, seed=0):
    third_order_dpm = config["_class_name"] == "DPMSolverMultistepScheduler" and config.get("solver_order") == 3
    tolerance = LOOSE_TOLERANCE if config.get("rescale_betas_zero_snr") or third_order_dpm else TOLERANCE
    ours, ref = load_scheduler(config), reference(config)
    ours.set_timesteps(steps)
    ref.set_timesteps(steps)
    np.testing.assert_array_equal(ours.timesteps, ref.timesteps.numpy())
    assert ours.init_noise_sigma == pytest.approx(float(ref.init_noise_sigma), rel=1e-6)

    rng = np.random.default_rng(seed)
    sample = (rng.standard_normal(SHAPE) * float(ref.init_noise_sigma)).astype(np.float32)
    ref_sample = paddle.to_tensor(sample)
    for i, t in enumerate(ref.timesteps):
        model_output = rng.standard_normal(SHAPE).astype(np.float32)
        ours_in = ours.scale_model_input(sample, ours.timesteps[i])
        ref_in = ref.scale_model_input(ref_sample, t)
        assert_close(ours_in, ref_in.numpy(), f"step {i} (t={int(t)}) scaled input", tolerance)
        sample = ours.step(model_output, ours.timesteps[i], sample)
        ref_sample = ref.step(paddle.to_tensor(model_output), t, ref_sample, **step_kwargs(ref)).prev_sample
        assert_close(sample, ref_sample.numpy(), f"step {i} (t={int(t)}) prev_sample", tolerance)


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("case", DDIM_CASES)
def test_ddim_matches_ppdiffusers(case, steps):
    run_side_by_side(DDIM_CASES[case], steps)


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("case", OTHER_CASES)
def test_other_schedulers_match_ppdiffusers(case, steps):
    config = OTHER_CASES[case]
    if config["_class_name"] == "PNDMScheduler" and not config.get("skip_prk_steps") and steps < 4:
        with pytest.raises(ValueError):  # ppdiffusers' own fails on a broadcast; ours says why
            reference(config).set_timesteps(steps)
        with pytest.raises(ValueError, match="Runge-Kutta"):
            load_scheduler(config).set_timesteps(steps)
        return
    run_side_by_side(config, steps)


def test_exported_scheduler_folder(tmp_path):
    folder = tmp_path / "scheduler"
    reference(AUDIOLDM_DDIM).save_pretrained(str(folder))  # what export copies beside text2music
    assert scheduler_class_name(folder) == "DDIMScheduler"
    scheduler = load_scheduler(folder)
    assert isinstance(scheduler, DDIMScheduler)
    run_side_by_side(json.loads((folder / "scheduler_config.json").read_text()), 20)


def test_each_scheduler_is_independent():
    a, b = load_scheduler(AUDIOLDM_DDIM), load_scheduler(AUDIOLDM_DDIM)
    a.set_timesteps(10)
    b.set_timesteps(3)
    assert len(a.timesteps) == 10 and len(b.timesteps) == 3


def test_unported_scheduler_is_refused_naming_the_supported():
    with pytest.raises(SchedulerConfigError) as err:
        load_scheduler({"_class_name": "EulerAncestralDiscreteScheduler"})
    assert "EulerAncestralDiscreteScheduler" in str(err.value)
    assert all(name in str(err.value) for name in SUPPORTED_SCHEDULERS)
    with pytest.raises(SchedulerConfigError, match="None"):
        load_scheduler({"beta_schedule": "linear"})  # no _class_name at all


@pytest.mark.parametrize("option, value", [
    ("thresholding", True), ("prediction_type", "flow"), ("timestep_spacing", "karras"),
    ("beta_schedule", "sigmoid"),
])
def test_unported_option_is_refused(option, value):
    with pytest.raises(SchedulerConfigError, match=f"{option}={value!r}.*supported"):
        load_scheduler({**AUDIOLDM_DDIM, option: value})


def test_step_before_set_timesteps_and_bad_step_counts_are_refused():
    scheduler = load_scheduler(AUDIOLDM_DDIM)
    x = np.zeros(SHAPE, np.float32)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(x, 999, x)
    for steps in (0, 1001):
        with pytest.raises(ValueError, match="num_inference_steps"):
            scheduler.set_timesteps(steps)
