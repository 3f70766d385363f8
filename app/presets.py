"""Lecture scenes for the sidebar: a named view per claim, as (page, URL parameters).

A scene is just a link: loading it switches to its page with its query parameters, so a scene and
a copied URL are the same thing. Scenes come from two places:

* `core.toy.presets.PRESETS` (the engine's named configs, shared with the CLI and tests), turned into
  URL parameters by `scene_from_preset` (only the parameters the page reads, in its ranges), and
* `APP_SCENES` below, for views that are not a single simulation (the SAM-step diagram, the
  schedule timeline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.pagelist import PAGE_KEYS as PAGES


@dataclass(frozen=True)
class Scene:
    name: str
    title: str
    page: str  # url path of the page (one of PAGES)
    params: dict = field(default_factory=dict, hash=False)  # URL query parameters (strings)
    claim: str = ""


APP_SCENES: tuple[Scene, ...] = (
    Scene("sam_step_basic", "How one SAM step works", "sam_step", {"rho": "0.3", "lr": "0.1"},
          "SAM takes the gradient at the worst nearby point w+ε, not at w."),
    Scene("sam_step_big_rho", "A SAM step with a large ρ", "sam_step", {"rho": "0.5", "lr": "0.1"},
          "With a large ρ the SAM step can point away from the SGD step."),
    Scene("playground_all", "All optimizers side by side", "playground",
          {"opts": "sgd,sam,asam,psam,late_sam", "rho": "0.1"},
          "PSAM follows SAM at a fraction of the cost."),
    Scene("psam_equal_budget", "PSAM at equal budget", "psam", {"k": "2", "f": "0.6", "rho": "0.1"},
          "PSAM (k=2, f=0.6) costs 65% of SAM."),
    Scene("valley_schedules", "Early or late SAM? (exact, valley)", "valley", {"view": "schedules", "rho": "0.2"},
          "PSAM and late SAM at the same cost: exact shares of SAM's flat-side shift."),
    Scene("tournament_65", "Every way to spend 65% of SAM (budget tournament)", "tournament",
          {"budget": "0.65", "cifar": "cpu_tournament_065_noisy.json"},
          "At 65% of SAM's cost the methods differ in how close they come to SAM: the Pareto fronts show which, and "
          "with 3 seeds most differences on CIFAR stay inside the noise."),
    Scene("cifar_label_noise", "SAM beats SGD live: noisy labels (CIFAR, CPU)", "cifar",
          {"train_size": "1000", "epochs": "30", "rho": "0.1", "label_noise": "0.4", "augment": "0", "smoothing": "0",
           "opts": "sgd,sam,psam"},
          "With 40% of the training labels wrong, SGD memorises them (81% training accuracy) and SAM does not (50%): "
          "SAM ends 4.9 points ahead on clean test labels, clear of the seed noise on 5 fresh seeds (recorded: "
          "cpu_demo_label_noise.json). PSAM, whose SAM steps stop at 60% of training, is not."),
    Scene("class_everyone_rho", "Everyone takes a ρ (class experiment)", "classroom", {"kind": "escape", "open": "1"},
          "Each student runs one ρ of the escape lab; the class's pooled escaped fraction climbs with ρ."),
)


# What each page reads from the URL, and the ranges its widgets accept. A scene only carries
# parameters its page accepts, so opening a scene never triggers a "clamped" notice (tests/e2e and
# tests/test_page_*.py open every scene and check). Numbers: (lo, hi); choices: a tuple of strings.
_LR = tuple(f"{v:g}" for v in (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0))
PAGE_PARAMS: dict[str, dict] = {
    # pages of other authors: ρ and the scene's landscape only; the rest stays at the page's defaults
    "escape": {"rho": (0.0, 0.3), "landscape": ("double_well_2d", "double_well_1d", "zhu")},
    "valley": {"rho": (0.0, 0.3), "landscape": ("valley_1d", "valley_2d"), "view": ("drift", "shift", "schedules"),
               "a_left": ("2", "5", "10", "20", "40"), "a_right": ("0.5", "1", "2", "5")},  # its menus' values
    "sam_step": {"rho": (0.0, 1.0), "lr": _LR},
    "playground": {"rho": (0.0, 1.0), "lr": _LR, "sigma": (0.0, 10.0), "steps": (10, 2000), "particles": (1, 50),
                   "seed": (0, 2**31 - 1), "landscape": None, "opts": None, "k": (1, 10), "f": (0.0, 1.0),
                   "late_f": (0.0, 1.0), "p": (0.0, 1.0), "noise": ("none", "isotropic", "hessian", "minibatch"),
                   "x": None, "y": None,  # the start point (the page keeps it inside the landscape's bounds)
                   "a_left": (0.5, 50.0), "a_right": (0.5, 50.0),  # valley_1d's curvatures
                   "loss_log": ("1",)},
    "tournament": {"budget": (0.55, 0.75), "cifar": ("cpu_tournament_065.json", "cpu_tournament_065_noisy.json")},
    "cifar": {"train_size": (500, 5000), "epochs": (1, 30), "rho": (0.0, 0.5), "label_noise": (0.0, 0.8),
              "augment": ("0", "1"), "smoothing": (0.0, 0.3), "opts": None},
    "classroom": {"kind": ("escape", "valley", "psam", "cifar"), "open": ("1",)},  # open=1: opens a room at once
    "psam": {"rho": (0.0, 1.0), "lr": _LR, "sigma": (0.0, 10.0), "steps": (20, 1000), "particles": (50, 2000),
             "seed": (0, 2**31 - 1), "landscape": ("double_well_1d", "double_well_2d", "many_wells"),
             "k": (1, 10), "f": (0.0, 1.0), "late_f": (0.0, 1.0), "p": (0.0, 1.0)},
}


def _fits(rule, value: str) -> bool:
    if rule is None:
        return True
    if isinstance(rule, tuple) and rule and isinstance(rule[0], str):
        return value in rule
    try:
        return rule[0] <= float(value) <= rule[1]
    except ValueError:
        return False


def fit_params(page: str, params: dict) -> dict:
    """Keep only the parameters `page` reads, with values its widgets accept."""
    rules = PAGE_PARAMS.get(page, {})
    return {k: v for k, v in params.items() if k in rules and _fits(rules[k], v)}


def scene_from_preset(name: str, preset) -> Scene:
    """Turn an engine preset (core.toy.presets.Preset: title, page, config, claim) into URL parameters
    for its page: ρ is the largest ρ of the preset, and only what the page accepts is kept."""
    cfg = preset.config
    page = preset.page if preset.page in PAGES else "playground"
    params: dict[str, str] = {}
    if cfg.rhos:
        params["rho"] = f"{max(cfg.rhos):g}"
    for key in ("lr", "sigma", "steps", "particles", "seed", "k", "f", "p", "late_f"):
        value = getattr(cfg, key)
        params[key] = f"{value:g}" if isinstance(value, float) else str(value)
    params["landscape"] = cfg.landscape
    params.update({k: f"{v:g}" for k, v in cfg.landscape_params})  # e.g. the valley's a_left, a_right
    params["noise"] = cfg.noise
    if cfg.start is not None:
        params.update({k: f"{v:g}" for k, v in zip(("x", "y"), cfg.start)})
    if page == "playground":
        params["opts"] = "sgd,sam" if cfg.optimizer in ("sgd", "sam") else f"sgd,sam,{cfg.optimizer}"
        if cfg.noise == "none":  # noise-free runs close in on a minimum geometrically: a log scale shows how
            params["loss_log"] = "1"
    if page == "psam" and cfg.particles < 50:
        params.pop("particles")
    return Scene(name, str(preset.title), page, fit_params(page, params), str(preset.claim))


def scenes() -> dict[str, Scene]:
    """Every scene by name: the engine's presets first, then the app's own."""
    out: dict[str, Scene] = {}
    try:
        from core.toy.presets import PRESETS
    except ImportError:  # the engine's presets are not there yet
        PRESETS = {}
    for name, preset in dict(PRESETS).items():
        try:
            out[name] = scene_from_preset(name, preset)
        except (AttributeError, TypeError, ValueError):  # a preset we cannot turn into a URL is skipped
            continue
    for s in APP_SCENES:
        out.setdefault(s.name, s)
    return out
