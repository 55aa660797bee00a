"""numpy ports of ppdiffusers' (0.29) diffusion schedulers, read from an exported `scheduler_config.json`.

One object per request, stateful as in (pp)diffusers: `set_timesteps(n)`, then for each `t` in `.timesteps`:
`scale_model_input(sample, t)` → the model → `step(model_output, t, sample)` → the next sample. Arithmetic is
float32 in ppdiffusers' order, so every step matches its scheduler to float32 rounding (the tests check 1e-6).

Ported: DDIMScheduler (AudioLDM's; eta = 0), PNDMScheduler, LMSDiscreteScheduler, EulerDiscreteScheduler (no
churn), DPMSolverMultistepScheduler ("dpmsolver++"/"dpmsolver"). Only deterministic steps are ported: a
scheduler whose step adds noise (ancestral, SDE) is refused.
Every `__init__` option of ppdiffusers' class is either honoured or, for a value that was not ported, refused
at load with the values that are; keys the class itself does not take are ignored, as ppdiffusers does.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Mapping, Union

import numpy as np

from .libm import expf, logf, powf

CONFIG_FILE = "scheduler_config.json"
_F32 = np.float32


class SchedulerConfigError(ValueError):
    """A scheduler config this package cannot reproduce."""


# --- noise schedules (ppdiffusers' arithmetic: float32 betas, float32 cumulative product) --------------------
def _linspace_f32(start: float, stop: float, num: int) -> np.ndarray:
    """paddle.linspace(..., dtype=float32) on CPU: float32 ends, a double step, each half counted from its end."""
    start, stop = _F32(start), _F32(stop)
    if num == 1:
        return np.array([start], dtype=_F32)
    step = float(_F32(stop - start)) / (num - 1)
    i = np.arange(num)
    values = np.where(i < num // 2, float(start) + step * i, float(stop) - step * (num - 1 - i))
    return values.astype(_F32)


def _alpha_bar_betas(num_train_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """The "squaredcos_cap_v2" schedule (betas_for_alpha_bar with the cosine transform), in double then float32."""
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)], dtype=_F32)


def _rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    alphas_bar_sqrt = np.sqrt(np.cumprod(_F32(1) - betas, dtype=_F32))
    first, last = alphas_bar_sqrt[0].copy(), alphas_bar_sqrt[-1].copy()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last))
    alphas_bar = alphas_bar_sqrt ** 2
    alphas = np.concatenate([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return (_F32(1) - alphas).astype(_F32)


def _betas(config: Mapping) -> np.ndarray:
    n = config["num_train_timesteps"]
    if config["trained_betas"] is not None:
        betas = np.asarray(config["trained_betas"], dtype=_F32)
    elif config["beta_schedule"] == "linear":
        betas = _linspace_f32(config["beta_start"], config["beta_end"], n)
    elif config["beta_schedule"] == "scaled_linear":
        betas = _linspace_f32(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, n) ** 2
    else:  # "squaredcos_cap_v2", the values were checked at load
        betas = _alpha_bar_betas(n)
    if config.get("rescale_betas_zero_snr"):
        betas = _rescale_zero_terminal_snr(betas)
    return betas


# --- config reading ------------------------------------------------------------------------------------------
def _alphas_cumprod(config: Mapping):
    """The cumulative alphas of the training schedule, and the one DDIM and PNDM step to past the last timestep."""
    alphas_cumprod = np.cumprod(_F32(1) - _betas(config), dtype=_F32)
    return alphas_cumprod, _F32(1) if config["set_alpha_to_one"] else alphas_cumprod[0]


def _read_options(name: str, defaults: Mapping, supported: Mapping, config: Mapping) -> Dict:
    """ppdiffusers' defaults overlaid with the config; a value outside `supported` (option → allowed values) is
    refused, naming what is ported."""
    options = {key: config.get(key, default) for key, default in defaults.items()}
    for key, allowed in supported.items():
        if options[key] not in allowed:
            raise SchedulerConfigError(
                f"{name}: {key}={options[key]!r} is not supported by the numpy port; supported: "
                f"{', '.join(map(repr, allowed))}"
            )
    return options


_BETA_OPTIONS = {
    "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
    "trained_betas": None,
}
_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


class DDIMScheduler:
    """ppdiffusers.DDIMScheduler, deterministic (eta = 0), without dynamic thresholding."""

    DEFAULTS = {
        **_BETA_OPTIONS, "clip_sample": True, "set_alpha_to_one": True, "steps_offset": 0,
        "prediction_type": "epsilon", "thresholding": False, "dynamic_thresholding_ratio": 0.995,
        "clip_sample_range": 1.0, "sample_max_value": 1.0, "timestep_spacing": "leading",
        "rescale_betas_zero_snr": False,
    }
    SUPPORTED = {
        "beta_schedule": _BETA_SCHEDULES,
        "prediction_type": ("epsilon", "sample", "v_prediction"),
        "thresholding": (False,),
        "timestep_spacing": ("linspace", "leading", "trailing"),
    }
    init_noise_sigma = 1.0

    def __init__(self, config: Mapping):
        self.config = _read_options(type(self).__name__, self.DEFAULTS, self.SUPPORTED, config)
        self.alphas_cumprod, self.final_alpha_cumprod = _alphas_cumprod(self.config)
        self.num_inference_steps = None
        self.timesteps = np.arange(self.config["num_train_timesteps"])[::-1].astype(np.int64)

    def set_timesteps(self, num_inference_steps: int) -> None:
        train = self.config["num_train_timesteps"]
        if not 1 <= num_inference_steps <= train:
            raise ValueError(f"num_inference_steps: {num_inference_steps} is out of range: allowed 1 to {train}")
        self.num_inference_steps = num_inference_steps
        spacing = self.config["timestep_spacing"]
        if spacing == "linspace":
            timesteps = np.linspace(0, train - 1, num_inference_steps).round()[::-1].astype(np.int64)
        elif spacing == "leading":
            timesteps = (np.arange(num_inference_steps) * (train // num_inference_steps))[::-1].astype(np.int64)
            timesteps += self.config["steps_offset"]
        else:  # trailing
            timesteps = np.round(np.arange(train, 0, -train / num_inference_steps)).astype(np.int64) - 1
        self.timesteps = timesteps

    def scale_model_input(self, sample: np.ndarray, timestep=None) -> np.ndarray:
        return sample

    def step(self, model_output: np.ndarray, timestep, sample: np.ndarray) -> np.ndarray:
        if self.num_inference_steps is None:
            raise ValueError("set_timesteps must be called before step")
        cfg = self.config
        timestep = int(timestep)
        # ppdiffusers steps back by train // steps whatever the spacing: kept, so the results are its.
        prev_timestep = timestep - cfg["num_train_timesteps"] // self.num_inference_steps
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        beta_prod_t = _F32(1) - alpha_prod_t
        sqrt_alpha, sqrt_beta = np.sqrt(alpha_prod_t), np.sqrt(beta_prod_t)

        if cfg["prediction_type"] == "epsilon":
            pred_original_sample = (sample - sqrt_beta * model_output) / sqrt_alpha
            pred_epsilon = model_output
        elif cfg["prediction_type"] == "sample":
            pred_original_sample = model_output
            pred_epsilon = (sample - sqrt_alpha * pred_original_sample) / sqrt_beta
        else:  # v_prediction
            pred_original_sample = sqrt_alpha * sample - sqrt_beta * model_output
            pred_epsilon = sqrt_alpha * model_output + sqrt_beta * sample
        if cfg["clip_sample"]:
            limit = _F32(cfg["clip_sample_range"])
            pred_original_sample = np.clip(pred_original_sample, -limit, limit)

        direction = np.sqrt(_F32(1) - alpha_prod_t_prev) * pred_epsilon  # eta = 0: no variance term
        return (np.sqrt(alpha_prod_t_prev) * pred_original_sample + direction).astype(_F32)


class PNDMScheduler:
    """ppdiffusers.PNDMScheduler: Runge-Kutta warm-up steps (unless skip_prk_steps), then linear multistep."""

    DEFAULTS = {
        **_BETA_OPTIONS, "skip_prk_steps": False, "set_alpha_to_one": False, "prediction_type": "epsilon",
        "timestep_spacing": "leading", "steps_offset": 0,
    }
    SUPPORTED = {
        "beta_schedule": _BETA_SCHEDULES,
        "prediction_type": ("epsilon", "v_prediction"),
        "timestep_spacing": ("linspace", "leading", "trailing"),
    }
    init_noise_sigma = 1.0
    _ORDER = 4

    def __init__(self, config: Mapping):
        self.config = _read_options(type(self).__name__, self.DEFAULTS, self.SUPPORTED, config)
        self.alphas_cumprod, self.final_alpha_cumprod = _alphas_cumprod(self.config)
        self.num_inference_steps = None
        self.timesteps = None

    def set_timesteps(self, num_inference_steps: int) -> None:
        cfg, train = self.config, self.config["num_train_timesteps"]
        if not 1 <= num_inference_steps <= train:
            raise ValueError(f"num_inference_steps: {num_inference_steps} is out of range: allowed 1 to {train}")
        self.num_inference_steps = num_inference_steps
        if cfg["timestep_spacing"] == "linspace":
            base = np.linspace(0, train - 1, num_inference_steps).round().astype(np.int64)
        elif cfg["timestep_spacing"] == "leading":
            base = np.arange(num_inference_steps) * (train // num_inference_steps) + cfg["steps_offset"]
        else:  # trailing
            base = np.round(np.arange(train, 0, -train / num_inference_steps))[::-1].astype(np.int64) - 1
        if not cfg["skip_prk_steps"] and num_inference_steps < self._ORDER:
            # ppdiffusers fails here too (a numpy broadcasting error): say why instead.
            raise ValueError(f"num_inference_steps: {num_inference_steps} is too few for PNDM's Runge-Kutta warm-up: "
                             f"allowed {self._ORDER} or more (or set skip_prk_steps)")
        if cfg["skip_prk_steps"]:
            self.prk_timesteps = np.array([], dtype=np.int64)
            self.plms_timesteps = np.concatenate([base[:-1], base[-2:-1], base[-1:]])[::-1]
        else:
            half_step = train // num_inference_steps // 2
            prk = np.array(base[-self._ORDER:]).repeat(2) + np.tile(np.array([0, half_step]), self._ORDER)
            self.prk_timesteps = prk[:-1].repeat(2)[1:-1][::-1]
            self.plms_timesteps = base[:-3][::-1]
        self.timesteps = np.concatenate([self.prk_timesteps, self.plms_timesteps]).astype(np.int64)
        self.ets, self.counter, self.cur_model_output, self.cur_sample = [], 0, 0, None

    def scale_model_input(self, sample: np.ndarray, timestep=None) -> np.ndarray:
        return sample

    def step(self, model_output: np.ndarray, timestep, sample: np.ndarray) -> np.ndarray:
        if self.num_inference_steps is None:
            raise ValueError("set_timesteps must be called before step")
        if self.counter < len(self.prk_timesteps) and not self.config["skip_prk_steps"]:
            return self._step_prk(model_output, int(timestep), sample)
        return self._step_plms(model_output, int(timestep), sample)

    def _step_prk(self, model_output, timestep, sample):
        train = self.config["num_train_timesteps"]
        prev_timestep = timestep - (0 if self.counter % 2 else train // self.num_inference_steps // 2)
        timestep = self.prk_timesteps[self.counter // 4 * 4]
        phase = self.counter % 4
        if phase == 0:
            self.cur_model_output = self.cur_model_output + _F32(1 / 6) * model_output
            self.ets.append(model_output)
            self.cur_sample = sample
        elif phase in (1, 2):
            self.cur_model_output = self.cur_model_output + _F32(1 / 3) * model_output
        else:
            model_output = self.cur_model_output + _F32(1 / 6) * model_output
            self.cur_model_output = 0
        cur_sample = self.cur_sample if self.cur_sample is not None else sample
        self.counter += 1
        return self._prev_sample(cur_sample, timestep, prev_timestep, model_output)

    def _step_plms(self, model_output, timestep, sample):
        if not self.config["skip_prk_steps"] and len(self.ets) < 3:
            raise ValueError("PNDM's linear multistep needs the Runge-Kutta warm-up first (12 steps)")
        stride = self.config["num_train_timesteps"] // self.num_inference_steps
        prev_timestep = timestep - stride
        if self.counter != 1:
            self.ets = self.ets[-3:] + [model_output]
        else:
            prev_timestep, timestep = timestep, timestep + stride
        ets = self.ets
        if len(ets) == 1 and self.counter == 0:
            self.cur_sample = sample
        elif len(ets) == 1 and self.counter == 1:
            model_output = (model_output + ets[-1]) / _F32(2)
            sample, self.cur_sample = self.cur_sample, None
        elif len(ets) == 2:
            model_output = (_F32(3) * ets[-1] - ets[-2]) / _F32(2)
        elif len(ets) == 3:
            model_output = (_F32(23) * ets[-1] - _F32(16) * ets[-2] + _F32(5) * ets[-3]) / _F32(12)
        else:
            model_output = _F32(1 / 24) * (
                _F32(55) * ets[-1] - _F32(59) * ets[-2] + _F32(37) * ets[-3] - _F32(9) * ets[-4])
        self.counter += 1
        return self._prev_sample(sample, timestep, prev_timestep, model_output)

    def _prev_sample(self, sample, timestep, prev_timestep, model_output):
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        beta_prod_t, beta_prod_t_prev = _F32(1) - alpha_prod_t, _F32(1) - alpha_prod_t_prev
        if self.config["prediction_type"] == "v_prediction":
            model_output = np.sqrt(alpha_prod_t) * model_output + np.sqrt(beta_prod_t) * sample
        sample_coeff = np.sqrt(alpha_prod_t_prev / alpha_prod_t)
        denom = alpha_prod_t * np.sqrt(beta_prod_t_prev) + np.sqrt(alpha_prod_t * beta_prod_t * alpha_prod_t_prev)
        prev = sample_coeff * sample - (alpha_prod_t_prev - alpha_prod_t) * model_output / denom
        return prev.astype(_F32)


class _SigmaScheduler:
    """What ppdiffusers' Euler and LMS schedulers share: sigma = sqrt((1 - alpha_bar) / alpha_bar) interpolated
    at the inference timesteps, inputs scaled by 1 / sqrt(sigma^2 + 1), a step index found from the timestep."""

    DEFAULTS = {**_BETA_OPTIONS, "prediction_type": "epsilon", "use_karras_sigmas": False,
                "timestep_spacing": "linspace", "steps_offset": 0}
    SUPPORTED = {
        "beta_schedule": _BETA_SCHEDULES,
        "prediction_type": ("epsilon", "sample", "v_prediction"),
        "use_karras_sigmas": (False, None),
        "timestep_spacing": ("linspace", "leading", "trailing"),
    }

    def __init__(self, config: Mapping):
        self.config = _read_options(type(self).__name__, self.DEFAULTS, self.SUPPORTED, config)
        self.alphas_cumprod = np.cumprod(_F32(1) - _betas(self.config), dtype=_F32)
        self.sigmas = np.concatenate([self._train_sigmas()[::-1], np.zeros(1, _F32)])
        self.num_inference_steps = None
        self._step_index = None

    def _train_sigmas(self) -> np.ndarray:
        return np.sqrt((_F32(1) - self.alphas_cumprod) / self.alphas_cumprod)

    @property
    def init_noise_sigma(self) -> float:
        sigma_max = self.sigmas.max()
        if self.config["timestep_spacing"] in ("linspace", "trailing"):
            return float(sigma_max)
        return float(np.sqrt(sigma_max * sigma_max + _F32(1)))

    def set_timesteps(self, num_inference_steps: int) -> None:
        cfg, train = self.config, self.config["num_train_timesteps"]
        if not 1 <= num_inference_steps <= train:
            raise ValueError(f"num_inference_steps: {num_inference_steps} is out of range: allowed 1 to {train}")
        self.num_inference_steps = num_inference_steps
        if cfg["timestep_spacing"] == "linspace":
            timesteps = np.linspace(0, train - 1, num_inference_steps, dtype=np.float32)[::-1].copy()
        elif cfg["timestep_spacing"] == "leading":
            timesteps = (np.arange(num_inference_steps) * (train // num_inference_steps))[::-1].astype(np.float32)
            timesteps += cfg["steps_offset"]
        else:  # trailing
            timesteps = np.arange(train, 0, -train / num_inference_steps).round().astype(np.float32) - 1
        # ppdiffusers interpolates the float32 sigmas in double, then stores float32.
        sigmas = np.interp(timesteps, np.arange(train), self._train_sigmas()).astype(_F32)
        self.timesteps = timesteps.astype(_F32)
        self.sigmas = np.concatenate([sigmas, np.zeros(1, _F32)])
        self._step_index = None

    def _init_step_index(self, timestep) -> None:
        candidates = np.flatnonzero(self.timesteps == _F32(timestep))
        # ppdiffusers takes the second match when a timestep repeats (so as not to skip a sigma on img2img).
        self._step_index = int(candidates[1] if len(candidates) > 1 else candidates[0])

    def scale_model_input(self, sample: np.ndarray, timestep) -> np.ndarray:
        if self._step_index is None:
            self._init_step_index(timestep)
        sigma = self.sigmas[self._step_index]
        return (sample / np.sqrt(sigma * sigma + _F32(1))).astype(_F32)

    def _derivative(self, model_output: np.ndarray, timestep, sample: np.ndarray) -> np.ndarray:
        """d sample / d sigma at the current step (the model's denoised estimate gives the direction)."""
        if self.num_inference_steps is None:
            raise ValueError("set_timesteps must be called before step")
        if self._step_index is None:
            self._init_step_index(timestep)
        sigma = self.sigmas[self._step_index]
        prediction = self.config["prediction_type"]
        if prediction in ("original_sample", "sample"):
            pred_original_sample = model_output
        elif prediction == "epsilon":
            pred_original_sample = sample - sigma * model_output
        else:  # v_prediction
            # sigma * sigma, not sigma ** 2: numpy would square a float32 scalar in double.
            pred_original_sample = (model_output * (-sigma / np.sqrt(sigma * sigma + _F32(1)))
                                    + sample / (sigma * sigma + _F32(1)))
        return (sample - pred_original_sample) / sigma


class EulerDiscreteScheduler(_SigmaScheduler):
    """ppdiffusers.EulerDiscreteScheduler without churn (s_churn = 0, its default: the step adds no noise)."""

    DEFAULTS = {**_SigmaScheduler.DEFAULTS, "interpolation_type": "linear", "sigma_min": None, "sigma_max": None,
                "timestep_type": "discrete"}
    SUPPORTED = {
        **_SigmaScheduler.SUPPORTED,
        "prediction_type": ("epsilon", "sample", "original_sample", "v_prediction"),
        "interpolation_type": ("linear",),
        "timestep_type": ("discrete",),
    }

    def step(self, model_output: np.ndarray, timestep, sample: np.ndarray) -> np.ndarray:
        derivative = self._derivative(model_output, timestep, sample)
        dt = self.sigmas[self._step_index + 1] - self.sigmas[self._step_index]
        self._step_index += 1
        return (sample + derivative * dt).astype(_F32)


class LMSDiscreteScheduler(_SigmaScheduler):
    """ppdiffusers.LMSDiscreteScheduler (order 4, as its pipelines call it)."""

    ORDER = 4

    def set_timesteps(self, num_inference_steps: int) -> None:
        super().set_timesteps(num_inference_steps)
        self.derivatives = []

    def _coefficient(self, order: int, t: int, current: int) -> float:
        """The integral over [sigma_t, sigma_t+1] of the Lagrange basis polynomial of point t - current through
        the last `order` sigmas. ppdiffusers integrates it numerically (scipy quad); it is a polynomial, so its
        antiderivative gives the same number without scipy."""
        sigmas = self.sigmas.astype(np.float64)
        others = [sigmas[t - k] for k in range(order) if k != current]
        numerator = np.polynomial.Polynomial.fromroots(others) if others else np.polynomial.Polynomial([1.0])
        basis = numerator / np.prod([sigmas[t - current] - s for s in others])
        antiderivative = basis.integ()
        return float(antiderivative(sigmas[t + 1]) - antiderivative(sigmas[t]))

    def step(self, model_output: np.ndarray, timestep, sample: np.ndarray) -> np.ndarray:
        self.derivatives.append(self._derivative(model_output, timestep, sample))
        self.derivatives = self.derivatives[-self.ORDER:]
        order = min(self._step_index + 1, self.ORDER)
        path = 0  # summed as ppdiffusers does, newest derivative first, before adding to the sample
        for current, derivative in zip(range(order), reversed(self.derivatives)):
            path = path + _F32(self._coefficient(order, self._step_index, current)) * derivative
        self._step_index += 1
        return (sample + path).astype(_F32)


class DPMSolverMultistepScheduler:
    """ppdiffusers.DPMSolverMultistepScheduler, deterministic algorithms ("dpmsolver++", "dpmsolver"), orders
    1 to 3, sigmas interpolated from the training schedule (no Karras / Lu spacing, no thresholding)."""

    DEFAULTS = {
        **_BETA_OPTIONS, "solver_order": 2, "prediction_type": "epsilon", "thresholding": False,
        "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0, "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint", "lower_order_final": True, "euler_at_final": False, "use_karras_sigmas": False,
        "use_lu_lambdas": False, "lambda_min_clipped": -float("inf"), "variance_type": None,
        "timestep_spacing": "linspace", "steps_offset": 0,
    }
    SUPPORTED = {
        "beta_schedule": _BETA_SCHEDULES,
        "solver_order": (1, 2, 3),
        "prediction_type": ("epsilon", "sample", "v_prediction"),
        "thresholding": (False,),
        # ppdiffusers runs "deis" as "dpmsolver++"; the SDE variants add noise.
        "algorithm_type": ("dpmsolver++", "dpmsolver", "deis"),
        # ppdiffusers runs these three as "midpoint".
        "solver_type": ("midpoint", "heun", "logrho", "bh1", "bh2"),
        "use_karras_sigmas": (False, None),
        "use_lu_lambdas": (False, None),
        "variance_type": (None,),
        "timestep_spacing": ("linspace", "leading", "trailing"),
    }
    init_noise_sigma = 1.0

    def __init__(self, config: Mapping):
        self.config = _read_options(type(self).__name__, self.DEFAULTS, self.SUPPORTED, config)
        if self.config["algorithm_type"] == "deis":
            self.config["algorithm_type"] = "dpmsolver++"
        if self.config["solver_type"] in ("logrho", "bh1", "bh2"):
            self.config["solver_type"] = "midpoint"
        self.alphas_cumprod = np.cumprod(_F32(1) - _betas(self.config), dtype=_F32)
        self.num_inference_steps = None
        self.timesteps = np.linspace(0, self.config["num_train_timesteps"] - 1, self.config["num_train_timesteps"],
                                     dtype=np.float32)[::-1].copy()

    def set_timesteps(self, num_inference_steps: int) -> None:
        cfg, train = self.config, self.config["num_train_timesteps"]
        if not 1 <= num_inference_steps <= train:
            raise ValueError(f"num_inference_steps: {num_inference_steps} is out of range: allowed 1 to {train}")
        last_timestep = train - self._clipped_index()
        if cfg["timestep_spacing"] == "linspace":
            timesteps = np.linspace(0, last_timestep - 1, num_inference_steps + 1).round()[::-1][:-1].astype(np.int64)
        elif cfg["timestep_spacing"] == "leading":
            step_ratio = last_timestep // (num_inference_steps + 1)
            timesteps = (np.arange(num_inference_steps + 1) * step_ratio)[::-1][:-1].astype(np.int64)
            timesteps += cfg["steps_offset"]
        else:  # trailing
            timesteps = np.arange(last_timestep, 0, -train / num_inference_steps).round().astype(np.int64) - 1
        train_sigmas = np.sqrt((_F32(1) - self.alphas_cumprod) / self.alphas_cumprod)
        sigma_last = powf((_F32(1) - self.alphas_cumprod[0]) / self.alphas_cumprod[0], 0.5)
        sigmas = np.interp(timesteps, np.arange(train), train_sigmas)
        self.sigmas = np.concatenate([sigmas, [sigma_last]]).astype(_F32)
        self.timesteps = timesteps.astype(np.int64)
        self.num_inference_steps = len(timesteps)
        self.model_outputs = [None] * cfg["solver_order"]
        self.lower_order_nums = 0
        self._step_index = None

    def _clipped_index(self) -> int:
        """How many of the noisiest training steps lambda_min_clipped cuts off (0 when it is -inf)."""
        clip = _F32(self.config["lambda_min_clipped"])
        if np.isinf(clip):
            return 0
        alpha_t, sigma_t = np.sqrt(self.alphas_cumprod), np.sqrt(_F32(1) - self.alphas_cumprod)
        lambdas = (logf(alpha_t) - logf(sigma_t))[::-1]
        return int(np.searchsorted(lambdas, clip, side="left"))

    def scale_model_input(self, sample: np.ndarray, timestep=None) -> np.ndarray:
        return sample

    def _alpha_sigma_lambda(self, index: int):
        """alpha_t, sigma_t and lambda = log(alpha_t / sigma_t) at a sigma, with paddle's scalar rounding: the
        third-order update divides (e^-h - 1 + h) by h^2, where one ulp of h shows."""
        sigma = self.sigmas[index]
        alpha_t = _F32(1) / powf(powf(sigma, 2) + _F32(1), 0.5)
        sigma_t = sigma * alpha_t
        log_alpha, log_sigma = logf(np.array([alpha_t, sigma_t], dtype=_F32))
        return alpha_t, sigma_t, log_alpha - log_sigma

    def _init_step_index(self, timestep) -> None:
        candidates = np.flatnonzero(self.timesteps == timestep)
        if len(candidates) == 0:
            self._step_index = len(self.timesteps) - 1
        else:
            self._step_index = int(candidates[1] if len(candidates) > 1 else candidates[0])

    def _convert_model_output(self, model_output, sample):
        """x0 for the "++" algorithm, epsilon for the plain one, from whatever the model predicts."""
        alpha_t, sigma_t, _ = self._alpha_sigma_lambda(self._step_index)
        prediction = self.config["prediction_type"]
        if self.config["algorithm_type"] == "dpmsolver++":
            if prediction == "epsilon":
                return (sample - sigma_t * model_output) / alpha_t
            if prediction == "sample":
                return model_output
            return alpha_t * sample - sigma_t * model_output
        if prediction == "epsilon":
            return model_output
        if prediction == "sample":
            return (sample - alpha_t * model_output) / sigma_t
        return alpha_t * model_output + sigma_t * sample

    def step(self, model_output: np.ndarray, timestep, sample: np.ndarray) -> np.ndarray:
        if self.num_inference_steps is None:
            raise ValueError("set_timesteps must be called before step")
        cfg = self.config
        if self._step_index is None:
            self._init_step_index(timestep)
        last = len(self.timesteps) - 1
        few_steps = cfg["lower_order_final"] and len(self.timesteps) < 15
        lower_order_final = self._step_index == last and (cfg["euler_at_final"] or few_steps)
        lower_order_second = self._step_index == last - 1 and few_steps
        model_output = self._convert_model_output(model_output, sample)
        self.model_outputs = self.model_outputs[1:] + [model_output]
        if cfg["solver_order"] == 1 or self.lower_order_nums < 1 or lower_order_final:
            prev = self._first_order(model_output, sample)
        elif cfg["solver_order"] == 2 or self.lower_order_nums < 2 or lower_order_second:
            prev = self._second_order(sample)
        else:
            prev = self._third_order(sample)
        self.lower_order_nums = min(self.lower_order_nums + 1, cfg["solver_order"])
        self._step_index += 1
        return prev.astype(_F32)

    def _first_order(self, model_output, sample):
        i = self._step_index
        alpha_t, sigma_t, lambda_t = self._alpha_sigma_lambda(i + 1)
        alpha_s, sigma_s, lambda_s = self._alpha_sigma_lambda(i)
        h = lambda_t - lambda_s
        if self.config["algorithm_type"] == "dpmsolver++":
            return (sigma_t / sigma_s) * sample - (alpha_t * (expf(-h) - _F32(1))) * model_output
        return (alpha_t / alpha_s) * sample - (sigma_t * (expf(h) - _F32(1))) * model_output

    def _second_order(self, sample):
        i = self._step_index
        alpha_t, sigma_t, lambda_t = self._alpha_sigma_lambda(i + 1)
        alpha_s0, sigma_s0, lambda_s0 = self._alpha_sigma_lambda(i)
        _, _, lambda_s1 = self._alpha_sigma_lambda(i - 1)
        m0, m1 = self.model_outputs[-1], self.model_outputs[-2]
        h, h_0 = lambda_t - lambda_s0, lambda_s0 - lambda_s1
        r0 = h_0 / h
        d0, d1 = m0, (_F32(1) / r0) * (m0 - m1)
        if self.config["algorithm_type"] == "dpmsolver++":
            phi = alpha_t * (expf(-h) - _F32(1))
            if self.config["solver_type"] == "midpoint":
                return (sigma_t / sigma_s0) * sample - phi * d0 - _F32(0.5) * phi * d1
            return (sigma_t / sigma_s0) * sample - phi * d0 + (alpha_t * ((expf(-h) - _F32(1)) / h + _F32(1))) * d1
        phi = sigma_t * (expf(h) - _F32(1))
        if self.config["solver_type"] == "midpoint":
            return (alpha_t / alpha_s0) * sample - phi * d0 - _F32(0.5) * phi * d1
        return (alpha_t / alpha_s0) * sample - phi * d0 - (sigma_t * ((expf(h) - _F32(1)) / h - _F32(1))) * d1

    def _third_order(self, sample):
        i = self._step_index
        alpha_t, sigma_t, lambda_t = self._alpha_sigma_lambda(i + 1)
        alpha_s0, sigma_s0, lambda_s0 = self._alpha_sigma_lambda(i)
        _, _, lambda_s1 = self._alpha_sigma_lambda(i - 1)
        _, _, lambda_s2 = self._alpha_sigma_lambda(i - 2)
        m0, m1, m2 = self.model_outputs[-1], self.model_outputs[-2], self.model_outputs[-3]
        h, h_0, h_1 = lambda_t - lambda_s0, lambda_s0 - lambda_s1, lambda_s1 - lambda_s2
        r0, r1 = h_0 / h, h_1 / h
        d1_0, d1_1 = (_F32(1) / r0) * (m0 - m1), (_F32(1) / r1) * (m1 - m2)
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (_F32(1) / (r0 + r1)) * (d1_0 - d1_1)
        if self.config["algorithm_type"] == "dpmsolver++":
            e = expf(-h) - _F32(1)
            return ((sigma_t / sigma_s0) * sample - (alpha_t * e) * m0 + (alpha_t * (e / h + _F32(1))) * d1
                    - (alpha_t * ((e + h) / (h * h) - _F32(0.5))) * d2)
        e = expf(h) - _F32(1)
        return ((alpha_t / alpha_s0) * sample - (sigma_t * e) * m0 - (sigma_t * (e / h - _F32(1))) * d1
                - (sigma_t * ((e - h) / (h * h) - _F32(0.5))) * d2)


_SCHEDULERS = {cls.__name__: cls for cls in (DDIMScheduler, PNDMScheduler, LMSDiscreteScheduler,
                                               EulerDiscreteScheduler, DPMSolverMultistepScheduler)}
SUPPORTED_SCHEDULERS = tuple(_SCHEDULERS)


def scheduler_class_name(source: Union[str, Path, Mapping]) -> str:
    """The `_class_name` of a scheduler folder or config, checked against the ported schedulers."""
    config = read_scheduler_config(source)
    name = config.get("_class_name")
    if name not in _SCHEDULERS:
        raise SchedulerConfigError(
            f"scheduler {name!r} has no numpy port; supported: {', '.join(SUPPORTED_SCHEDULERS)}"
        )
    return name


def load_scheduler(source: Union[str, Path, Mapping]):
    """A fresh scheduler from an exported `scheduler/` folder (or its config as a dict)."""
    config = read_scheduler_config(source)
    return _SCHEDULERS[scheduler_class_name(config)](config)


def read_scheduler_config(source: Union[str, Path, Mapping]) -> Mapping:
    """The config of a `scheduler/` folder (or of its JSON file; a dict is returned as it is)."""
    if isinstance(source, Mapping):
        return source
    path = Path(source)
    return json.loads((path / CONFIG_FILE if path.is_dir() else path).read_text())
